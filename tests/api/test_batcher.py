"""The generic micro-batcher: when items go, together or alone, and how they fail."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from api.batcher import Batcher

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), timeout=10))


class Downstream:
    """Records each batch it is given; answers each item with its double."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail_with: Exception | None = None

    async def dispatch(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        if self.fail_with is not None:
            raise self.fail_with
        return [2 * item for item in items]


def test_below_capacity_each_item_goes_at_once_alone() -> None:
    async def scenario() -> list[list[int]]:
        down = Downstream()
        batcher = Batcher(down.dispatch, max_size=8, capacity=2)
        assert await batcher.submit(1, max_wait=60) == 2  # no timer involved: 60 s never pass
        assert batcher.in_flight == 1  # its slot is held until release()
        assert await batcher.submit(2, max_wait=60) == 4
        return down.batches

    assert run(scenario) == [[1], [2]]


def test_at_capacity_items_gather_and_go_together_when_a_slot_frees() -> None:
    async def scenario() -> tuple[list[list[int]], list[int]]:
        down = Downstream()
        batcher = Batcher(down.dispatch, max_size=8, capacity=1)
        assert await batcher.submit(0, max_wait=60) == 0  # takes the only slot
        waiting = [asyncio.create_task(batcher.submit(i, max_wait=60)) for i in (1, 2, 3)]
        while batcher.held < 3:  # let the three tasks reach the batcher
            await asyncio.sleep(0)
        assert down.batches == [[0]]  # nothing went: no slot, and 60 s have not passed
        batcher.release()  # the first batch's work is over
        return down.batches, list(await asyncio.gather(*waiting))

    batches, answers = run(scenario)
    assert batches == [[0], [1, 2, 3]]
    assert answers == [2, 4, 6]


def test_a_gathered_item_goes_after_its_own_wait_even_without_a_slot() -> None:
    async def scenario() -> tuple[list[list[int]], float]:
        down = Downstream()
        batcher = Batcher(down.dispatch, max_size=8, capacity=1)
        await batcher.submit(0, max_wait=60)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await batcher.submit(1, max_wait=0.05) == 2  # the timer sends it
        return down.batches, loop.time() - started

    batches, waited = run(scenario)
    assert batches == [[0], [1]]
    assert 0.04 <= waited < 5


def test_a_full_batch_goes_at_once_without_a_slot() -> None:
    async def scenario() -> list[list[int]]:
        down = Downstream()
        batcher = Batcher(down.dispatch, max_size=3, capacity=1)
        await batcher.submit(0, max_wait=60)
        answers = await asyncio.gather(*(batcher.submit(i, max_wait=60) for i in (1, 2, 3)))
        assert answers == [2, 4, 6]
        return down.batches

    assert run(scenario) == [[0], [1, 2, 3]]


def test_a_batch_of_its_own_goes_at_once() -> None:
    async def scenario() -> list[list[int]]:
        down = Downstream()
        batcher = Batcher(down.dispatch, max_size=2, capacity=1)
        await batcher.submit(0, max_wait=60)  # the only slot is taken: still it goes
        assert await batcher.submit_batch([5, 6, 7]) == [10, 12, 14]
        return down.batches

    assert run(scenario) == [[0], [5, 6, 7]]


def test_a_failed_dispatch_fails_its_items_and_frees_its_slot() -> None:
    async def scenario() -> int:
        down = Downstream()
        down.fail_with = RuntimeError("queue full")
        batcher = Batcher(down.dispatch, max_size=8, capacity=1)
        with pytest.raises(RuntimeError, match="queue full"):
            await batcher.submit(1, max_wait=60)
        return batcher.in_flight

    assert run(scenario) == 0


def test_close_fails_what_it_holds_and_refuses_more() -> None:
    async def scenario() -> list[BaseException | int]:
        down = Downstream()
        batcher = Batcher(down.dispatch, max_size=8, capacity=1)
        await batcher.submit(0, max_wait=60)
        held = [asyncio.create_task(batcher.submit(i, max_wait=60)) for i in (1, 2)]
        while batcher.held < 2:
            await asyncio.sleep(0)
        await batcher.close(ConnectionAbortedError("shutting down"))
        results = list(await asyncio.gather(*held, return_exceptions=True))
        with pytest.raises(ConnectionAbortedError):
            await batcher.submit(3, max_wait=60)
        return results

    results = run(scenario)
    assert [type(result) for result in results] == [ConnectionAbortedError] * 2


def test_close_ends_a_dispatch_under_way_and_fails_its_items() -> None:
    async def scenario() -> BaseException | int:
        started = asyncio.Event()

        async def stuck(items: list[int]) -> list[int]:
            started.set()
            await asyncio.Event().wait()  # never answers
            return items

        batcher: Batcher[int, int] = Batcher(stuck, max_size=8, capacity=1)
        waiting = asyncio.create_task(batcher.submit(1, max_wait=60))
        await started.wait()
        await batcher.close(ConnectionAbortedError("shutting down"))
        (result,) = await asyncio.gather(waiting, return_exceptions=True)
        return result

    assert isinstance(run(scenario), ConnectionAbortedError)

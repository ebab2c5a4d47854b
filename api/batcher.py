"""Adaptive micro-batching as a small generic component: items in, batches out.

Items wait here only while the downstream is busy. While fewer than ``capacity`` batches
are in flight an item goes out at once, so a lone item waits for nothing. Beyond that,
items gather until a batch finishes (``release``), then go together (up to ``max_size``),
so batches grow with the load; each item also names the longest it may wait, after which
whatever is gathered goes anyway. ``close`` fails every item still held, so no caller is
left waiting on a future nobody will resolve.

Written here rather than taken from a library: what we need (a slot released when the
downstream work ends, not when the dispatch call returns; a wait bound per item) is some
80 lines, where the batching libraries we looked at bring a serving framework with them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Held(Generic[T, R]):
    items: list[T] = field(default_factory=list)
    futures: list[asyncio.Future[R]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    deadline: float = float("inf")  # loop time at which the timer fires


class Batcher(Generic[T, R]):
    """Gathers items for ``dispatch(items) -> results`` (one result per item, in order).

    A dispatched batch holds one of ``capacity`` slots until ``release()`` is called (the
    work it started downstream is over) or until its dispatch raises.
    """

    def __init__(
        self,
        dispatch: Callable[[list[T]], Awaitable[list[R]]],
        max_size: int,
        capacity: int = 1,
    ) -> None:
        self.dispatch = dispatch
        self.max_size = max_size
        self.capacity = capacity
        self.in_flight = 0
        self._held: _Held[T, R] = _Held()
        self._dispatching: set[asyncio.Task[None]] = set()
        self._closed: BaseException | None = None

    @property
    def held(self) -> int:
        """Items gathered and not yet dispatched."""
        return len(self._held.items)

    async def submit(self, item: T, max_wait: float) -> R:
        """``item``'s result, once its batch is dispatched; it waits at most ``max_wait`` s."""
        future = self._hold(item)
        held = self._held
        if len(held.items) >= self.max_size or self.in_flight < self.capacity:
            self._flush()
        else:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_wait
            if deadline < held.deadline:
                if held.timer is not None:
                    held.timer.cancel()
                held.timer = loop.call_at(deadline, self._flush)
                held.deadline = deadline
        return await future

    async def submit_batch(self, items: list[T]) -> list[R]:
        """``items`` as one batch of their own, dispatched at once (it still takes a slot)."""
        if self._closed is not None:
            raise self._closed
        loop = asyncio.get_running_loop()
        batch: _Held[T, R] = _Held(list(items), [loop.create_future() for _ in items])
        self._start(batch)
        return [await future for future in batch.futures]

    def release(self) -> None:
        """A dispatched batch's work is over: its slot frees, and gathered items may go."""
        self.in_flight -= 1
        if self._held.items and self.in_flight < self.capacity:
            self._flush()

    async def close(self, error: BaseException) -> None:
        """Refuse new items, fail the held ones with ``error``, end dispatches under way."""
        self._closed = error
        held, self._held = self._held, _Held()
        if held.timer is not None:
            held.timer.cancel()
        for future in held.futures:
            if not future.done():
                future.set_exception(error)
        for task in list(self._dispatching):
            task.cancel()
        await asyncio.gather(*self._dispatching, return_exceptions=True)

    def _hold(self, item: T) -> asyncio.Future[R]:
        if self._closed is not None:
            raise self._closed
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._held.items.append(item)
        self._held.futures.append(future)
        return future

    def _flush(self) -> None:
        batch, self._held = self._held, _Held()
        if batch.timer is not None:
            batch.timer.cancel()
        if batch.items:
            self._start(batch)

    def _start(self, batch: _Held[T, R]) -> None:
        self.in_flight += 1
        task = asyncio.create_task(self._dispatch(batch))
        self._dispatching.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._dispatching.discard)

    async def _dispatch(self, batch: _Held[T, R]) -> None:
        try:
            results = await self.dispatch(batch.items)
        except asyncio.CancelledError:
            self.release()
            for future in batch.futures:
                if not future.done():
                    if self._closed is not None:
                        future.set_exception(self._closed)
                    else:
                        future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - a failed dispatch fails the items it held
            self.release()
            for future in batch.futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result in zip(batch.futures, results, strict=True):
            if not future.done():
                future.set_result(result)

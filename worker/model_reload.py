"""Each worker process follows the served model version without a restart.

A daemon thread per process looks at the served pointer (``shared.versions``) every
``MODEL_RELOAD_SECONDS``: one ``stat`` while nothing changed. When it names another
version, the thread loads it while the process goes on answering with the old one, then
swaps one reference. A task reads that reference once as it starts (``Follower.current``),
so it finishes on the model it started with, and predicting never takes a lock. A version
that fails its checks is refused (logged once) and the served one stays.
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from dataclasses import dataclass, field

from shared.errors import ModelUnavailable
from shared.model import Model
from shared.settings import Settings
from shared.versions import ModelStore, Pointer, ensure_served

log = logging.getLogger("worker.model_reload")


@dataclass(frozen=True)
class Serving:
    """The models one process answers with: the served one, and maybe a canary."""

    model: Model
    canary: Model | None = None
    canary_percent: float = 0.0

    @property
    def versions(self) -> list[str]:
        return [self.model.version] + ([self.canary.version] if self.canary else [])

    def model_for(self, image: bytes) -> Model:
        """The canary for its share of images, else the served model. The draw is a hash
        of the image, so the same upload always meets the same version."""
        if self.canary is None:
            return self.model
        return self.canary if zlib.crc32(image) % 10_000 < self.canary_percent * 100 else self.model


@dataclass
class Follower:
    """Holds this process's ``Serving`` and keeps it on the served pointer."""

    settings: Settings
    serving: Serving | None = None
    _stamp: tuple[int, int, int] | None = None
    _refused: set[str] = field(default_factory=set)
    _thread_pid: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def store(self) -> ModelStore:
        return ModelStore(self.settings.model_path)

    def load_initial(self) -> Serving:
        """The served model (trained first if there is none); the canary too, if any."""
        if self.serving is None:
            self._stamp = self.store.pointer_stamp()
            self.serving = Serving(ensure_served(self.settings))
            self.check(force=True)  # a canary, or a pointer replaced meanwhile
        return self.serving

    def current(self) -> Serving:
        """What a task answers with; starts this process's follower thread if needed
        (after a fork, threads of the parent do not exist in the child)."""
        if self._thread_pid != os.getpid():
            self.start()
        assert self.serving is not None
        return self.serving

    def start(self) -> None:
        """Load the model if not yet loaded, catch up at once, then poll in the background."""
        if self._thread_pid == os.getpid():
            return
        self._thread_pid = os.getpid()
        self._stop = threading.Event()
        self.load_initial()
        self.check()
        threading.Thread(target=self._run, name="model-reload", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.model_reload_seconds):
            try:
                self.check()
            except Exception:  # never let the thread die: the next poll may succeed
                log.exception("model reload: unexpected error")

    def check(self, force: bool = False) -> bool:
        """One poll: swap to what the pointer names if it changed. True if it swapped."""
        stamp = self.store.pointer_stamp()
        if stamp == self._stamp and not force:
            return False
        try:
            pointer = self.store.read_pointer()
        except ModelUnavailable as exc:
            self._refuse(self.store.pointer_path.name, exc)
            return False
        if pointer is None or self.serving is None:
            self._stamp = stamp
            return False
        wanted = self._build(pointer)
        if wanted is None:
            return False  # refused; polled again (and swapped) once the pointer changes
        self._stamp = stamp
        if wanted.versions == self.serving.versions and (
            wanted.canary_percent == self.serving.canary_percent
        ):
            return False
        old = self.serving
        self.serving = wanted
        log.info(
            "model switched",
            extra={
                "pid": os.getpid(),
                "from_version": old.model.version,
                "model_version": wanted.model.version,
                "from_canary": old.canary.version if old.canary else None,
                "canary_version": wanted.canary.version if wanted.canary else None,
                "canary_percent": wanted.canary_percent,
            },
        )
        return True

    def _build(self, pointer: Pointer) -> Serving | None:
        assert self.serving is not None
        loaded = {m.version: m for m in (self.serving.model, self.serving.canary) if m}
        models: list[Model] = []
        for version in [pointer.served] + ([pointer.canary] if pointer.canary else []):
            if version not in loaded:
                try:
                    loaded[version] = self.store.load(version)
                except ModelUnavailable as exc:
                    self._refuse(version, exc)
                    return None
            models.append(loaded[version])
        canary = models[1] if len(models) > 1 else None
        return Serving(models[0], canary, pointer.canary_percent if canary else 0.0)

    def _refuse(self, what: str, exc: ModelUnavailable) -> None:
        if what in self._refused:
            return
        self._refused.add(what)
        log.error(
            "model version refused; still serving the current one",
            extra={
                "pid": os.getpid(),
                "refused": what,
                "reason": exc.detail,
                "model_version": self.serving.model.version if self.serving else None,
            },
        )


_followers: dict[str, Follower] = {}


def follower(settings: Settings) -> Follower:
    """The process's follower for ``settings.model_path`` (one per model path)."""
    key = str(settings.model_path)
    if key not in _followers:
        _followers[key] = Follower(settings)
    return _followers[key]

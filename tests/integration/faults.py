"""Fault injection, loaded into a real worker with ``--include tests.integration.faults``.

It wraps the worker's prediction call: an image carrying the PNG text chunk
``fault=crash`` kills the pool process on the spot (as a crash in a native library
would), and ``fault=slow`` makes the task take a few seconds.
"""

from __future__ import annotations

import os
import time
from typing import Any

from worker import tasks

SLOW_SECONDS = 3.0
_predict_files = tasks.predict_files


def _with_faults(files: list[bytes], *args: Any, **kwargs: Any) -> Any:
    for data in files:
        if b"fault\x00crash" in data:
            os._exit(70)
        if b"fault\x00slow" in data:
            time.sleep(SLOW_SECONDS)
    return _predict_files(files, *args, **kwargs)


tasks.predict_files = _with_faults

"""The preprocessing pool: decode and preprocess off the event loop, on threads sized to the cores.

Pillow and NumPy release the GIL for the heavy work, so threads run it in parallel. The
time a job waits for a worker is the ``preprocess_wait`` stage; the job itself is ``preprocess``.
A job whose deadline passed while it waited is dropped before any decoding.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from servoscope.clock import SYSTEM_CLOCK, Clock
from servoscope.errors import DeadlineExceeded
from servoscope.resources import lower_priority
from servoscope.stages import Stage, Timing

T = TypeVar("T")


class PreprocessPool:
    def __init__(self, workers: int, clock: Clock = SYSTEM_CLOCK, nice: int = 0) -> None:
        self.workers = workers
        self.clock = clock
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="preprocess", initializer=lower_priority, initargs=(nice,)
        )
        self._lock = threading.Lock()
        self.waiting = 0  # jobs submitted and not yet started
        self.busy = 0  # jobs running

    async def run(self, job: Callable[[], T], timing: Timing, deadline: float) -> T:
        with self._lock:
            self.waiting += 1
        submitted = self._executor.submit(self._timed, job, timing, deadline)
        try:
            return await asyncio.wrap_future(submitted)
        finally:
            if submitted.cancel():  # the caller went away before a worker took the job
                with self._lock:
                    self.waiting -= 1

    def _timed(self, job: Callable[[], T], timing: Timing, deadline: float) -> T:
        started = self.clock.now()
        timing.end(Stage.PREPROCESS_WAIT, started)
        with self._lock:
            self.waiting -= 1
            self.busy += 1
        try:
            if started >= deadline:
                raise DeadlineExceeded(
                    f"deadline passed after {started - timing.start:.3f}s waiting for a preprocess worker"
                )
            return job()
        finally:
            with self._lock:
                self.busy -= 1
            timing.end(Stage.PREPROCESS, self.clock.now())

    def close(self) -> None:
        self._executor.shutdown(wait=True)

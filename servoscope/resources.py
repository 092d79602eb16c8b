"""How many threads each part gets: decided here, in one place, from the cores we may use.

Measured on a 2-core machine with ``bench/serve.py`` (offline limit, same code, no HTTP):
one single-threaded ONNX Runtime session per core, each fed by its own thread, reached 226
img/s at batch 1, against 192 for one session using both cores (its best, at batch 4).
ONNX Runtime splits each operator across its threads and waits for the slowest; whenever a
decode thread or the event loop takes one of those cores, every operator stalls. Independent
sessions have nothing to wait for. So on the CPU the default is one instance per core with
one thread each; on a GPU, one instance.

Decode workers run at a lower priority (``preprocess_nice``): a request that is already
decoded should finish inference before new uploads are decoded, which keeps the latency of
work in progress low when the cores are busy (bench/sweep.py: P50 at 70% load 25 → 18 ms).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class ThreadPlan:
    preprocess_workers: int
    instances: int  # ONNX Runtime sessions per model
    intra_op_threads: int  # per session

    def describe(self) -> str:
        return (
            f"{self.preprocess_workers} preprocess workers, {self.instances} instance(s) × "
            f"{self.intra_op_threads} intra-op thread(s)"
        )


def plan_threads(
    preprocess_workers: int = 0,
    instances: int = 0,
    intra_op_threads: int = 0,
    provider: str = "cpu",
    cores: int | None = None,
) -> ThreadPlan:
    """0 means "size to the machine": a preprocess worker per core; on the CPU an instance per
    core, on an accelerator one; the cores shared among the instances of one model. Models are
    sized independently: traffic rarely keeps two busy at once."""
    cores = cores or available_cores()
    workers = preprocess_workers or cores
    count = instances or (cores if provider == "cpu" else 1)
    intra = intra_op_threads or max(1, cores // count)
    return ThreadPlan(workers, count, intra)


def lower_priority(nice: int) -> None:
    """Lower the calling thread's scheduling priority (Linux: per-thread nice). Best effort."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as exc:
        log.warning("cannot lower the priority of thread %s: %s", threading.current_thread().name, exc)

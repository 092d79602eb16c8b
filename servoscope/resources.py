"""How many threads each part gets: decided here, in one place, from the cores we may use.

On a small CPU machine decode workers and ONNX Runtime compete for the same cores, so the
defaults give each part the cores and no more; oversubscribing costs context switches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class ThreadPlan:
    preprocess_workers: int
    intra_op_threads: int  # per ONNX Runtime session

    def describe(self) -> str:
        return f"{self.preprocess_workers} preprocess workers, {self.intra_op_threads} ONNX Runtime threads per instance"


def plan_threads(
    preprocess_workers: int = 0, intra_op_threads: int = 0, instances: int = 1, cores: int | None = None
) -> ThreadPlan:
    """0 means "size to the machine": a preprocess worker per core, and the cores shared among the
    instances of one model. Models are sized independently: traffic rarely keeps two busy at once,
    and ONNX Runtime threads that do not spin cost little while idle."""
    cores = cores or available_cores()
    workers = preprocess_workers or cores
    intra = intra_op_threads or max(1, cores // max(1, instances))
    return ThreadPlan(workers, intra)

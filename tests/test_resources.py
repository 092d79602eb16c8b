"""Thread sizing and the decode workers' lower priority."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from servoscope.pipeline.workers import PreprocessPool
from servoscope.resources import plan_threads
from servoscope.stages import Timing


def test_cpu_gets_one_single_threaded_instance_per_core() -> None:
    plan = plan_threads(cores=2)
    assert (plan.preprocess_workers, plan.instances, plan.intra_op_threads) == (2, 2, 1)


def test_accelerator_gets_one_instance_with_the_cores() -> None:
    plan = plan_threads(provider="cuda", cores=8)
    assert (plan.instances, plan.intra_op_threads) == (1, 8)


def test_explicit_values_win() -> None:
    plan = plan_threads(preprocess_workers=3, instances=1, intra_op_threads=0, cores=4)
    assert (plan.preprocess_workers, plan.instances, plan.intra_op_threads) == (3, 1, 4)
    assert plan_threads(instances=8, cores=2).intra_op_threads == 1


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is Linux-only")
def test_preprocess_workers_run_at_lower_priority() -> None:
    def own_nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = own_nice()
    pool = PreprocessPool(1, nice=5)
    try:
        worker_nice = asyncio.run(pool.run(own_nice, Timing(0.0), deadline=float("inf")))
    finally:
        pool.close()
    assert worker_nice == min(19, base + 5)
    assert own_nice() == base  # the caller's priority is untouched

"""The batcher when a model instance's process is lost: the batch's requests are run once more (at the
head of the queue, still under their deadlines) and answered 503 only if that run is lost too.

The real batcher and the real tiny ONNX model of test_batcher.py; the loss is a runtime that raises
:class:`InstanceLost` (what the process runtime raises when its child dies) for its first runs.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np

from servoscope.clock import ManualClock
from servoscope.errors import DeadlineExceeded, InstanceLost
from servoscope.pipeline.batcher import InstanceRestart
from servoscope.pipeline.runtime import Runtime
from test_batcher import (  # noqa: F401 — model_path is a fixture
    WAIT_S,
    answered,
    assert_predictions,
    expected,
    failed,
    load,
    make_batcher,
    model_path,
    run_async,
    settle,
)


class LosingRuntime:
    """The real model, but its first ``losses`` runs lose the instance. With ``gate``, the first run
    waits (bounded) for the test to open it, after telling ``entered``."""

    def __init__(
        self, model: Runtime, losses: int, gate: threading.Event | None = None, clock: ManualClock | None = None
    ) -> None:
        self.model, self.losses, self.gate, self.clock = model, losses, gate, clock
        self.batches: list[np.ndarray] = []
        self.entered = threading.Event()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        if len(self.batches) == 1 and self.gate is not None:
            self.entered.set()
            if not self.gate.wait(WAIT_S):
                raise TimeoutError("the test never opened the gate")
        if self.clock is not None:
            self.clock.advance(2.0)
        if len(self.batches) <= self.losses:
            raise InstanceLost(f"model instance tiny#0: its process {1000 + len(self.batches)} died running a batch")
        return self.model.run(batch)


async def entered(runtime: LosingRuntime) -> None:
    assert await asyncio.to_thread(runtime.entered.wait, WAIT_S), "the batch never started"


def test_a_lost_batch_is_run_once_more_and_answered(model_path: Path) -> None:
    async def scenario() -> None:
        losing = LosingRuntime(load(model_path), losses=1)
        h = make_batcher([losing], ManualClock(), max_batch_size=3, max_queue_delay_s=WAIT_S)
        restarts: list[InstanceRestart] = []
        h.batcher.on_restart = restarts.append
        batch = [h.submit(i) for i in range(3)]
        for pending, result in zip(batch, await answered(*batch)):
            assert_predictions(result, expected(pending.tensor, pending.top_k))
            assert pending.attempts == 2
        assert [len(b) for b in losing.batches] == [3, 3]
        assert [(r.model, r.instance) for r in restarts] == [("tiny", 0)] and "died" in restarts[0].error
        assert h.batcher.batches_in_flight == 0 and h.batcher.depth == 0
        await h.batcher.stop()

    run_async(scenario)


def test_a_batch_lost_twice_is_answered_503_once(model_path: Path) -> None:
    async def scenario() -> None:
        losing = LosingRuntime(load(model_path), losses=2)
        h = make_batcher([losing], ManualClock(), max_batch_size=2, max_queue_delay_s=WAIT_S)
        batch = [h.submit(i) for i in range(2)]
        for pending in batch:
            error = await failed(pending)
            assert isinstance(error, InstanceLost) and error.status == 503 and error.retry_after_s
        later = [h.submit(2), h.submit(3)]  # the instance (its replacement) serves again
        for pending, result in zip(later, await answered(*later)):
            assert_predictions(result, expected(pending.tensor, pending.top_k))
        assert len(losing.batches) == 3
        await h.batcher.stop()

    run_async(scenario)  # a second answer to any request would be reported by the loop, and fail it


def test_retried_requests_go_before_later_arrivals(model_path: Path) -> None:
    async def scenario() -> None:
        gate = threading.Event()
        losing = LosingRuntime(load(model_path), losses=1, gate=gate)
        h = make_batcher([losing], ManualClock(), max_batch_size=2, max_queue_delay_s=WAIT_S)
        first = [h.submit(0), h.submit(1)]
        try:
            await entered(losing)
            later = [h.submit(2), h.submit(3)]
        finally:
            gate.set()
        await answered(*first, *later)
        assert len(losing.batches) == 3
        np.testing.assert_array_equal(losing.batches[1], np.stack([p.tensor for p in first]))
        np.testing.assert_array_equal(losing.batches[2], np.stack([p.tensor for p in later]))
        await h.batcher.stop()

    run_async(scenario)


def test_a_retried_request_past_its_deadline_is_answered_504(model_path: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        losing = LosingRuntime(load(model_path), losses=1, clock=clock)  # each run takes 2 s
        h = make_batcher([losing], clock, max_batch_size=2, max_queue_delay_s=1.0)
        short, long = h.submit(0, deadline=1.0), h.submit(1)
        assert isinstance(await failed(short), DeadlineExceeded)
        [result] = await answered(long)
        assert_predictions(result, expected(long.tensor, long.top_k))
        assert [len(b) for b in losing.batches] == [2, 1]
        await h.batcher.stop()

    run_async(scenario)


def test_stop_waits_for_the_retry_of_a_lost_batch(model_path: Path) -> None:
    async def scenario() -> None:
        gate = threading.Event()
        losing = LosingRuntime(load(model_path), losses=1, gate=gate)
        h = make_batcher([losing], ManualClock(), max_batch_size=2, max_queue_delay_s=WAIT_S)
        batch = [h.submit(0), h.submit(1)]
        try:
            await entered(losing)
            stopping = asyncio.ensure_future(h.batcher.stop())
            await settle()
            assert not stopping.done()
        finally:
            gate.set()
        await asyncio.wait_for(stopping, WAIT_S)
        assert all(p.future.done() and p.future.exception() is None for p in batch)  # answered before stop returned
        assert len(losing.batches) == 2

    run_async(scenario)

"""The real ``Batcher`` on a real asyncio loop, running a real tiny ONNX model on ONNX Runtime.

The model averages each channel of an 8×8 image and multiplies by a fixed 3×4 matrix, so the
answer to every request is a known function of its own input. A ``ManualClock`` makes the
schedule deterministic; where the wait window itself is under test, the real clock is used
with a tiny window and nothing is asserted about speed. Nothing waits by sleeping: tests
await futures or events, each under a timeout.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from servoscope.clock import SYSTEM_CLOCK, Clock, ManualClock
from servoscope.errors import DeadlineExceeded, InferenceFailed, Overloaded, Unavailable
from servoscope.models.config import BatchingConfig
from servoscope.pipeline.batcher import Batcher, BatchPolicy, Queued
from servoscope.pipeline.postprocess import Postprocessor, Prediction
from servoscope.pipeline.preprocess import Prepared, PreprocessSpec
from servoscope.pipeline.runtime import Instance, OnnxModel, Runtime
from servoscope.stages import Stage, Timing

T = TypeVar("T")

LABELS = ["red", "green", "blue", "dark"]
WEIGHT = np.array([[2.0, 0.0, 0.0, -1.0], [0.0, 2.0, 0.0, -1.0], [0.0, 0.0, 2.0, -1.0]], dtype=np.float32)
WAIT_S = 10.0  # every await is bounded by this; a healthy run needs a tiny fraction of it
FAR = 1e9  # a deadline that never passes


# --- the model -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """input float32 [N,3,8,8] → ReduceMean over H, W → MatMul WEIGHT → logits [N,4]."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["means"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["means", "weight"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        initializer=[numpy_helper.from_array(WEIGHT, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(model, path)
    return path


def load(path: Path) -> OnnxModel:
    return OnnxModel(path, "cpu", 1, "input", "logits")


def image_for(label: int, rng: np.random.Generator) -> np.ndarray:
    """An 8×8 input whose expected top-1 is ``LABELS[label]``, with noise so no two are alike."""
    means = np.full(3, -1.0, dtype=np.float32) if label == 3 else np.eye(3, dtype=np.float32)[label]
    means = means * rng.uniform(0.5, 1.5)
    return (means[:, None, None] + rng.normal(0, 0.2, (3, 8, 8))).astype(np.float32)


def expected(tensor: np.ndarray, top_k: int) -> list[Prediction]:
    logits = tensor.astype(np.float64).mean(axis=(1, 2)) @ WEIGHT.astype(np.float64)
    return Postprocessor(LABELS)(logits[None, :], [top_k])[0]


def assert_predictions(got: list[Prediction], want: list[Prediction]) -> None:
    assert [p.label for p in got] == [p.label for p in want]
    np.testing.assert_allclose([p.score for p in got], [p.score for p in want], rtol=1e-4, atol=1e-6)


# --- runtimes around the real model ----------------------------------------------------------


class SpyRuntime:
    """The real ONNX model, recording each batch it runs and how many run at once.

    With ``gate`` set, each run first waits (bounded) until the test opens the gate, and tells
    the loop through ``entered`` that it has started.
    """

    def __init__(self, model: Runtime, gate: threading.Event | None = None) -> None:
        self.model = model
        self.gate = gate
        self.batches: list[np.ndarray] = []
        self.active = 0
        self.max_active = 0
        self.entered: asyncio.Queue[int] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def watch(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.entered = asyncio.Queue()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.batches.append(batch.copy())
        try:
            if self.loop is not None and self.entered is not None:
                self.loop.call_soon_threadsafe(self.entered.put_nowait, len(batch))
            if self.gate is not None and not self.gate.wait(WAIT_S):
                raise TimeoutError("the test never opened the gate")
            return self.model.run(batch)
        finally:
            with self._lock:
                self.active -= 1

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


class FailingRuntime:
    """A deliberately failing runtime: its first ``failures`` runs raise, later ones run the model."""

    def __init__(self, model: Runtime, failures: int = 1) -> None:
        self.model = model
        self.failures = failures
        self.calls = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("simulated device fault")
        return self.model.run(batch)


class RowDroppingRuntime:
    """A deliberately faulty runtime: the real outputs, less the last row."""

    def __init__(self, model: Runtime) -> None:
        self.model = model

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.model.run(batch)[:-1]


class ClockAdvancingRuntime:
    """The real model, on a manual clock that moves ``seconds`` while it runs."""

    def __init__(self, model: Runtime, clock: ManualClock, seconds: float) -> None:
        self.model, self.clock, self.seconds = model, clock, seconds

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.clock.advance(self.seconds)
        return self.model.run(batch)


# --- harness ---------------------------------------------------------------------------------


def run_async(test: Callable[[], Awaitable[T]], timeout_s: float = 30.0) -> T:
    """Run one async test on a fresh loop; anything the loop reports as unhandled fails it."""
    unhandled: list[dict[str, Any]] = []

    async def main() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: unhandled.append(context))
        return await asyncio.wait_for(test(), timeout_s)

    result = asyncio.run(main())
    assert not unhandled, f"the loop reported unhandled errors: {unhandled}"
    return result


@dataclass
class Harness:
    batcher: Batcher
    clock: Clock
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))

    def submit(self, label: int = 0, top_k: int = 2, deadline: float = FAR) -> Queued:
        loop = asyncio.get_running_loop()
        queued = Queued(image_for(label, self.rng), top_k, deadline, Timing(self.clock.now()), loop.create_future())
        self.batcher.submit(queued)
        return queued


def make_batcher(runtimes: list[Runtime], clock: Clock, **policy: Any) -> Harness:
    instances = [Instance("tiny", i, r) for i, r in enumerate(runtimes)]
    postprocess = Postprocessor(LABELS, "logits")
    batcher = Batcher("tiny", BatchPolicy.of(BatchingConfig(**policy)), instances, postprocess, clock)
    batcher.start()
    return Harness(batcher, clock)


async def answered(*entries: Queued) -> list[list[Prediction]]:
    return await asyncio.wait_for(asyncio.gather(*(p.future for p in entries)), WAIT_S)


async def failed(queued: Queued) -> BaseException:
    done, _ = await asyncio.wait([queued.future], timeout=WAIT_S)
    assert done, "the request was never answered"
    error = queued.future.exception()
    assert error is not None, f"expected an error, got {queued.future.result()}"
    return error


async def settle() -> None:
    """Let every callback that is ready now run (the schedule reacts to a submit in one turn)."""
    for _ in range(10):
        await asyncio.sleep(0)


# --- answers ---------------------------------------------------------------------------------


def test_each_request_gets_its_own_answer_in_a_shared_batch(model_path: Path) -> None:
    async def scenario() -> None:
        spy = SpyRuntime(load(model_path))
        h = make_batcher([spy], ManualClock(), max_batch_size=8, max_queue_delay_s=WAIT_S)
        labels = [0, 1, 2, 3, 3, 2, 1, 0]
        entries = [h.submit(label, top_k=k) for label, k in zip(labels, [1, 2, 3, 4, 1, 2, 3, 4])]
        results = await answered(*entries)
        assert spy.sizes == [8]
        for queued, label, result in zip(entries, labels, results):
            assert result[0].label == LABELS[label]
            assert len(result) == queued.top_k
            assert_predictions(result, expected(queued.tensor, queued.top_k))
            assert queued.timing.batch_size == 8
        await h.batcher.stop()

    run_async(scenario)


def test_batches_form_and_never_exceed_max_batch_size(model_path: Path) -> None:
    async def scenario() -> None:
        spy = SpyRuntime(load(model_path))
        h = make_batcher([spy], ManualClock(), max_batch_size=8, max_queue_delay_s=0.0)
        entries = [h.submit(i % 4) for i in range(20)]
        results = await answered(*entries)
        # All 20 arrived before the schedule ran: full batches, then the rest.
        assert spy.sizes == [8, 8, 4]
        assert sorted(p.timing.batch_size for p in entries) == [4] * 4 + [8] * 16
        for queued, result in zip(entries, results):
            assert_predictions(result, expected(queued.tensor, queued.top_k))
        await h.batcher.stop()

    run_async(scenario)


def test_a_preferred_batch_size_goes_without_waiting(model_path: Path) -> None:
    async def scenario() -> None:
        spy = SpyRuntime(load(model_path))
        h = make_batcher([spy], ManualClock(), max_batch_size=8, max_queue_delay_s=WAIT_S, preferred_batch_sizes=(4,))
        entries = [h.submit(i % 4) for i in range(4)]
        await answered(*entries)
        assert spy.sizes == [4]
        await h.batcher.stop()

    run_async(scenario)


# --- the wait window -------------------------------------------------------------------------


def test_the_window_starts_at_the_first_request(model_path: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        spy = SpyRuntime(load(model_path))
        h = make_batcher([spy], clock, max_batch_size=8, max_queue_delay_s=1.0)
        clock.advance(100.0)  # idle time before the first request opens no window
        first = h.submit(0)
        await settle()
        clock.advance(0.5)
        second = h.submit(1)
        await settle()
        assert spy.sizes == [] and h.batcher.depth == 2  # 0.5 s into a 1 s window: wait
        clock.advance(0.5)
        third = h.submit(2)  # the window of the *first* request has closed: all three go
        await answered(first, second, third)
        assert spy.sizes == [3]
        assert first.timing.durations()["batch_wait"] == pytest.approx(1.0)
        assert third.timing.durations()["batch_wait"] == pytest.approx(0.0)
        await h.batcher.stop()

    run_async(scenario)


def test_a_partial_batch_goes_when_the_window_closes(model_path: Path) -> None:
    # Real clock, tiny window: only the timer can release these three (no more will come).
    async def scenario() -> None:
        spy = SpyRuntime(load(model_path))
        h = make_batcher([spy], SYSTEM_CLOCK, max_batch_size=8, max_queue_delay_s=0.002)
        entries = [h.submit(i) for i in range(3)]
        results = await answered(*entries)
        assert sum(spy.sizes) == 3 and max(spy.sizes) <= 3
        for queued, result in zip(entries, results):
            assert_predictions(result, expected(queued.tensor, queued.top_k))
        await h.batcher.stop()

    run_async(scenario)


# --- instances and in-flight bound -----------------------------------------------------------


def test_batches_in_flight_never_exceed_the_instances(model_path: Path) -> None:
    async def scenario() -> None:
        gate = threading.Event()
        spies = [SpyRuntime(load(model_path), gate), SpyRuntime(load(model_path), gate)]
        for spy in spies:
            spy.watch()
        h = make_batcher(spies, ManualClock(), max_batch_size=2, max_queue_delay_s=0.0)
        entries = [h.submit(i % 4) for i in range(10)]
        try:
            for spy in spies:  # both instances take a batch, and are held there
                assert await asyncio.wait_for(spy.entered.get(), WAIT_S) == 2  # type: ignore[union-attr]
            await settle()
            assert h.batcher.batches_in_flight == 2
            assert h.batcher.depth == 6  # the rest wait: no third batch while both are busy
            assert sum(len(spy.batches) for spy in spies) == 2
        finally:
            gate.set()
        results = await answered(*entries)
        assert all(spy.max_active <= 1 for spy in spies)  # one batch per instance at a time
        assert sorted(size for spy in spies for size in spy.sizes) == [2] * 5
        for queued, result in zip(entries, results):
            assert_predictions(result, expected(queued.tensor, queued.top_k))
        assert h.batcher.batches_in_flight == 0
        await h.batcher.stop()

    run_async(scenario)


# --- refusals, deadlines, cancellation -------------------------------------------------------


def test_a_full_queue_refuses_with_overloaded(model_path: Path) -> None:
    async def scenario() -> None:
        h = make_batcher(
            [load(model_path)], ManualClock(), max_batch_size=8, max_queue_delay_s=WAIT_S, max_queue_size=3
        )
        queued = [h.submit(i) for i in range(3)]
        with pytest.raises(Overloaded) as refused:
            h.submit(0)
        assert refused.value.status == 429
        assert h.batcher.depth == 3
        await h.batcher.stop()  # drains the three that were admitted
        await answered(*queued)

    run_async(scenario)


def test_an_expired_request_is_answered_deadline_exceeded_without_running(model_path: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        spy = SpyRuntime(load(model_path))
        h = make_batcher([spy], clock, max_batch_size=2, max_queue_delay_s=WAIT_S)
        expiring = h.submit(0, deadline=1.0)
        await settle()
        clock.advance(2.0)
        alive = [h.submit(1), h.submit(2)]
        assert isinstance(await failed(expiring), DeadlineExceeded)
        await answered(*alive)
        assert spy.sizes == [2]  # the expired request was not in the batch
        assert not any(np.array_equal(expiring.tensor, row) for row in spy.batches[0])
        assert expiring.timing.ended(Stage.BATCH_WAIT) is None  # never reached inference
        await h.batcher.stop()

    run_async(scenario)


def test_a_request_already_past_its_deadline_never_runs(model_path: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock(5.0)
        spy = SpyRuntime(load(model_path))
        h = make_batcher([spy], clock, max_batch_size=8, max_queue_delay_s=0.0)
        late = h.submit(0, deadline=5.0)
        error = await failed(late)
        assert isinstance(error, DeadlineExceeded) and error.status == 504
        assert spy.batches == []
        await h.batcher.stop()

    run_async(scenario)


def test_a_cancelled_request_is_dropped_before_running(model_path: Path) -> None:
    async def scenario() -> None:
        spy = SpyRuntime(load(model_path))
        h = make_batcher([spy], ManualClock(), max_batch_size=2, max_queue_delay_s=WAIT_S)
        gone = h.submit(0)
        await settle()
        gone.future.cancel()  # the client went away
        alive = [h.submit(1), h.submit(2)]
        await answered(*alive)
        assert spy.sizes == [2]
        assert not any(np.array_equal(gone.tensor, row) for row in spy.batches[0])
        assert gone.future.cancelled()
        assert h.batcher.depth == 0
        await h.batcher.stop()

    run_async(scenario)  # run_async fails on any error the loop reports


def test_a_request_cancelled_while_running_is_not_answered(model_path: Path) -> None:
    async def scenario() -> None:
        gate = threading.Event()
        spy = SpyRuntime(load(model_path), gate)
        spy.watch()
        h = make_batcher([spy], ManualClock(), max_batch_size=2, max_queue_delay_s=0.0)
        gone, kept = h.submit(0), h.submit(1)
        try:
            await asyncio.wait_for(spy.entered.get(), WAIT_S)  # type: ignore[union-attr]
            gone.future.cancel()
        finally:
            gate.set()
        [result] = await answered(kept)
        assert_predictions(result, expected(kept.tensor, kept.top_k))
        assert gone.future.cancelled()
        await h.batcher.stop()

    run_async(scenario)


# --- failures --------------------------------------------------------------------------------


def test_a_runtime_exception_reaches_every_request_of_its_batch(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        failing = FailingRuntime(load(model_path), failures=1)
        h = make_batcher([failing], ManualClock(), max_batch_size=3, max_queue_delay_s=WAIT_S)
        batch = [h.submit(i) for i in range(3)]
        errors = [await failed(p) for p in batch]
        assert all(isinstance(e, InferenceFailed) for e in errors)
        assert all("simulated device fault" in str(e) and e.status == 500 for e in errors)
        # The instance is free again and serves the next batch.
        after = [h.submit(i) for i in range(3)]
        for queued, result in zip(after, await answered(*after)):
            assert_predictions(result, expected(queued.tensor, queued.top_k))
        assert h.batcher.batches_in_flight == 0
        await h.batcher.stop()

    run_async(scenario)
    assert "inference failed" in caplog.text


def test_a_runtime_returning_the_wrong_number_of_rows_fails_the_batch(model_path: Path) -> None:
    async def scenario() -> None:
        h = make_batcher(
            [RowDroppingRuntime(load(model_path))], ManualClock(), max_batch_size=3, max_queue_delay_s=WAIT_S
        )
        batch = [h.submit(i) for i in range(3)]
        for queued in batch:
            error = await failed(queued)
            assert isinstance(error, InferenceFailed)
            assert "2 rows for a batch of 3" in str(error)
        await h.batcher.stop()

    run_async(scenario)


# --- stopping --------------------------------------------------------------------------------


def test_stop_drains_the_queue_and_refuses_new_work(model_path: Path) -> None:
    async def scenario() -> None:
        spy = SpyRuntime(load(model_path))
        h = make_batcher([spy], ManualClock(), max_batch_size=4, max_queue_delay_s=WAIT_S)
        entries = [h.submit(i % 4) for i in range(6)]  # 4 go at once; 2 wait for a window that never closes
        stopping = asyncio.ensure_future(h.batcher.stop())
        await settle()
        with pytest.raises(Unavailable) as refused:
            h.submit(0)
        assert refused.value.status == 503
        await asyncio.wait_for(stopping, WAIT_S)
        results = [p.future.result() for p in entries]  # all answered by the time stop() returns
        for queued, result in zip(entries, results):
            assert_predictions(result, expected(queued.tensor, queued.top_k))
        assert spy.sizes == [4, 2]
        with pytest.raises(Unavailable):
            h.submit(0)

    run_async(scenario)


# --- timing ----------------------------------------------------------------------------------


def test_each_request_is_stamped_batch_wait_inference_postprocess_in_order(model_path: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        runtime = ClockAdvancingRuntime(load(model_path), clock, 1.0)
        postprocessor = Postprocessor(LABELS, "logits")

        def postprocess(outputs: np.ndarray, ks: list[int]) -> list[list[Prediction]]:
            clock.advance(0.5)
            return postprocessor(outputs, ks)

        policy = BatchPolicy.of(BatchingConfig(max_batch_size=2, max_queue_delay_s=WAIT_S))
        batcher = Batcher("tiny", policy, [Instance("tiny", 0, runtime)], postprocess, clock)
        batcher.start()
        h = Harness(batcher, clock)
        first = h.submit(0)
        await settle()
        clock.advance(0.25)
        second = h.submit(1)
        await answered(first, second)
        for queued, waited in ((first, 0.25), (second, 0.0)):
            timing = queued.timing
            ends = [timing.ended(s) for s in (Stage.BATCH_WAIT, Stage.INFERENCE, Stage.POSTPROCESS)]
            assert None not in ends and ends == sorted(ends)  # type: ignore[type-var]
            durations = timing.durations()
            assert durations["batch_wait"] == pytest.approx(waited)
            assert durations["inference"] == pytest.approx(1.0)
            assert durations["postprocess"] == pytest.approx(0.5)
            assert timing.batch_size == 2
        await batcher.stop()

    run_async(scenario)


def test_normalization_is_timed_in_inference_not_before(model_path: Path) -> None:
    """A request carries its uint8 crop to the batcher; normalizing it into the batch buffer is part
    of the batch's assembly, on the instance's thread, after ``batch_wait`` ends: it counts in ``inference``."""
    clock = ManualClock()

    class SlowToNormalize(Prepared):
        def write(self, out: np.ndarray) -> None:
            clock.advance(0.125)
            super().write(out)

    async def scenario() -> None:
        h = make_batcher([ClockAdvancingRuntime(load(model_path), clock, 1.0)], clock, max_batch_size=1)
        spec = PreprocessSpec(8, 8, (0.0, 0.0, 0.0), (255.0, 255.0, 255.0))
        red = np.zeros((8, 8, 3), dtype=np.uint8)
        red[..., 0] = 255
        crop = SlowToNormalize(red, 64, spec)
        pending = Queued(crop, 1, FAR, Timing(clock.now()), asyncio.get_running_loop().create_future())
        h.batcher.submit(pending)
        [answer] = await answered(pending)
        assert answer[0].label == "red"  # the normalized crop reached the model
        durations = pending.timing.durations()
        assert durations["batch_wait"] == pytest.approx(0.0)
        assert durations["inference"] == pytest.approx(1.125)
        await h.batcher.stop()

    run_async(scenario)

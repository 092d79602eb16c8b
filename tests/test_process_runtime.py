"""A model instance's runtime in a child process, on the real default model: the same outputs as
the in-process session; a killed or hung child is a typed error and a replacement serves; closing
(or the parent dying) leaves no process and no shared memory behind.

Waits are bounded: the runtime's own bounds, and ``wait_for`` deadlines for processes to go.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from servoscope.errors import InferenceFailed, InstanceLost, Unavailable
from servoscope.models.repository import ModelEntry, find
from servoscope.pipeline.instance_messages import ChildSpec
from servoscope.pipeline.process_runtime import Bounds, ProcessRuntime
from servoscope.pipeline.runtime import OnnxModel, RuntimeError_
from support import MODEL, REPO_ROOT, wait_for

MAX_BATCH = 4


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaps counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


def shared_blocks() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.fixture(scope="module")
def entry(model_repository: Path) -> ModelEntry:
    return find(model_repository, MODEL)


def spec_of(entry: ModelEntry, path: Path | None = None) -> ChildSpec:
    cfg = entry.config
    return ChildSpec(
        str(path or entry.model_file), "cpu", 1, cfg.input.name, cfg.output.name, (3, cfg.input.size, cfg.input.size)
    )


@pytest.fixture(scope="module")
def reference(entry: ModelEntry) -> OnnxModel:
    return OnnxModel(entry.model_file, "cpu", 1, entry.config.input.name, entry.config.output.name)


@pytest.fixture
def runtime(entry: ModelEntry) -> Iterator[ProcessRuntime]:
    rt = ProcessRuntime(spec_of(entry), MAX_BATCH, f"{MODEL}#0", Bounds(start_s=60.0, run_s=30.0))
    yield rt
    rt.close()


def batch(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (rows, 3, 224, 224)).astype(np.float32)


def test_a_batch_gives_the_same_outputs_as_the_in_process_session(
    runtime: ProcessRuntime, reference: OnnxModel
) -> None:
    for rows in (1, MAX_BATCH):
        inputs = batch(rows, seed=rows)
        np.testing.assert_allclose(runtime.run(inputs), reference.run(inputs), rtol=1e-5, atol=1e-5)
    assert runtime.providers == ["CPUExecutionProvider"]
    assert runtime.pid is not None and runtime.pid != os.getpid()
    assert runtime.last_inference_s > 0.0


def test_a_killed_child_is_instance_lost_then_a_replacement_serves(
    runtime: ProcessRuntime, reference: OnnxModel
) -> None:
    inputs = batch(2)
    runtime.run(inputs)
    first = runtime.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    with pytest.raises(InstanceLost) as lost:
        runtime.run(inputs)
    assert lost.value.status == 503 and lost.value.reason == "instance_lost" and lost.value.retry_after_s
    assert str(first) in str(lost.value) and "SIGKILL" in str(lost.value)
    assert runtime.restarts == 1
    assert runtime.pid not in (None, first)
    np.testing.assert_allclose(runtime.run(inputs), reference.run(inputs), rtol=1e-5, atol=1e-5)
    assert gone(first)


def test_a_hung_child_is_killed_at_the_bound_and_replaced(entry: ModelEntry, reference: OnnxModel) -> None:
    runtime = ProcessRuntime(spec_of(entry), MAX_BATCH, f"{MODEL}#0", Bounds(start_s=60.0, run_s=0.5))
    try:
        inputs = batch(1)
        runtime.run(inputs)
        hung = runtime.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)
        with pytest.raises(InstanceLost, match=r"did not answer within 0\.5s"):
            runtime.run(inputs)
        assert gone(hung)
        np.testing.assert_allclose(runtime.run(inputs), reference.run(inputs), rtol=1e-5, atol=1e-5)
    finally:
        runtime.close()


def test_a_batch_that_does_not_fit_is_refused_without_losing_the_child(runtime: ProcessRuntime) -> None:
    runtime.run(batch(1))
    with pytest.raises(InferenceFailed, match="does not fit"):
        runtime.run(batch(MAX_BATCH + 1))
    runtime.run(batch(1))
    assert runtime.restarts == 0


def test_close_stops_the_child_and_removes_the_shared_memory(entry: ModelEntry) -> None:
    runtime = ProcessRuntime(spec_of(entry), MAX_BATCH, f"{MODEL}#0")
    runtime.run(batch(1))
    pid, blocks = runtime.pid, set(runtime.shared_memory)
    assert pid is not None and len(blocks) == 2 and blocks <= shared_blocks()  # input and output
    runtime.close()
    assert gone(pid)
    assert not blocks & shared_blocks()
    with pytest.raises(Unavailable):
        runtime.run(batch(1))


def test_a_model_that_cannot_load_fails_at_start_with_the_reason(entry: ModelEntry, tmp_path: Path) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx model")
    runtime = ProcessRuntime(spec_of(entry, broken), MAX_BATCH, "broken#0")
    try:
        with pytest.raises(RuntimeError_, match="cannot load"):
            runtime.run(batch(1))
    finally:
        runtime.close()


PARENT = """
import sys
import numpy as np
from servoscope.pipeline.instance_messages import ChildSpec
from servoscope.pipeline.process_runtime import ProcessRuntime
runtime = ProcessRuntime(ChildSpec(sys.argv[1], "cpu", 1, "input", "logits", (3, 224, 224)), 1, "orphan#0")
runtime.run(np.zeros((1, 3, 224, 224), dtype=np.float32))
print(runtime.pid, flush=True)
sys.stdin.read()  # until the test kills us
"""


def test_a_child_exits_when_its_parent_dies(entry: ModelEntry) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(entry.model_file)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())  # bounded: the parent's own start-up bound
        assert not gone(child)
    finally:
        parent.kill()
        parent.wait(30)
    wait_for(lambda: gone(child), deadline_s=20.0)

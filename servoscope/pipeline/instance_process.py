"""The child process of a process-isolated model instance: one ONNX Runtime session, loaded once,
running the batches its parent sends (see :mod:`servoscope.pipeline.instance_messages`).

It exits when told to (``Stop``) and when its parent is gone (the pipe ends), so it never
outlives the server. It ignores SIGINT: on ^C the server drains and stops it itself.
"""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np

from servoscope.pipeline.instance_messages import (
    Buffers,
    ChildSpec,
    Done,
    Failed,
    LoadFailed,
    Ready,
    RowsSpec,
    Run,
    Stop,
)
from servoscope.pipeline.runtime import OnnxModel


class SharedRows:
    """Rows of one shape and dtype in a block of shared memory, seen as numpy arrays without copying."""

    def __init__(self, spec: RowsSpec, memory: SharedMemory, owner: bool) -> None:
        self.spec = spec
        self._memory = memory
        self._owner = owner

    @classmethod
    def create(cls, row_shape: tuple[int, ...], dtype: str, capacity: int) -> SharedRows:
        nbytes = max(1, capacity * int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        memory = SharedMemory(create=True, size=nbytes)
        return cls(RowsSpec(memory.name, tuple(row_shape), np.dtype(dtype).str, capacity), memory, owner=True)

    @classmethod
    def attach(cls, spec: RowsSpec) -> SharedRows:
        return cls(spec, SharedMemory(name=spec.name), owner=False)

    def rows(self, n: int) -> np.ndarray:
        """The first ``n`` rows (a view: drop it before :meth:`close`)."""
        if not 0 <= n <= self.spec.capacity:
            raise ValueError(f"{n} rows do not fit a block of {self.spec.capacity}")
        return np.ndarray((n, *self.spec.row_shape), dtype=self.spec.dtype, buffer=self._memory.buf)

    def close(self) -> None:
        """Detach; the owner also removes the block."""
        self._memory.close()
        if self._owner:
            self._memory.unlink()


def main(conn: Connection, spec: ChildSpec) -> None:
    """The child's entry point (a ``multiprocessing`` target, started with "spawn")."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        model = OnnxModel(Path(spec.path), spec.provider, spec.intra_op_threads, spec.input_name, spec.output_name)
        probe = np.asarray(model.run(np.zeros((1, *spec.input_row_shape), dtype=np.float32)))
    except Exception as exc:
        conn.send(LoadFailed(f"{type(exc).__name__}: {exc}"))
        return
    conn.send(Ready(os.getpid(), tuple(model.providers), tuple(probe.shape[1:]), probe.dtype.str))
    try:
        serve(conn, model)
    except (EOFError, OSError):  # the parent is gone
        return


def serve(conn: Connection, model: OnnxModel) -> None:
    inputs: SharedRows | None = None
    outputs: SharedRows | None = None
    try:
        while True:
            message = conn.recv()
            if isinstance(message, Stop):
                return
            if isinstance(message, Buffers):
                for block in (inputs, outputs):
                    if block is not None:
                        block.close()
                inputs, outputs = SharedRows.attach(message.input), SharedRows.attach(message.output)
            elif isinstance(message, Run) and inputs is not None and outputs is not None:
                conn.send(run(model, inputs, outputs, message.rows))
            else:
                conn.send(
                    Failed(f"unexpected message {type(message).__name__} (buffers attached: {inputs is not None})")
                )
    finally:
        for block in (inputs, outputs):
            if block is not None:
                block.close()


def run(model: OnnxModel, inputs: SharedRows, outputs: SharedRows, rows: int) -> Done | Failed:
    started = time.perf_counter()
    try:
        result = model.run(inputs.rows(rows))
        if result.shape != (rows, *outputs.spec.row_shape):
            return Failed(f"the model returned shape {result.shape} for {rows} rows")
        outputs.rows(rows)[...] = result
    except Exception as exc:
        return Failed(f"{type(exc).__name__}: {exc}")
    return Done(rows, time.perf_counter() - started)

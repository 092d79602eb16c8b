"""A model instance's runtime in a child process of its own (``instances.isolation = "process"``).

The child (:mod:`servoscope.pipeline.instance_process`) loads the ONNX Runtime session once; the
instance's feeding thread calls :meth:`ProcessRuntime.run`, which writes the batch to a shared-memory
block sized for ``max_batch_size`` (reused for every batch, and by every replacement child), sends a
``Run`` message and waits on the pipe *and* the child's sentinel together, with a bound. If the child
died (or hung past the bound: it is killed) the runtime starts a replacement at once and raises
:class:`~servoscope.errors.InstanceLost`; the batcher retries the batch. The next ``run`` waits for
the replacement to be ready. Nothing polls: a death is seen when a batch needs the child.

Children are started with "spawn" (the serving process has threads: no fork). As with any spawn,
a script that builds process-isolated instances itself must guard its entry point with
``if __name__ == "__main__":`` (``python -m servoscope`` and the ``servoscope`` command do).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import NoReturn

import numpy as np

from servoscope.errors import InferenceFailed, InstanceLost, Unavailable
from servoscope.pipeline import instance_process
from servoscope.pipeline.instance_messages import (
    Buffers,
    ChildSpec,
    Done,
    Failed,
    FromChild,
    LoadFailed,
    Ready,
    Run,
    Stop,
    ToChild,
)
from servoscope.pipeline.instance_process import SharedRows
from servoscope.pipeline.runtime import RuntimeError_

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Bounds:
    """How long the parent waits for its child, seconds."""

    start_s: float = 120.0  # spawn, import, load the session, run one row
    run_s: float = 60.0  # one batch; past it the child is taken for hung and killed
    stop_s: float = 5.0  # to exit after Stop (then it is killed)


@dataclass(slots=True)
class Child:
    process: BaseProcess
    conn: Connection
    pid: int | None
    ready: bool = False  # loaded and attached to the shared blocks
    exitcode: int | None = None
    ended: bool = False


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class ProcessRuntime:
    """A :class:`~servoscope.pipeline.runtime.Runtime` whose session lives in a child process."""

    def __init__(self, spec: ChildSpec, max_batch_size: int, label: str, bounds: Bounds = Bounds()) -> None:
        self.spec = spec
        self.capacity = max_batch_size
        self.label = label  # "model#index", for logs and errors
        self.bounds = bounds
        self.restarts = 0  # replacements started
        self.last_inference_s = 0.0  # the child's own timing of the last batch
        self._providers: tuple[str, ...] = ()
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()  # one exchange with the child at a time
        self._inputs: SharedRows | None = None
        self._outputs: SharedRows | None = None
        self._closed = False
        self._child = self._spawn()  # loads while the other instances start; run() waits for it

    @property
    def pid(self) -> int | None:
        """The current child's process id."""
        return self._child.pid

    @property
    def shared_memory(self) -> tuple[str, ...]:
        """The names of its shared-memory blocks (input, output), once the first child is ready."""
        return tuple(block.spec.name for block in (self._inputs, self._outputs) if block is not None)

    @property
    def providers(self) -> list[str]:
        with self._lock:
            self._ready()
        return list(self._providers)

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            child = self._ready()
            if batch.ndim < 1 or not 0 < len(batch) <= self.capacity or batch.shape[1:] != self.spec.input_row_shape:
                raise InferenceFailed(
                    f"model instance {self.label}: a batch of shape {batch.shape} does not fit "
                    f"{self.capacity} rows of {self.spec.input_row_shape}"
                )
            assert self._inputs is not None and self._outputs is not None
            np.copyto(self._inputs.rows(len(batch)), batch, casting="same_kind")
            reply = self._exchange(child, Run(len(batch)), self.bounds.run_s)
            if isinstance(reply, Failed):
                raise InferenceFailed(f"model instance {self.label}: {reply.message}")
            if not isinstance(reply, Done) or reply.rows != len(batch):
                self._replace(child, f"answered {reply!r} to a batch of {len(batch)}")
            self.last_inference_s = reply.inference_s
            return self._outputs.rows(reply.rows).copy()

    def close(self) -> None:
        """Stop the child (Stop, then kill past the bound) and remove the shared blocks."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._end(self._child, polite=True)
            for block in (self._inputs, self._outputs):
                if block is not None:
                    block.close()

    # --- the child's life -----------------------------------------------------------------------

    def _spawn(self) -> Child:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=instance_process.main,
            args=(theirs, self.spec),
            name=f"servoscope-instance-{self.label}",
            daemon=True,
        )
        process.start()
        theirs.close()  # only the child holds its end: its death reads as the pipe's end here
        return Child(process, ours, process.pid)

    def _ready(self) -> Child:
        """The current child, once loaded and attached to the shared blocks (waited for, bounded)."""
        if self._closed:
            raise Unavailable(f"model instance {self.label} is closed", reason="shutting_down")
        child = self._child
        if child.ready:
            return child
        reply = self._receive(child, self.bounds.start_s, "while loading")
        if isinstance(reply, LoadFailed):
            self._end(child, polite=False)
            if self.restarts == 0:  # the first child: the model cannot load here, say so at start-up
                raise RuntimeError_(f"model instance {self.label} cannot load: {reply.message}")
            self._replace(child, f"could not load the model: {reply.message}")
        if not isinstance(reply, Ready):
            self._replace(child, f"sent {reply!r} instead of Ready")
        self._attach(child, reply)
        return child

    def _attach(self, child: Child, ready: Ready) -> None:
        if self._inputs is None or self._outputs is None:
            self._inputs = SharedRows.create(self.spec.input_row_shape, np.dtype(np.float32).str, self.capacity)
            self._outputs = SharedRows.create(ready.output_row_shape, ready.output_dtype, self.capacity)
        elif self._outputs.spec.row_shape != ready.output_row_shape:
            self._replace(child, f"outputs rows of {ready.output_row_shape}, not {self._outputs.spec.row_shape}")
        self._send(child, Buffers(self._inputs.spec, self._outputs.spec))
        self._providers = ready.providers
        child.ready = True
        log.info("model instance %s: process %d ready on %s", self.label, ready.pid, list(ready.providers))

    def _exchange(self, child: Child, message: ToChild, timeout_s: float) -> FromChild:
        self._send(child, message)
        return self._receive(child, timeout_s, "running a batch")

    def _send(self, child: Child, message: ToChild) -> None:
        try:
            child.conn.send(message)
        except OSError:  # BrokenPipeError and kin: the child is gone
            self._replace(child, "closed its pipe")

    def _receive(self, child: Child, timeout_s: float, doing: str) -> FromChild:
        """The child's answer, or :class:`InstanceLost` (and a replacement) if it dies or hangs first."""
        ready = wait([child.conn, child.process.sentinel], timeout_s)
        if child.conn in ready:
            with contextlib.suppress(EOFError, OSError):
                answer: FromChild = child.conn.recv()
                return answer
        if not ready:
            self._replace(child, f"did not answer within {timeout_s:g}s {doing}")
        self._replace(child, f"died {doing}")

    def _replace(self, child: Child, why: str) -> NoReturn:
        """End ``child``, start its replacement, and raise :class:`InstanceLost`."""
        pid = child.pid
        code = self._end(child, polite=False)
        self.restarts += 1
        self._child = self._spawn()
        log.warning(
            "model instance %s: process %s %s (%s); replacement %d is process %s",
            self.label,
            pid,
            why,
            describe_exit(code),
            self.restarts,
            self._child.process.pid,
        )
        raise InstanceLost(
            f"model instance {self.label}: its process {pid} {why} ({describe_exit(code)}); it is being replaced"
        )

    def _end(self, child: Child, polite: bool) -> int | None:
        """Stop (``polite``: ask first) and reap ``child``; its exit code."""
        if child.ended:
            return child.exitcode
        child.ended = True
        process = child.process
        if polite and process.is_alive():
            with contextlib.suppress(OSError):
                child.conn.send(Stop())
            process.join(self.bounds.stop_s)
        if process.is_alive():
            process.kill()
            process.join(self.bounds.stop_s)
        child.conn.close()
        child.exitcode = process.exitcode
        if child.exitcode is not None:
            process.close()  # its sentinel's fd
        return child.exitcode

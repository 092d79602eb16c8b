"""The messages between a model instance's runtime (in the serving process) and its child process.

Small typed values over a ``multiprocessing`` Pipe; tensors never travel in them — they live in
two shared-memory blocks (:class:`RowsSpec`), written by one side and read by the other. One
exchange at a time: the parent sends, then waits for the one answer.

::

    parent                          child
      │                   (start: ChildSpec)
      │  ◀── Ready | LoadFailed     loads the session, runs one zero row
      │  ──▶ Buffers                attaches the input and output blocks
      │  ──▶ Run                    reads rows from the input block
      │  ◀── Done | Failed          writes rows to the output block
      │  ──▶ Stop                   exits (as it does on the pipe's end: the parent is gone)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What a child needs to load its session: the model and the threads the thread plan gives it."""

    path: str
    provider: str
    intra_op_threads: int
    input_name: str
    output_name: str
    input_row_shape: tuple[int, ...]  # one request's tensor, e.g. (3, 224, 224)


@dataclass(frozen=True, slots=True)
class RowsSpec:
    """A shared-memory block holding up to ``capacity`` rows of ``row_shape`` and ``dtype``."""

    name: str
    row_shape: tuple[int, ...]
    dtype: str  # numpy's dtype.str, e.g. "<f4"
    capacity: int


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int
    providers: tuple[str, ...]
    output_row_shape: tuple[int, ...]
    output_dtype: str


@dataclass(frozen=True, slots=True)
class LoadFailed:
    message: str


@dataclass(frozen=True, slots=True)
class Buffers:
    input: RowsSpec
    output: RowsSpec


@dataclass(frozen=True, slots=True)
class Run:
    rows: int  # the first ``rows`` rows of the input block


@dataclass(frozen=True, slots=True)
class Done:
    rows: int  # the first ``rows`` rows of the output block
    inference_s: float  # the session's own run, timed in the child


@dataclass(frozen=True, slots=True)
class Failed:
    """The session raised; the child lives on."""

    message: str


@dataclass(frozen=True, slots=True)
class Stop:
    pass


ToChild = Buffers | Run | Stop
FromChild = Ready | LoadFailed | Done | Failed

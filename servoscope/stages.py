"""The stage names and the per-request timing record.

Every part of servoscope (server, load generator, doctor) means the same thing by these
words. A request passes the stages in order; each stage ends where the next begins, so
the stage durations of one record always add up to its ``total``::

    ingest → preprocess_wait → preprocess → batch_wait → inference → postprocess → respond

``preprocess_wait`` is the wait in the preprocess queue (for a preprocessing worker),
``batch_wait`` the wait in the batch queue (the batcher, until the batch that carries the
request starts on its instance). ``preprocess`` decodes, resizes and crops to uint8 pixels;
``inference`` assembles the batch — each image normalized, ``(x - mean) / std``, straight into the
instance's batch buffer — and runs the model. README's "Names" section lists every word of this
vocabulary.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Stage(str, enum.Enum):
    INGEST = "ingest"
    PREPROCESS_WAIT = "preprocess_wait"
    PREPROCESS = "preprocess"
    BATCH_WAIT = "batch_wait"
    INFERENCE = "inference"
    POSTPROCESS = "postprocess"
    RESPOND = "respond"

    def __str__(self) -> str:
        return self.value


STAGES: tuple[Stage, ...] = tuple(Stage)
TOTAL = "total"
STAGE_NAMES: tuple[str, ...] = (*(s.value for s in STAGES), TOTAL)
_INDEX = {stage: i for i, stage in enumerate(STAGES)}


@dataclass(slots=True)
class Timing:
    """Monotonic timestamps (seconds) of one request: when it arrived, and when each stage ended.

    A stage that was never reached (the request failed before it) has no end and no duration.
    """

    start: float
    ends: list[float | None] = field(default_factory=lambda: [None] * len(STAGES))
    model: str = ""
    batch_size: int = 0
    input_bytes: int = 0
    input_pixels: int = 0
    ignored_metadata: str | None = None  # why the image's EXIF was ignored (it did not parse), if it was
    status: int = 0
    error: str = ""  # the error's reason when status is not 2xx
    delivery_s: float | None = None  # after ``respond``: until the client acknowledged the answer
    protocol: str = "http"  # how the request came: http or grpc (a metrics label)
    trace: Any = None  # the tracing span of this request, when tracing is on (opaque here)

    def end(self, stage: Stage, at: float) -> None:
        self.ends[_INDEX[stage]] = at

    def ended(self, stage: Stage) -> float | None:
        return self.ends[_INDEX[stage]]

    def intervals(self) -> list[tuple[Stage, float, float]]:
        """(stage, start, end) of each reached stage, in order; each starts where the previous ended."""
        out = []
        previous = self.start
        for stage, end in zip(STAGES, self.ends):
            if end is None:
                continue
            out.append((stage, previous, max(previous, end)))
            previous = max(previous, end)
        return out

    @property
    def last(self) -> float:
        """When the last reached stage ended (the start, if none was reached)."""
        return max((end for end in self.ends if end is not None), default=self.start)

    def durations(self) -> dict[str, float]:
        """Seconds spent in each reached stage, and ``total`` up to the last stage reached."""
        out = {stage.value: end - start for stage, start, end in self.intervals()}
        out[TOTAL] = max(0.0, self.last - self.start)
        return out

    def server_timing(self) -> str:
        """The W3C ``Server-Timing`` header value, durations in milliseconds."""
        return ", ".join(f"{name};dur={sec * 1000:.3f}" for name, sec in self.durations().items())


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One batch run by one model instance: when it started, finished inference and postprocessing."""

    model: str
    instance: int
    started: float
    inferred: float
    finished: float
    members: tuple[Timing, ...]

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def busy_s(self) -> float:
        """Seconds the instance spent on this batch (inference and postprocessing)."""
        return self.finished - self.started


RecordSink = Callable[[Timing], None]
BatchSink = Callable[[BatchRecord], None]


def discard(_: object) -> None:
    """A sink that keeps nothing."""


def parse_server_timing(header: str) -> dict[str, float]:
    """Seconds per stage from a ``Server-Timing`` header written by :meth:`Timing.server_timing`."""
    out: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.partition(";")
        name = name.strip()
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur" and name:
                with contextlib.suppress(ValueError):
                    out[name] = float(value) / 1000.0
    return out

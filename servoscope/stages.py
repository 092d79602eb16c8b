"""The stage names and the per-request timing record.

Every part of servoscope (server, load generator, doctor) means the same thing by these
words. A request passes the stages in order; each stage ends where the next begins, so
the stage durations of one record always add up to its ``total``::

    ingest → queue → preprocess → batch_wait → inference → postprocess → respond

``queue`` is the wait for a preprocessing worker, ``batch_wait`` the wait in the batcher
(until the batch that carries the request starts inference).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Stage(str, enum.Enum):
    INGEST = "ingest"
    QUEUE = "queue"
    PREPROCESS = "preprocess"
    BATCH_WAIT = "batch_wait"
    INFERENCE = "inference"
    POSTPROCESS = "postprocess"
    RESPOND = "respond"

    def __str__(self) -> str:
        return self.value


STAGES: tuple[Stage, ...] = tuple(Stage)
TOTAL = "total"
STAGE_NAMES: tuple[str, ...] = tuple(s.value for s in STAGES) + (TOTAL,)
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
    status: int = 0

    def end(self, stage: Stage, at: float) -> None:
        self.ends[_INDEX[stage]] = at

    def ended(self, stage: Stage) -> float | None:
        return self.ends[_INDEX[stage]]

    def durations(self) -> dict[str, float]:
        """Seconds spent in each reached stage, and ``total`` up to the last stage reached."""
        out: dict[str, float] = {}
        previous = self.start
        for stage, end in zip(STAGES, self.ends):
            if end is None:
                continue
            out[stage.value] = max(0.0, end - previous)
            previous = end
        out[TOTAL] = max(0.0, previous - self.start)
        return out

    def server_timing(self) -> str:
        """The W3C ``Server-Timing`` header value, durations in milliseconds."""
        return ", ".join(f"{name};dur={sec * 1000:.3f}" for name, sec in self.durations().items())


def parse_server_timing(header: str) -> dict[str, float]:
    """Seconds per stage from a ``Server-Timing`` header written by :meth:`Timing.server_timing`."""
    out: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.partition(";")
        name = name.strip()
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur" and name:
                try:
                    out[name] = float(value) / 1000.0
                except ValueError:
                    pass
    return out

"""The rollout's audit log: one JSON object per line, appended and flushed as each step happens,
so a crash loses at most the line being written and the file reads back with any JSON-lines tool.

Each line carries ``time`` (wall clock, ISO 8601 UTC, for people), ``t_s`` (the monotonic clock,
for durations between lines), ``event`` and the event's own fields (a verdict's ``json()``, the
step's share, who signed off).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from servoscope.clock import SYSTEM_CLOCK, Clock

MAX_LINE_BYTES = 1 << 20
RESERVED = ("time", "t_s", "event")


class AuditLog:
    def __init__(self, path: Path, clock: Clock = SYSTEM_CLOCK, wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._wall = wall

    def write(self, event: str, /, **fields: Any) -> dict[str, Any]:
        """Append one line; returns what was written. Fields may not reuse the line's own keys."""
        clash = [key for key in fields if key in RESERVED]
        if not event or clash:
            raise ValueError(f"an audit line needs an event name and no field named {RESERVED}, got {event!r}, {clash}")
        when = datetime.datetime.fromtimestamp(self._wall(), tz=datetime.UTC)
        line = {"time": when.isoformat(timespec="milliseconds"), "t_s": self._clock.now(), "event": event, **fields}
        data = orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        if len(data) > MAX_LINE_BYTES:
            raise ValueError(f"an audit line is at most {MAX_LINE_BYTES} bytes, got {len(data)} for {event!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as out:
            out.write(data)
            out.flush()
        return line


def read(path: Path) -> list[dict[str, Any]]:
    """Every complete line of an audit log (a torn last line, from a crash mid-write, is skipped)."""
    lines = path.read_bytes().splitlines()
    out = []
    for number, raw in enumerate(lines, start=1):
        try:
            out.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            if number < len(lines):
                raise ValueError(f"{path}:{number} is not a JSON line") from None
    return out

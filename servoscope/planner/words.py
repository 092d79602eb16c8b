"""The planner's command words: ``200ms``, ``15%``, ``3x/10s``, a mix, batching overrides."""

from __future__ import annotations

import re

from pydantic import ValidationError

from servoscope.loadgen.mixes import parse_mix
from servoscope.loadgen.profiles import parse_duration
from servoscope.models.config import BatchingConfig

_BURST = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*[x×]\s*/\s*(\S+)\s*$")


def seconds(text: str) -> float:
    """``"200ms"`` → 0.2 (a bare number is seconds)."""
    value = parse_duration(text)
    if not value > 0:
        raise ValueError(f"need a duration > 0, like 200ms, got {text!r}")
    return value


def percent(text: str) -> float:
    """``"15%"`` or ``"+15%"`` → 0.15."""
    body = text.strip()
    try:
        if not body.endswith("%"):
            raise ValueError
        return float(body[:-1]) / 100.0
    except ValueError:
        raise ValueError(f"a growth is a percentage, like 15%, got {text!r}") from None


def burst(text: str) -> tuple[float, float]:
    """``"3x/10s"`` → (3.0, 10.0): the rate's factor and for how long."""
    match = _BURST.match(text)
    if not match:
        raise ValueError(f"a burst is FACTORx/DURATION, like 3x/10s, got {text!r}")
    factor, length = float(match.group(1)), parse_duration(match.group(2))
    if factor < 1 or not length > 0:
        raise ValueError(f"a burst needs a factor >= 1 and a duration > 0, got {text!r}")
    return factor, length


def mix_classes(text: str) -> dict[str, float]:
    """``"70%:4032x3024,30%:320x240"`` → ``{"4032x3024": 0.7, "320x240": 0.3}``."""
    out: dict[str, float] = {}
    for share, (width, height) in parse_mix(text):
        key = f"{width}x{height}"
        out[key] = out.get(key, 0.0) + share
    return out


def batching(
    base: BatchingConfig,
    max_batch_size: int | None,
    max_queue_delay_ms: float | None,
    preferred: str | None,
    max_queue_size: int | None,
) -> BatchingConfig:
    """``base`` with the values given replaced; a message naming the field when one is wrong."""
    raw = base.model_dump()
    if max_batch_size is not None:
        raw["max_batch_size"] = max_batch_size
    if max_queue_delay_ms is not None:
        raw["max_queue_delay_s"] = max_queue_delay_ms / 1000.0
    if max_queue_size is not None:
        raw["max_queue_size"] = max_queue_size
    if preferred is not None:
        try:
            raw["preferred_batch_sizes"] = tuple(int(s) for s in preferred.split(",") if s.strip())
        except ValueError:
            raise ValueError(
                f"--preferred-batch-sizes is a comma-separated list of sizes, like 4,8, got {preferred!r}"
            ) from None
    try:
        return BatchingConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'batching'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"batching settings: {problems}") from None

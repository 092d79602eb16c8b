"""Traffic profiles: a request rate that varies over time, and the arrivals that follow it.

A profile is a run of linear pieces, each from one rate to another over an interval, so
constant, step and ramp profiles (and any mix of them) share one shape:

    constant(20, 60)                          20/s for a minute
    step(20, 120, [(60, 1.15)])               20/s, then +15% from minute 1
    ramp(5, 40, 30, 60)                       5/s rising to 40/s over 30 s, then 40/s
    fleet_rate(10_000, 8)                     10 000 req/min for a fleet of 8 → 20.83/s here

Arrivals are drawn by time rescaling: the events of a unit-rate process (exponential gaps
for Poisson, gaps of exactly 1 for constant spacing) are mapped through the inverse of the
cumulative rate Λ(t) = ∫ rate. For a constant rate this is the ordinary Poisson process; for
a varying one it is the exact inhomogeneous Poisson process (what thinning approximates by
rejection), with no rejected draws. Pure functions, reproducible with a seed.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from servoscope.loadgen.schedule import MAX_ARRIVALS, MAX_DURATION_S

Arrivals = Literal["poisson", "constant"]


@dataclass(frozen=True, slots=True)
class Piece:
    """The rate goes linearly from ``from_rate`` to ``to_rate`` (req/s) over [start_s, end_s)."""

    start_s: float
    end_s: float
    from_rate: float
    to_rate: float

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s

    def rate_at(self, t: float) -> float:
        return self.from_rate + (self.to_rate - self.from_rate) * (t - self.start_s) / self.length_s

    @property
    def count(self) -> float:
        """Expected requests in the piece (the area under its rate)."""
        return 0.5 * (self.from_rate + self.to_rate) * self.length_s

    def time_after(self, x: float) -> float:
        """Seconds from the piece's start until ``x`` (≤ count) requests are expected."""
        if x <= 0:
            return 0.0
        slope = (self.to_rate - self.from_rate) / self.length_s
        root = math.sqrt(max(0.0, self.from_rate**2 + 2 * slope * x))
        return 2 * x / (self.from_rate + root) if self.from_rate + root > 0 else self.length_s


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    pieces: tuple[Piece, ...]

    def __post_init__(self) -> None:
        if not self.pieces:
            raise ValueError("a profile needs at least one piece")
        for a, b in zip(self.pieces, self.pieces[1:]):
            if a.end_s != b.start_s:
                raise ValueError(f"profile pieces must be contiguous, got {a.end_s} then {b.start_s}")
        for p in self.pieces:
            if not p.length_s > 0 or min(p.from_rate, p.to_rate) < 0 or not math.isfinite(p.from_rate + p.to_rate):
                raise ValueError(f"each piece needs a positive length and finite rates >= 0, got {p}")
        if self.duration_s > MAX_DURATION_S:
            raise ValueError(f"a profile lasts at most {MAX_DURATION_S:g} s, got {self.duration_s:g}")

    @property
    def duration_s(self) -> float:
        return self.pieces[-1].end_s

    @property
    def expected_count(self) -> float:
        return sum(p.count for p in self.pieces)

    @property
    def peak_rate(self) -> float:
        return max(max(p.from_rate, p.to_rate) for p in self.pieces)

    def rate_at(self, t: float) -> float:
        """Req/s at ``t`` seconds from the start (0 outside the profile)."""
        for piece in self.pieces:
            if piece.start_s <= t < piece.end_s:
                return piece.rate_at(t)
        return 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "duration_s": self.duration_s,
            "expected_requests": round(self.expected_count, 1),
            "pieces": [asdict(p) for p in self.pieces],
        }


def _check_rate(rate: float) -> None:
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate}")


def constant(rate: float, duration_s: float) -> Profile:
    _check_rate(rate)
    return Profile("constant", (Piece(0.0, duration_s, rate, rate),))


def step(rate: float, duration_s: float, steps: Sequence[tuple[float, float]]) -> Profile:
    """``rate``, multiplied by each step's factor from its time on: ``[(60, 1.15)]`` is +15% from 60 s."""
    _check_rate(rate)
    bounds = [0.0]
    rates = [rate]
    for at_s, factor in sorted(steps):
        if not 0 < at_s < duration_s or not factor > 0:
            raise ValueError(
                f"a step needs 0 < time < duration ({duration_s:g} s) and a factor > 0, got {at_s:g} s ×{factor:g}"
            )
        bounds.append(at_s)
        rates.append(rate * factor)
    bounds.append(duration_s)
    pieces = tuple(Piece(a, b, r, r) for a, b, r in zip(bounds, bounds[1:], rates) if b > a)
    return Profile("step", pieces)


def ramp(from_rate: float, to_rate: float, over_s: float, duration_s: float) -> Profile:
    """From ``from_rate`` to ``to_rate`` over ``over_s`` seconds, then ``to_rate`` to the end."""
    _check_rate(max(from_rate, to_rate))
    over_s = min(over_s, duration_s)
    pieces = [Piece(0.0, over_s, from_rate, to_rate)]
    if duration_s > over_s:
        pieces.append(Piece(over_s, duration_s, to_rate, to_rate))
    return Profile("ramp", tuple(pieces))


def fleet_rate(fleet_rpm: float, fleet_size: int) -> float:
    """This instance's share, req/s, of ``fleet_rpm`` requests per minute spread over ``fleet_size`` instances."""
    if not fleet_rpm > 0 or fleet_size < 1:
        raise ValueError(f"need fleet requests per minute > 0 and fleet size >= 1, got {fleet_rpm} and {fleet_size}")
    return fleet_rpm / 60.0 / fleet_size


def arrivals(
    profile: Profile, kind: Arrivals = "poisson", seed: int | None = None, limit: int = MAX_ARRIVALS
) -> list[float]:
    """Send times (seconds from the start) following ``profile``, at most ``limit`` of them."""
    if kind not in ("poisson", "constant"):
        raise ValueError(f"arrivals must be 'poisson' or 'constant', got {kind!r}")
    rng = random.Random(seed)

    def gap() -> float:
        return rng.expovariate(1.0) if kind == "poisson" else 1.0

    times: list[float] = []
    x = gap() if kind == "poisson" else 0.0  # position in Λ-space, relative to the current piece
    for piece in profile.pieces:
        while x < piece.count and len(times) < limit:
            times.append(piece.start_s + min(piece.time_after(x), piece.length_s))
            x += gap()
        x -= piece.count
    return times


# ---------------------------------------------------------------- parsing the command's words

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"1.5m"``, ``"500ms"``, ``"1h"`` → seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration (like 30s, 2m, 500ms): {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_step(text: str) -> tuple[float, float]:
    """``"15%@60s"`` (or ``"+15%@1m"``, ``"-20%@30s"``) → (60.0, 1.15): time and rate factor."""
    change, sep, at = text.partition("@")
    change = change.strip()
    if not sep or not change.endswith("%"):
        raise ValueError(f"a step is PERCENT@TIME, like 15%@60s or -20%@2m, got {text!r}")
    try:
        percent = float(change[:-1])
    except ValueError:
        raise ValueError(f"a step is PERCENT@TIME, like 15%@60s or -20%@2m, got {text!r}") from None
    return parse_duration(at), 1.0 + percent / 100.0


def parse_ramp(text: str) -> tuple[float, float, float | None]:
    """``"5:40"`` or ``"5:40@30s"`` → (from, to, over seconds or None for the whole run)."""
    rates, _, over = text.partition("@")
    low, sep, high = rates.partition(":")
    try:
        if not sep:
            raise ValueError
        pair = (float(low), float(high))
    except ValueError:
        raise ValueError(f"a ramp is FROM:TO[@DURATION] in req/s, like 5:40@30s, got {text!r}") from None
    return pair[0], pair[1], parse_duration(over) if over else None

"""Arrival processes for the simulation: sorted arrival times (seconds from 0), bounded, seeded.

- ``poisson``: exponential gaps at ``rate``.
- ``on_off``: an interrupted Poisson process: on periods (exponential, mean ``on_s``) at a raised
  rate, off periods (exponential) with no arrivals, sized so that the mean rate is ``rate`` and
  the squared coefficient of variation of the gaps is ``cv2``. Its gaps are hyperexponential (H2):
  for an on rate λ₁ and mean on/off periods T₁, T₀, CV² = 1 + 2·λ·T₀² / (T₁ + T₀) (Kuczura 1973).
- ``constant``: evenly spaced (for tests and hand-computed answers).
- ``replay``: the scheduled send times of a recorded ``servoscope load`` result, rebuilt from the
  profile, arrival kind, seed and request cap that the result file records — exactly the offsets
  the load generator sent at (checked against the file's scheduled count).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servoscope.loadgen import profiles
from servoscope.validation import read_json

MAX_ARRIVALS = 20_000_000


class ArrivalError(ValueError):
    """Arrivals that cannot be made: a bad rate, too many, or an unreadable result file."""


def _check(rate: float, duration_s: float) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ArrivalError(f"rate must be a positive number of requests per second, got {rate}")
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ArrivalError(f"duration must be a positive number of seconds, got {duration_s}")
    if rate * duration_s > MAX_ARRIVALS:
        raise ArrivalError(f"{rate:g}/s for {duration_s:g} s is more than {MAX_ARRIVALS} arrivals")


def poisson(rate: float, duration_s: float, seed: int = 0) -> np.ndarray:
    _check(rate, duration_s)
    rng = np.random.default_rng(seed)
    count = int(rate * duration_s + 10 * math.sqrt(rate * duration_s) + 10)
    times = np.cumsum(rng.exponential(1.0 / rate, size=count))
    return times[times < duration_s]


def constant(rate: float, duration_s: float) -> np.ndarray:
    _check(rate, duration_s)
    times = np.arange(int(rate * duration_s)) / rate
    return times[times < duration_s]


def off_period_s(rate: float, cv2: float, on_s: float) -> float:
    """The mean off period giving gaps of squared CV ``cv2`` at mean ``rate`` with mean on period ``on_s``."""
    excess = cv2 - 1.0
    return (excess + math.sqrt(excess * excess + 8 * rate * excess * on_s)) / (4 * rate)


def on_off(rate: float, cv2: float, duration_s: float, seed: int = 0, on_s: float = 1.0) -> np.ndarray:
    """Bursty arrivals: the mean rate ``rate``, the gaps' squared CV ``cv2`` (> 1), on periods of mean ``on_s``."""
    _check(rate, duration_s)
    if not (cv2 > 1 and math.isfinite(cv2)):
        raise ArrivalError(f"the CV² of bursty arrivals must be > 1 (1 is Poisson), got {cv2}")
    if not on_s > 0:
        raise ArrivalError(f"the mean on period must be > 0 s, got {on_s}")
    off_s = off_period_s(rate, cv2, on_s)
    on_rate = rate * (on_s + off_s) / on_s
    rng = np.random.default_rng(seed)
    chunks: list[np.ndarray] = []
    t = rng.exponential(off_s) * rng.random()  # start somewhere in a period
    while t < duration_s:
        length = rng.exponential(on_s)
        count = rng.poisson(on_rate * length)
        chunks.append(t + np.sort(rng.random(count)) * length)
        t += length + rng.exponential(off_s)
    times = np.concatenate(chunks) if chunks else np.zeros(0)
    return times[times < duration_s]


def burst(rate: float, duration_s: float, factor: float, at_s: float, length_s: float, seed: int = 0) -> np.ndarray:
    """Poisson at ``rate``, except ``factor`` × ``rate`` over [``at_s``, ``at_s`` + ``length_s``)."""
    steps = [(at_s, factor)] + ([(at_s + length_s, 1.0)] if at_s + length_s < duration_s else [])
    try:
        profile = profiles.step(rate, duration_s, steps)
    except ValueError as exc:
        raise ArrivalError(str(exc)) from None
    return np.asarray(profiles.arrivals(profile, "poisson", seed, MAX_ARRIVALS))


@dataclass(frozen=True)
class Replay:
    times: np.ndarray
    mix: dict[str, float]  # image-size class → share of the requests sent
    source: str
    phases: tuple[tuple[float, float], ...] = ()  # (start, end) seconds of each piece of the run's profile


def replay(path: Path) -> Replay:
    """The scheduled send times of a ``servoscope load -o`` result file."""
    return replay_result(read_json(path, "load result", ArrivalError), str(path))


def replay_result(result: Any, where: str = "load result") -> Replay:
    try:
        settings = result["settings"]
        if settings["loop"] != "open" or not result.get("profile"):
            raise ArrivalError(
                f"{where}: a closed-loop run has no schedule to replay; record an open-loop run (--rate)"
            )
        pieces = tuple(profiles.Piece(**p) for p in result["profile"]["pieces"])
        profile = profiles.Profile(result["profile"]["name"], pieces)
        offsets = profiles.arrivals(profile, settings["arrivals"], settings["seed"], settings["max_requests"])
        times = np.asarray([t for t in offsets if t < settings["duration_s"]])
        scheduled = result["counts"]["scheduled"]
        sent = result["mix"]["sent_by_kind"]
    except (KeyError, TypeError) as exc:
        raise ArrivalError(f"{where}: not a servoscope load result (missing or wrong field {exc})") from None
    except ValueError as exc:
        raise ArrivalError(f"{where}: {exc}") from None
    if len(times) != scheduled:
        raise ArrivalError(f"{where}: rebuilt {len(times)} send times but the run scheduled {scheduled}")
    return Replay(times, size_shares(sent), where, tuple((p.start_s, p.end_s) for p in pieces))


def size_shares(sent_by_kind: Mapping[str, int]) -> dict[str, float]:
    """``{"320x240.jpeg": 30, "320x240.png": 10}`` → ``{"320x240": 1.0}``: shares by image-size class."""
    counts: dict[str, int] = {}
    for kind, count in sent_by_kind.items():
        size = kind.split(".", 1)[0]
        counts[size] = counts.get(size, 0) + int(count)
    total = sum(counts.values())
    return {size: count / total for size, count in counts.items()} if total else {}


def draw_classes(count: int, shares: Sequence[float], seed: int = 0) -> np.ndarray:
    """The image-size class index of each of ``count`` requests, drawn by ``shares``."""
    weights = np.asarray(shares, dtype=float)
    if len(weights) == 0 or weights.min() < 0 or not weights.sum() > 0:
        raise ArrivalError(f"class shares must be >= 0 and not all 0, got {list(shares)}")
    rng = np.random.default_rng(seed + 7919)
    return rng.choice(len(weights), size=count, p=weights / weights.sum())

"""``servoscope tune``'s search, a pure function: a coordinate (hill-climb) search over a grid of
:class:`~servoscope.planner.knobs.Knobs`, seeded by predictions and decided by measurements.

1. Start at the point the planner predicts best (highest objective-meeting rate) and measure it.
2. Coordinate steps: of the knobs not yet tried from the current point, take the one whose
   one-step neighbour the planner predicts best, and measure that neighbour — unless its prediction
   is below ``(1 − slack)`` × the current point's (the planner is trusted to rule out what it
   predicts far worse, not to rank what it predicts close: that is left to measurement). Move there
   if it measured better, and try every knob again from there.
3. Stop when every knob was tried (or ruled out) from the current point, or after ``max_trials``
   measurements.

Measuring is the caller's (a live server per configuration, or a fake response surface in tests);
so is predicting. The grid is the product of each knob's values, in the order given.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from servoscope.planner.knobs import NAMES, Knobs

SLACK = 0.2  # neighbours predicted up to 20% below the current point are still measured


@dataclass(frozen=True)
class Space:
    """Each knob's values, in order (a neighbour is one step along one knob)."""

    values: Mapping[str, tuple[float, ...]]

    def __post_init__(self) -> None:
        missing = [n for n in NAMES if not self.values.get(n)]
        if missing:
            raise ValueError(f"the search space needs at least one value for {', '.join(missing)}")
        unknown = sorted(set(self.values) - set(NAMES))
        if unknown:
            raise ValueError(f"not a tuned setting: {', '.join(unknown)}; the settings are {', '.join(NAMES)}")
        for pick in (min, max):  # every value within its bounds (Knobs checks them)
            Knobs(*(pick(self.values[n]) for n in NAMES))  # type: ignore[arg-type]

    def points(self) -> list[Knobs]:
        combos = itertools.product(*(self.values[n] for n in NAMES))
        return [Knobs(*combo) for combo in combos]  # type: ignore[arg-type]

    def neighbours(self, at: Knobs) -> list[tuple[str, Knobs]]:
        """(the knob changed, the point) one step along one knob from ``at``."""
        out = []
        for name in NAMES:
            values = self.values[name]
            i = values.index(getattr(at, name))
            for j in (i - 1, i + 1):
                if 0 <= j < len(values):
                    out.append((name, Knobs(**{**at.to_json(), name: values[j]})))
        return out


@dataclass(frozen=True)
class Outcome:
    """A configuration's measurement: the highest rate at which it met the objective (0: none), the
    P95 there, every (rate, P95) it was measured at, its limiting stage, and the seconds it took."""

    rate_per_s: float
    p95_ms: float
    points: tuple[tuple[float, float], ...] = ()
    limiting_stage: str = ""
    measuring_s: float = 0.0


@dataclass(frozen=True)
class Trial:
    knobs: Knobs
    predicted_per_s: float
    outcome: Outcome


@dataclass
class Search:
    trials: list[Trial] = field(default_factory=list)
    stopped: str = ""  # why the search stopped

    @property
    def best(self) -> Trial | None:
        meeting = [t for t in self.trials if t.outcome.rate_per_s > 0]
        return max(meeting, key=lambda t: t.outcome.rate_per_s, default=None)

    @property
    def measuring_s(self) -> float:
        return sum(t.outcome.measuring_s for t in self.trials)


Measure = Callable[[Knobs, float], Outcome]  # (knobs, the predicted objective-meeting rate) → outcome
Say = Callable[[Trial, str], None]


def _quiet(_: Trial, __: str) -> None:
    pass


def coordinate_search(
    space: Space,
    predicted: Mapping[Knobs, float],
    measure: Measure,
    max_trials: int,
    slack: float = SLACK,
    say: Say = _quiet,
) -> Search:
    """Hill-climb over ``space`` from the best predicted point; at most ``max_trials`` measurements."""
    if max_trials < 1:
        raise ValueError(f"max_trials must be >= 1, got {max_trials}")
    points = space.points()
    unknown = [p for p in points if p not in predicted]
    if unknown:
        raise ValueError(f"no prediction for {len(unknown)} points of the space, e.g. {unknown[0].describe()}")
    search = Search()
    measured: dict[Knobs, Trial] = {}

    def run(knobs: Knobs, why: str) -> Trial:
        trial = Trial(knobs, predicted[knobs], measure(knobs, predicted[knobs]))
        measured[knobs] = trial
        search.trials.append(trial)
        say(trial, why)
        return trial

    current = run(max(points, key=lambda p: predicted[p]), "the planner's best")
    tried: set[str] = set()  # knobs tried from the current point
    while True:
        if len(search.trials) >= max_trials:
            search.stopped = f"the budget of {max_trials} measurements is spent"
            return search
        step = _next_step(space, current.knobs, predicted, measured, tried, slack)
        if step is None:
            search.stopped = "every knob was tried (or predicted far worse) from the best measured point"
            return search
        name, knobs = step
        tried.add(name)
        trial = run(knobs, f"{name} {getattr(current.knobs, name):g} → {getattr(knobs, name):g}")
        if trial.outcome.rate_per_s > current.outcome.rate_per_s:
            current, tried = trial, set()


def _next_step(
    space: Space,
    at: Knobs,
    predicted: Mapping[Knobs, float],
    measured: Mapping[Knobs, Trial],
    tried: set[str],
    slack: float,
) -> tuple[str, Knobs] | None:
    """The best-predicted unmeasured neighbour along a knob not yet tried, if predicted close enough."""
    candidates = [(name, n) for name, n in space.neighbours(at) if name not in tried and n not in measured]
    candidates = [(name, n) for name, n in candidates if predicted[n] >= (1 - slack) * predicted[at]]
    return max(candidates, key=lambda c: predicted[c[1]], default=None)


def pareto(outcomes: Sequence[tuple[Knobs, Outcome]]) -> list[tuple[float, float, Knobs]]:
    """The (rate, P95, knobs) points no other point beats on both throughput and P95, by rate."""
    points = [(rate, p95, k) for k, o in outcomes for rate, p95 in o.points if rate > 0]
    front = [
        (rate, p95, k)
        for rate, p95, k in points
        if not any(r >= rate and p <= p95 and (r, p) != (rate, p95) for r, p, _ in points)
    ]
    return sorted(front, key=lambda x: x[0])

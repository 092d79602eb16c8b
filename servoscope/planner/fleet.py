"""The fleet plan: how many replicas hold the P95 objective at the grown load and through a burst.

Traffic is spread evenly over R replicas, so one replica is simulated at λ/R: a random split of a
Poisson stream is Poisson at λ/R; of on/off bursts, on/off with the same periods at 1/R of the
on rate (see :meth:`Traffic.split`). R meets the objective when

- steady: at the grown rate, the replica's P95 ≤ the objective and ≤ 0.1% of requests are refused;
- burst (``factor``× for ``burst_s``): at the grown rate with the burst in the middle of a
  minute-long window, the requests arriving during the burst have P95 ≤ the objective and
  ≤ 0.1% of them are refused.

The least such R is found by doubling then bisection (P95 falls as replicas are added). The
incident paragraph compares the replica count of today (given, or the least meeting the
objective at today's load) before and after the growth.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from servoscope.planner import arrivals
from servoscope.planner.plan import Knee, PlanError, Replica, Say, Traffic, at_rate, quiet
from servoscope.planner.summary import Summary, summarize

MAX_REPLICAS = 100_000
REFUSED_SHARE = 0.001
BURST_LEAD_S = 30.0


@dataclass(frozen=True)
class Question:
    fleet_rpm: float
    slo_p95_ms: float
    growth: float = 0.0  # 0.15: +15%
    burst_factor: float = 1.0
    burst_s: float = 0.0
    replicas_now: int | None = None

    def __post_init__(self) -> None:
        if not (self.fleet_rpm > 0 and self.slo_p95_ms > 0 and self.growth > -1):
            raise PlanError(
                "need fleet req/min > 0, an objective > 0 ms and growth > -100%, "
                f"got {self.fleet_rpm}, {self.slo_p95_ms}, {self.growth}"
            )
        if self.burst_factor < 1 or self.burst_s < 0 or (self.burst_factor > 1 and self.burst_s <= 0):
            raise PlanError(f"a burst is a factor >= 1 for a time > 0 s, got {self.burst_factor}x for {self.burst_s} s")
        if self.replicas_now is not None and self.replicas_now < 1:
            raise PlanError(f"replicas now must be >= 1, got {self.replicas_now}")

    @property
    def rate_per_s(self) -> float:
        return self.fleet_rpm / 60.0

    @property
    def grown_per_s(self) -> float:
        return self.rate_per_s * (1 + self.growth)

    @property
    def has_burst(self) -> bool:
        return self.burst_factor > 1 and self.burst_s > 0


@dataclass(frozen=True)
class Scenario:
    """One replica count at today's and the grown load."""

    replicas: int
    rho_before: float
    rho_after: float
    before: Summary
    after: Summary


@dataclass(frozen=True)
class FleetPlan:
    question: Question
    saturation_per_s: float  # one replica
    knee: Knee | None
    replicas: int  # the answer: meets the objective at the grown load, and through the burst
    replicas_steady: int
    replicas_burst: int | None
    at_plan: Summary  # one replica of the planned fleet at the grown load
    burst_p95_ms: float | None  # the burst's requests, at the planned count
    now: Scenario

    @property
    def rho(self) -> float:
        return self.question.grown_per_s / (self.replicas * self.saturation_per_s)

    @property
    def headroom(self) -> float:
        """How much more traffic the planned fleet takes before saturating (0.25: +25%)."""
        return 1 / self.rho - 1


def least_replicas(meets: Callable[[int], bool], lowest: int) -> int:
    low = max(1, lowest)
    if meets(low):
        return low
    high = low * 2
    while not meets(high):
        low, high = high, high * 2
        if high > MAX_REPLICAS:
            raise PlanError(f"no replica count up to {MAX_REPLICAS} meets the objective")
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if meets(mid) else (mid, high)
    return high


def _ok(summary: Summary, slo_ms: float) -> bool:
    return summary.p95_ms <= slo_ms and summary.refused <= REFUSED_SHARE * max(1, summary.requests)


def burst_p95(replica: Replica, rate: float, q: Question, seed: int) -> Summary:
    """The requests that arrive during the burst, at ``rate`` per replica outside it."""
    duration = 2 * BURST_LEAD_S + q.burst_s
    times = arrivals.burst(rate, duration, q.burst_factor, BURST_LEAD_S, q.burst_s, seed)
    return summarize(replica.simulate(times, seed), warmup_s=BURST_LEAD_S, end_s=BURST_LEAD_S + q.burst_s)


def plan_fleet(
    replica: Replica,
    q: Question,
    sat: float,
    knee: Knee | None,
    duration_s: float,
    seed: int = 0,
    say: Say = quiet,
    traffic: Traffic = Traffic(),
) -> FleetPlan:
    """``traffic`` is the whole fleet's arrival process (its CV² at the fleet's rate)."""
    unloaded = at_rate(replica, Traffic(), 0.02 * sat, duration_s, seed)
    if unloaded.p95_ms > q.slo_p95_ms:
        raise PlanError(
            f"the objective P95 {q.slo_p95_ms:g} ms is below what one replica gives unloaded "
            f"({unloaded.p95_ms:.1f} ms): "
            "no replica count meets it; change the settings or the hardware"
        )
    memo: dict[tuple[str, int], Summary] = {}

    def steady(rate: float, tag: str) -> Callable[[int], bool]:
        def meets(r: int) -> bool:
            memo[(tag, r)] = summary = at_rate(replica, traffic.split(rate, r), rate / r, duration_s, seed)
            say(f"  {r} replicas at {rate / r:.1f} req/s each ({tag}): P95 {summary.p95_ms:.1f} ms")
            return _ok(summary, q.slo_p95_ms)

        return meets

    lowest = math.ceil(q.grown_per_s / sat)
    replicas_steady = least_replicas(steady(q.grown_per_s, "grown"), lowest)
    replicas_burst = None
    if q.has_burst:

        def through_burst(r: int) -> bool:
            memo[("burst", r)] = summary = burst_p95(replica, q.grown_per_s / r, q, seed)
            say(f"  {r} replicas through the {q.burst_factor:g}x {q.burst_s:g} s burst: P95 {summary.p95_ms:.1f} ms")
            return _ok(summary, q.slo_p95_ms)

        replicas_burst = least_replicas(through_burst, replicas_steady)
    replicas = max(replicas_steady, replicas_burst or 0)
    at_plan = memo.get(("grown", replicas)) or at_rate(
        replica, traffic.split(q.grown_per_s, replicas), q.grown_per_s / replicas, duration_s, seed
    )
    burst = memo.get(("burst", replicas)) if q.has_burst else None
    if q.has_burst and burst is None:
        burst = burst_p95(replica, q.grown_per_s / replicas, q, seed)
    now_count = q.replicas_now or least_replicas(steady(q.rate_per_s, "today"), math.ceil(q.rate_per_s / sat))
    now = Scenario(
        now_count,
        q.rate_per_s / (now_count * sat),
        q.grown_per_s / (now_count * sat),
        at_rate(replica, traffic.split(q.rate_per_s, now_count), q.rate_per_s / now_count, duration_s, seed),
        at_rate(replica, traffic.split(q.grown_per_s, now_count), q.grown_per_s / now_count, duration_s, seed),
    )
    return FleetPlan(
        q, sat, knee, replicas, replicas_steady, replicas_burst, at_plan, burst.p95_ms if burst else None, now
    )


def explain(plan: FleetPlan) -> str:
    """The incident in one paragraph."""
    q, now, sat = plan.question, plan.now, plan.saturation_per_s
    knee = (
        f"; the knee (P95 bending) is at ρ = {plan.knee.fraction:.2f} ({plan.knee.rate:.1f} req/s per replica)"
        if plan.knee
        else ""
    )
    growth = f"{100 * q.growth:+.0f}%"
    ratio = now.after.p95_ms / now.before.p95_ms if now.before.p95_ms > 0 else math.nan
    text = (
        f"At {_replicas(now.replicas)}, {q.fleet_rpm:g} req/min puts each replica at "
        f"{q.rate_per_s / now.replicas:.1f} req/s, "
        f"ρ = {now.rho_before:.2f} of its saturation ({sat:.1f} req/s){knee}. "
        f"{growth} takes each replica from ρ = {now.rho_before:.2f} to {now.rho_after:.2f}: "
        f"P95 goes {_ms(now.before.p95_ms)} → {_ms(now.after.p95_ms)} (×{ratio:.1f})"
        + (f" and {now.after.refused} of {now.after.requests} requests are refused" if now.after.refused else "")
        + f", against an objective of {q.slo_p95_ms:g} ms. "
        f"Holding P95 ≤ {q.slo_p95_ms:g} ms at {growth} takes {_replicas(plan.replicas_steady)} "
    )
    steady_rho = q.grown_per_s / (plan.replicas_steady * sat)
    text += f"(ρ = {steady_rho:.2f})"
    if plan.replicas_burst is not None:
        text += f"; riding out a {q.burst_factor:g}× burst for {q.burst_s:g} s within it takes {plan.replicas_burst}"
    return text + "."


def _replicas(n: int) -> str:
    return f"{n} replica" + ("" if n == 1 else "s")


def _ms(value: float) -> str:
    return "∞" if not math.isfinite(value) else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"

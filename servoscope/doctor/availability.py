"""Availability is a regression too: the share of requests a window failed (refused, timed out or in
error — every answer that is not 2xx), against what it answered, confirmed like latency and
attributed by reason.

Confirmed when the failed share rose beyond both windows' sampling error: a two-proportion test
(z ≥ 3) on the counts the windows hold — no fixed cut-off beyond a floor of one request in a
thousand, below which nobody would page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from servoscope.doctor.evidence import Evidence
from servoscope.doctor.findings import Finding, Fix, conf

MIN_Z = 3.0  # standard errors the failed share must rise by
WARN_Z = 2.0  # a rise this clear, short of confirmed: a warning
MIN_RISE = 0.001  # of requests answered


@dataclass(frozen=True, slots=True)
class Availability:
    failed_share: tuple[float, float]  # (baseline, now): of requests answered, not 2xx
    answered: tuple[int, int]  # requests the windows answered (counted)
    z: float  # the rise in standard errors (0 when unknown)
    by_reason: dict[str, float]  # now: refusal reason → refusals in the window
    by_code: dict[str, float]  # now: non-2xx status → answers in the window

    @property
    def significant(self) -> bool:
        return self.z >= MIN_Z and self.failed_share[1] - self.failed_share[0] >= MIN_RISE

    @property
    def rising(self) -> bool:
        return not self.significant and self.z >= WARN_Z and self.failed_share[1] > self.failed_share[0]

    def describe(self) -> str:
        b, n = self.failed_share
        return f"failed {b:.1%} → {n:.1%} of answered requests ({self.answered[0]} vs {self.answered[1]} answered)"


def confirm(base: Evidence, now: Evidence) -> Availability:
    counts = (_counts(base), _counts(now))
    shares = tuple(k / n if n else 0.0 for k, n in counts)
    pooled_n = counts[0][1] + counts[1][1]
    z = 0.0
    if counts[0][1] and counts[1][1]:
        p = (counts[0][0] + counts[1][0]) / pooled_n
        se = math.sqrt(max(p * (1 - p), 1e-12) * (1 / counts[0][1] + 1 / counts[1][1]))
        z = (shares[1] - shares[0]) / se
    failed_codes = {c: n for c, n in now.by_code.items() if not c.startswith("2")}
    return Availability(
        (shares[0], shares[1]), (counts[0][1], counts[1][1]), z, dict(now.refused_by_reason), failed_codes
    )


def _counts(e: Evidence) -> tuple[int, int]:
    """(failed, answered) in the window: from its status counts, else its rates over what it covered."""
    if e.by_code:
        answered = sum(e.by_code.values())
        return round(answered - sum(n for c, n in e.by_code.items() if c.startswith("2"))), round(answered)
    seconds = e.covered_s or 0.0
    return round(e.errors_per_s * seconds), round(e.answered_per_s * seconds)


def _demand(e: Evidence) -> float:
    """Requests per second: counted on arrival, else answered (refusals are answers too)."""
    return e.arrived_per_s if e.arrived_per_s > 0 else e.answered_per_s


def finding(a: Availability, base: Evidence, now: Evidence) -> Finding:
    reasons = ", ".join(f"{r} {v:.0f}" for r, v in sorted(a.by_reason.items(), key=lambda kv: -kv[1])) or "none named"
    codes = ", ".join(f"{c}: {n:.0f}" for c, n in sorted(a.by_code.items())) or "none"
    timeouts = sum(n for c, n in a.by_code.items() if c in ("408", "504"))
    return Finding(
        "refusals",
        "the service fails a growing share of its requests (refused, timed out or in error)",
        conf(0.6 + min(a.z / 30, 0.3)),
        (
            f"{a.describe()}; {a.z:.0f} standard errors",
            f"refused by reason: {reasons}; failed answers by status: {codes}"
            + (f" ({timeouts:.0f} timeouts)" if timeouts else ""),
            f"requests {_demand(base):.0f} → {_demand(now):.0f} per second; answered 2xx "
            f"{base.answered_per_s - base.errors_per_s:.0f} → {now.answered_per_s - now.errors_per_s:.0f} req/s",
        ),
        (
            Fix(
                "find what the refusals protect: the queue or ingest limit they hit (by reason above), and add the "
                "capacity behind it, or have clients back off (Retry-After)",
                "refusals back toward the baseline's share",
                "infrastructure",
            ),
        ),
    )

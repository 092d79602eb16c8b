"""``servoscope doctor --verify``: was the fix worth what the doctor predicted? The baseline and the
window before the fix are diagnosed as usual; the first prescribed fix with a predicted effect is
taken as the one applied, and its predicted P95 is set against the one measured after it.

The target: the measured effect (P95 before − after) within 25 % of the predicted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servoscope.doctor.evidence import Evidence
from servoscope.doctor.findings import Fix, ms
from servoscope.doctor.rules import Diagnosis, diagnose

TARGET = 0.25  # largest relative error of the predicted effect that counts as confirmed


@dataclass(frozen=True, slots=True)
class Verification:
    fix: Fix
    before_s: float  # total P95 measured before the fix
    predicted_s: float  # … predicted after it
    after_s: float  # … measured after it

    @property
    def error(self) -> float:
        """|measured effect − predicted effect| ÷ |predicted effect|."""
        predicted = self.before_s - self.predicted_s
        measured = self.before_s - self.after_s
        return abs(measured - predicted) / abs(predicted) if predicted else float("inf")

    @property
    def confirmed(self) -> bool:
        return self.error <= TARGET

    def describe(self) -> str:
        return (
            f"{self.fix.action}\n  P95 before {ms(self.before_s)}; predicted after {ms(self.predicted_s)}; "
            f"measured after {ms(self.after_s)}\n  effect predicted {ms(self.before_s - self.predicted_s)}, measured "
            f"{ms(self.before_s - self.after_s)}: error {self.error:.0%} "
            f"({'within' if self.confirmed else 'outside'} the {TARGET:.0%} target)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "fix": self.fix.action,
            "before_p95_s": self.before_s,
            "predicted_p95_s": self.predicted_s,
            "after_p95_s": self.after_s,
            "error": self.error,
            "confirmed": self.confirmed,
        }


def verify(base: Evidence, before: Evidence, after: Evidence) -> tuple[Diagnosis, Verification | None]:
    """The diagnosis of ``before`` against ``base``, and its first predicted fix against ``after``."""
    d = diagnose(base, before)
    predicted = next((f for f in d.top.fixes if f.predicted_p95_s is not None), None)
    if predicted is None or predicted.predicted_p95_s is None:
        return d, None
    return d, Verification(predicted, before.total.p95, predicted.predicted_p95_s[1], after.total.p95)

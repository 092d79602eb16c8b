"""Safe rollout of a variant: the sequential gate that judges a canary against its baseline on
every request (anytime-valid: looking after each one keeps the false-FAIL bound), and Kayenta's
judge re-implemented beside it as the baseline to beat (bench/canary.py).

    gate = Gate(GateConfig(canary_share=0.05))
    verdict = gate.observe(from_timing(timing, canary=True))   # after every request
    verdict.outcome                                             # PASS, FAIL or INCONCLUSIVE
"""

from servoscope.rollout.config import GateConfig, GateConfigError
from servoscope.rollout.gate import Gate
from servoscope.rollout.observation import COLUMNS, Observation, from_timing
from servoscope.rollout.verdict import Check, Evidence, Outcome, Verdict

__all__ = [
    "COLUMNS",
    "Check",
    "Evidence",
    "Gate",
    "GateConfig",
    "GateConfigError",
    "Observation",
    "Outcome",
    "Verdict",
    "from_timing",
]

"""The rollout ladder: the canary's share of traffic climbs 1 → 5 → 25 → 50 → 100%, with a fresh
sequential gate at each step (its ``canary_share`` is the step's). A PASS climbs one step; the last
step (100%) is the promotion itself. A FAIL rolls back to 0% at once — in the same call that fed the
request which crossed the boundary, so the next request routed already goes to the baseline.
Every step, its verdict and its evidence go to the audit log as they happen.

Pure: fed observations by whoever routes the traffic (the server), no clock of its own but the
audit log's.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from servoscope.rollout.audit import AuditLog
from servoscope.rollout.config import GateConfig
from servoscope.rollout.gate import Gate
from servoscope.rollout.label_walk import error_boundary
from servoscope.rollout.observation import Observation
from servoscope.rollout.verdict import Outcome, Verdict

STEPS_PERCENT: tuple[float, ...] = (1.0, 5.0, 25.0, 50.0, 100.0)


class State(str, enum.Enum):
    RUNNING = "running"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"

    def __str__(self) -> str:
        return self.value


def check_steps(steps_percent: tuple[float, ...]) -> tuple[float, ...]:
    """Rising percentages in (0, 100], at least one gated step below 100, the last 100 (the promotion)."""
    if len(steps_percent) < 2 or any(not 0.0 < s <= 100.0 for s in steps_percent):
        raise ValueError(f"steps must be two or more percentages in (0, 100], got {list(steps_percent)}")
    if list(steps_percent) != sorted(set(steps_percent)) or steps_percent[-1] != 100.0:
        raise ValueError(f"steps must rise and end at 100 (the promotion), got {list(steps_percent)}")
    return steps_percent


class Ladder:
    """One canary's climb. ``gate`` is the template of every step's gate (its share is replaced)."""

    def __init__(self, steps_percent: tuple[float, ...], gate: GateConfig, audit: AuditLog, **started: Any) -> None:
        self.steps_percent = check_steps(steps_percent)
        self.gate_config = gate
        self.audit = audit
        self.state = State.RUNNING
        self.index = 0
        self.last: Verdict | None = None
        for percent in self.steps_percent[:-1]:  # every step's error boundary now, not on the request path later
            error_boundary(dataclasses.replace(gate, canary_share=percent / 100.0))
        self._gate = self._new_gate()
        audit.write("start", steps_percent=list(self.steps_percent), gate=_gate_json(gate), **started)
        self._step_line()

    @property
    def share(self) -> float:
        """The canary's share of the randomized traffic now: 0 once rolled back or aborted."""
        if self.state is State.RUNNING:
            return self.steps_percent[self.index] / 100.0
        return 1.0 if self.state is State.PROMOTED else 0.0

    @property
    def running(self) -> bool:
        return self.state is State.RUNNING

    def observe(self, observation: Observation) -> None:
        """Count one finished request of a randomized assignment (either arm) and act on the verdict."""
        if self.running:
            self._act(self._gate.observe(observation))

    def observe_mirror(self, agree: bool) -> None:
        """Count one mirrored request: did the canary's top-1 agree with the baseline's answer?"""
        if self.running:
            self._act(self._gate.observe_mirror(agree))

    def promote(self, by: str) -> None:
        """Promote to 100% now, whatever the gate says (its last verdict goes to the log)."""
        self._require_running("promote")
        self.state = State.PROMOTED
        self.audit.write("promoted", by=by, verdict=self._gate.verdict().json(), share=1.0)

    def abort(self, by: str, reason: str = "") -> None:
        """Back to 0% now, without a verdict."""
        self._require_running("abort")
        self.state = State.ABORTED
        self.audit.write("aborted", by=by, reason=reason, verdict=self._gate.verdict().json(), share=0.0)

    def status(self) -> dict[str, Any]:
        verdict = self.last or self._gate.verdict()
        return {
            "state": self.state.value,
            "step": self.index + 1,
            "steps_percent": list(self.steps_percent),
            "share": self.share,
            "verdict": verdict.json(),
        }

    def _act(self, verdict: Verdict) -> None:
        self.last = verdict
        if verdict.outcome is Outcome.FAIL:
            self.state = State.ROLLED_BACK
            step_percent = self.steps_percent[self.index]
            self.audit.write("rolled_back", step_percent=step_percent, verdict=verdict.json(), share=0.0)
        elif verdict.outcome is Outcome.PASS:
            self.audit.write("step_passed", step_percent=self.steps_percent[self.index], verdict=verdict.json())
            self.index += 1
            if self.steps_percent[self.index] >= 100.0:
                self.state = State.PROMOTED
                self.audit.write("promoted", by="gate", verdict=verdict.json(), share=1.0)
            else:
                self._gate = self._new_gate()
                self.last = None
                self._step_line()

    def _new_gate(self) -> Gate:
        share = self.steps_percent[self.index] / 100.0
        return Gate(dataclasses.replace(self.gate_config, canary_share=share))

    def _step_line(self) -> None:
        self.audit.write("step", step=self.index + 1, step_percent=self.steps_percent[self.index])

    def _require_running(self, what: str) -> None:
        if not self.running:
            raise ValueError(f"cannot {what}: the rollout is {self.state.value}")


def _gate_json(config: GateConfig) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    out.pop("canary_share")
    return out

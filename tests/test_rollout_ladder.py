"""The rollout ladder without a server: it climbs on PASS, rolls back to 0% in the call that fed the
failing request, promotes at the last step, and writes every step and its evidence to the audit log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servoscope.clock import ManualClock
from servoscope.rollout import GateConfig, Observation
from servoscope.rollout.audit import AuditLog, read
from servoscope.rollout.ladder import Ladder, State, check_steps

SMALL = GateConfig(min_canary_requests=150, min_baseline_requests=32, refresh_every=32, baseline_window=256)


def feed(ladder: Ladder, seed: int, count: int, canary_delay_s: float = 0.0, stop_when_done: bool = True) -> int:
    """Requests split by the ladder's share now, latencies lognormal; returns how many were fed."""
    rng = np.random.default_rng(seed)
    for n in range(1, count + 1):
        canary = bool(rng.random() < ladder.share)
        total = float(rng.lognormal(np.log(0.02), 0.3)) + (canary_delay_s if canary else 0.0)
        ladder.observe(Observation(canary, total, {"inference": total}))
        if stop_when_done and not ladder.running:
            return n
    return count


def ladder_at(path: Path, steps: tuple[float, ...] = (5.0, 50.0, 100.0), gate: GateConfig = SMALL) -> Ladder:
    return Ladder(steps, gate, AuditLog(path / "audit.jsonl", ManualClock()), model="m")


def test_identical_canary_climbs_every_step_and_is_promoted(tmp_path: Path) -> None:
    ladder = ladder_at(tmp_path)
    fed = feed(ladder, seed=3, count=20_000)
    assert ladder.state is State.PROMOTED and ladder.share == 1.0, ladder.status()
    events = [line["event"] for line in read(tmp_path / "audit.jsonl")]
    assert events == ["start", "step", "step_passed", "step", "step_passed", "promoted"]
    passed = [line for line in read(tmp_path / "audit.jsonl") if line["event"] == "step_passed"]
    assert [line["step_percent"] for line in passed] == [5.0, 50.0]
    assert all(line["verdict"]["outcome"] == "PASS" and line["verdict"]["canary_requests"] >= 150 for line in passed)
    assert fed < 20_000


def test_slower_canary_rolls_back_at_once_and_names_the_stage(tmp_path: Path) -> None:
    ladder = ladder_at(tmp_path, steps=(50.0, 100.0))
    feed(ladder, seed=4, count=5_000, canary_delay_s=0.01)
    assert ladder.state is State.ROLLED_BACK and ladder.share == 0.0
    last = read(tmp_path / "audit.jsonl")[-1]
    assert last["event"] == "rolled_back" and last["share"] == 0.0
    assert last["verdict"]["outcome"] == "FAIL" and last["verdict"]["stage"] == "inference"
    fed_after = feed(ladder, seed=5, count=200, stop_when_done=False)  # later requests change nothing
    assert fed_after == 200 and ladder.state is State.ROLLED_BACK and ladder.status()["verdict"]["outcome"] == "FAIL"


def test_disagreement_above_budget_rolls_back(tmp_path: Path) -> None:
    gate = GateConfig(max_disagreement=0.02, min_canary_requests=40, min_baseline_requests=32, refresh_every=32)
    ladder = ladder_at(tmp_path, steps=(25.0, 100.0), gate=gate)
    for n in range(500):
        ladder.observe_mirror(agree=n % 5 != 0)  # 20% disagreement against a 2% budget
        if not ladder.running:
            break
    assert ladder.state is State.ROLLED_BACK
    assert read(tmp_path / "audit.jsonl")[-1]["verdict"]["check"] == "disagreement"


def test_promote_and_abort_are_logged_and_end_the_rollout(tmp_path: Path) -> None:
    ladder = ladder_at(tmp_path)
    ladder.promote(by="alice")
    assert ladder.share == 1.0
    with pytest.raises(ValueError, match="promoted"):
        ladder.abort(by="bob")
    other = ladder_at(tmp_path / "b")
    other.abort(by="bob", reason="a page from the on-call")
    assert other.share == 0.0
    lines = read(tmp_path / "audit.jsonl") + read(tmp_path / "b" / "audit.jsonl")
    assert [(line["event"], line.get("by")) for line in lines if line["event"] in ("promoted", "aborted")] == [
        ("promoted", "alice"),
        ("aborted", "bob"),
    ]


@pytest.mark.parametrize("steps", [(), (100.0,), (5.0, 1.0, 100.0), (5.0, 50.0), (0.0, 100.0), (5.0, 5.0, 100.0)])
def test_bad_steps_are_refused_with_a_message(steps: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="steps must"):
        check_steps(steps)

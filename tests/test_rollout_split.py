"""The traffic split (weights, the X-Variant header, a sticky client key) and the audit log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servoscope.clock import ManualClock
from servoscope.errors import InvalidParameter
from servoscope.rollout.audit import AuditLog, read
from servoscope.rollout.split import How, Split, assign

SPLIT = Split.of({"baseline": 95, "canary": 5}, salt=b"rollout-1")


def test_weighted_draws_follow_the_weights() -> None:
    draws = np.random.default_rng(0).random(20_000)
    picked = [assign(SPLIT, float(d)).variant for d in draws]
    assert picked.count("canary") / len(picked) == pytest.approx(0.05, abs=0.005)
    assert SPLIT.share("canary") == pytest.approx(0.05)
    assert assign(SPLIT, 0.3).randomized


def test_the_draw_falls_on_the_weights_edges() -> None:
    assert SPLIT.by_draw(0.0) == "baseline"
    assert SPLIT.by_draw(0.9499) == "baseline"
    assert SPLIT.by_draw(0.95) == "canary"
    assert Split.of({"off": 0, "on": 1}).by_draw(0.0) == "on"
    with pytest.raises(ValueError, match="draw must be in"):
        SPLIT.by_draw(1.0)


def test_the_header_pins_a_variant_and_a_wrong_one_is_a_bad_request() -> None:
    pinned = assign(SPLIT, 0.01, header=" canary ")
    assert (pinned.variant, pinned.how, pinned.randomized) == ("canary", How.HEADER, False)
    with pytest.raises(InvalidParameter, match="X-Variant must be one of baseline, canary, got 'nope'"):
        assign(SPLIT, 0.5, header="nope")


def test_a_client_key_sticks_to_one_variant_in_proportion() -> None:
    first = [assign(SPLIT, 0.99, client_key=f"client-{i}").variant for i in range(4000)]
    again = [assign(SPLIT, 0.01, client_key=f"client-{i}").variant for i in range(4000)]
    assert first == again
    assert first.count("canary") / len(first) == pytest.approx(0.05, abs=0.015)
    other_rollout = Split.of({"baseline": 95, "canary": 5}, salt=b"rollout-2")
    assert [other_rollout.by_key(f"client-{i}") for i in range(4000)] != first
    assert not assign(SPLIT, 0.5, client_key="c").randomized


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({}, "distinct, non-empty variant names"),
        ({"a": -1, "b": 2}, "finite numbers >= 0"),
        ({"a": 0}, "at least one weight"),
    ],
)
def test_a_bad_split_is_refused(weights: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Split.of(weights)


def test_the_audit_log_appends_json_lines(tmp_path: Path) -> None:
    clock = ManualClock(100.0)
    log = AuditLog(tmp_path / "audit" / "rollout.jsonl", clock, wall=lambda: 0.0)
    log.write("step", share=0.05, verdict={"outcome": "PASS"})
    clock.advance(2.5)
    log.write("rollback", reason="latency", stage="inference")
    lines = read(log.path)
    assert [line["event"] for line in lines] == ["step", "rollback"]
    assert lines[0]["time"] == "1970-01-01T00:00:00.000+00:00" and lines[0]["verdict"] == {"outcome": "PASS"}
    assert lines[1]["t_s"] - lines[0]["t_s"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="no field named"):
        log.write("step", event="x")


def test_a_torn_last_line_is_skipped_and_a_torn_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.write("start")
    with path.open("ab") as out:
        out.write(b'{"event": "st')
    assert [line["event"] for line in read(path)] == ["start"]
    with path.open("ab") as out:
        out.write(b"\n" + b'{"event": "end"}\n')
    with pytest.raises(ValueError, match=r"a\.jsonl:2 is not a JSON line"):
        read(path)

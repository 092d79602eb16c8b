"""``servoscope deploy ray``'s refusals, before any Ray cluster starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from servoscope.cli import main


def test_replicas_outside_the_plan_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "ray", "--replicas", "99"]) == 2
    assert "--replicas must be within the plan's 2 … 10, got 99" in capsys.readouterr().err


def test_a_bad_plan_is_refused_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('{"replicas": {"min": 3, "max": 2}}')
    assert main(["deploy", "ray", "--plan", str(plan)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("servoscope deploy ray: plan ") and "max (2) must be >= min (3)" in err

"""docs/reference.md is generated from the code and must match it."""

from __future__ import annotations

from servoscope.reference import reference
from support import REPO_ROOT


def test_reference_is_up_to_date() -> None:
    committed = (REPO_ROOT / "docs" / "reference.md").read_text()
    assert committed == reference(), "docs/reference.md is stale: python -m servoscope.reference > docs/reference.md"


def test_reference_names_every_stage_metric_label() -> None:
    text = reference()
    assert "| `servoscope_stage_duration_seconds` | histogram | model, stage, variant |" in text
    assert "`SERVOSCOPE_MAX_PENDING`" in text

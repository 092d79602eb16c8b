"""The profile file: a round trip, errors that name the field, and the samplers built from it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from planner_support import profile_dict
from servoscope.planner import profile as pf
from servoscope.planner import service


def test_round_trip(tmp_path: Path) -> None:
    profile = pf.parse(profile_dict())
    pf.save(profile, tmp_path / "p.json")
    again = pf.load(tmp_path / "p.json")
    assert again == profile
    assert json.loads((tmp_path / "p.json").read_text())["schema"] == pf.SCHEMA
    assert again.family().inference_s[2][0] == pytest.approx(0.014 * 0.8)


def _broken(change) -> dict:  # type: ignore[no-untyped-def, type-arg]
    raw = copy.deepcopy(profile_dict())
    change(raw)
    return raw


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["families"][0].pop("instances"), "families.0.instances: Field required"),
        (lambda r: r["machine"].pop("cores"), "machine.cores: Field required"),
        (lambda r: r.update(version=99), "version: Value error, profile version 99 is not supported"),
        (lambda r: r.update(schema="other"), "not a servoscope profile"),
        (
            lambda r: r["families"][0]["inference_s"].update({"2": [-1.0]}),
            r"inference_s\[2\] holds 1 samples that are not finite",
        ),
        (lambda r: r["families"][0]["inference_s"].update({"x": [0.1]}), "families.0.inference_s.x"),
        (lambda r: r["families"][0]["batching"].update(max_batch_size=0), "families.0.batching.max_batch_size"),
        (lambda r: r.update(mix={"640x480": 1.0}), r"no preprocess_s samples for the mix's classes \['640x480'\]"),
        (lambda r: r.update(surprise=1), "surprise: Extra inputs are not permitted"),
    ],
)
def test_errors_name_the_field(change, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(pf.ProfileError, match=message):
        pf.parse(_broken(change), "p.json")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(pf.ProfileError, match=r"profile .*absent\.json does not exist"):
        pf.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(pf.ProfileError, match="is not JSON"):
        pf.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(pf.ProfileError, match="a profile is a JSON object, got list"):
        pf.load(tmp_path / "list.json")


def test_a_family_not_measured_is_named() -> None:
    with pytest.raises(pf.ProfileError, match=r"no family with instances=3 .* it has \(instances x threads\): 1x2"):
        pf.parse(profile_dict()).family(3)


def test_batch_sizes_not_measured_are_interpolated_and_extrapolated() -> None:
    sizes = service.by_size({1: [0.010], 2: [0.014], 4: [0.022]}, 6)
    assert [float(s.mean()) for s in sizes[1:]] == pytest.approx([0.010, 0.014, 0.018, 0.022, 0.026, 0.030])
    single = service.by_size({2: [0.02, 0.04]}, 4)
    assert float(single[4].mean()) == pytest.approx(0.06)
    assert np.all(service.by_size({}, 3)[3] == 0)


def test_thin_keeps_the_spread() -> None:
    values = [float(i) for i in range(10001)]
    kept = pf.thin(values, 101)
    assert len(kept) == 101 and kept[0] == 0.0 and kept[-1] == 10000.0 and kept[50] == 5000.0

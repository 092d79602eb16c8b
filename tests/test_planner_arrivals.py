"""Arrival processes: rate and squared CV of the gaps within tolerance (seeded), bounds, and the
replay of a load result's exact scheduled send times."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from servoscope.loadgen import profiles
from servoscope.loadgen.client import Endpoint
from servoscope.loadgen.mixes import Mix, MixImage
from servoscope.loadgen.runner import LoadPlan, settings_json
from servoscope.loadgen.targets import Target
from servoscope.planner import arrivals


def cv2(times: np.ndarray) -> float:
    gaps = np.diff(times)
    return float(gaps.var() / gaps.mean() ** 2)


def test_poisson_rate_and_cv2() -> None:
    times = arrivals.poisson(170.0, 600.0, seed=1)
    assert len(times) / 600.0 == pytest.approx(170.0, rel=0.01)
    assert cv2(times) == pytest.approx(1.0, rel=0.03)
    assert np.all(np.diff(times) >= 0) and times[-1] < 600.0


@pytest.mark.parametrize("target, on_s", [(4.0, 1.0), (9.0, 0.2)])
def test_on_off_rate_and_cv2(target: float, on_s: float) -> None:
    times = arrivals.on_off(50.0, target, 4000.0, seed=2, on_s=on_s)
    assert len(times) / 4000.0 == pytest.approx(50.0, rel=0.05)
    assert cv2(times) == pytest.approx(target, rel=0.1)


def test_arrivals_are_the_same_for_the_same_seed_only() -> None:
    a, b, c = (arrivals.on_off(20.0, 4.0, 100.0, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_constant_and_burst() -> None:
    assert arrivals.constant(4.0, 1.0).tolist() == [0.0, 0.25, 0.5, 0.75]
    times = arrivals.burst(10.0, 60.0, 3.0, 20.0, 10.0, seed=5)
    during = np.count_nonzero((times >= 20) & (times < 30))
    outside = np.count_nonzero(times < 20) + np.count_nonzero(times >= 30)
    assert during / 10.0 == pytest.approx(30.0, rel=0.2)
    assert outside / 50.0 == pytest.approx(10.0, rel=0.2)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: arrivals.poisson(0.0, 10.0), "rate must be a positive"),
        (lambda: arrivals.poisson(1e6, 3600.0), "more than"),
        (lambda: arrivals.on_off(10.0, 1.0, 10.0), "CV² of bursty arrivals must be > 1"),
        (lambda: arrivals.constant(1.0, -1.0), "duration must be a positive"),
    ],
)
def test_bad_arrivals_are_refused(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(arrivals.ArrivalError, match=message):
        call()


def load_result(plan: LoadPlan, offsets: list[float]) -> dict:  # type: ignore[type-arg]
    """The parts of a ``servoscope load -o`` file that a replay reads, as the runner writes them."""
    return {
        "settings": settings_json(plan),
        "profile": plan.profile.to_json() if plan.profile else None,
        "counts": {"scheduled": len(offsets)},
        "mix": {"sent_by_kind": {"320x240.jpeg": 30, "320x240.png": 10, "4032x3024.jpeg": 60}},
    }


def test_replay_rebuilds_the_scheduled_send_times(tmp_path: Path) -> None:
    mix = Mix((MixImage(b"x", "image/jpeg", "320x240.jpeg"),), (1.0,), "one image")
    plan = LoadPlan(
        Endpoint("127.0.0.1", 9),
        Target("v1"),
        mix,
        profile=profiles.step(20.0, 30.0, [(10.0, 1.15)]),
        duration_s=30.0,
        seed=7,
    )
    offsets = plan.schedule()
    path = tmp_path / "result.json"
    path.write_text(json.dumps(load_result(plan, offsets)))
    replay = arrivals.replay(path)
    assert replay.times.tolist() == offsets
    assert replay.mix == pytest.approx({"320x240": 0.4, "4032x3024": 0.6})


def test_replay_errors_say_what_is_wrong(tmp_path: Path) -> None:
    mix = Mix((MixImage(b"x", "image/jpeg", "320x240.jpeg"),), (1.0,), "one image")
    closed = LoadPlan(Endpoint("127.0.0.1", 9), Target("v1"), mix, loop="closed", duration_s=5.0)
    with pytest.raises(arrivals.ArrivalError, match="closed-loop run has no schedule"):
        arrivals.replay_result({**load_result(closed, []), "profile": None})
    with pytest.raises(arrivals.ArrivalError, match="missing or wrong field 'settings'"):
        arrivals.replay_result({"counts": {}})
    with pytest.raises(arrivals.ArrivalError, match=r"load result .*absent\.json does not exist"):
        arrivals.replay(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(arrivals.ArrivalError, match="is not JSON"):
        arrivals.replay(tmp_path / "bad.json")


def test_classes_are_drawn_by_share() -> None:
    classes = arrivals.draw_classes(20000, [0.7, 0.3], seed=1)
    assert np.mean(classes == 0) == pytest.approx(0.7, abs=0.02)
    with pytest.raises(arrivals.ArrivalError, match="class shares"):
        arrivals.draw_classes(10, [0.0, 0.0])

"""The traffic-growth drill's baseline, placed by the planner (a hand-written profile, no measuring)."""

from __future__ import annotations

import numpy as np

from planner_support import profile_dict
from servoscope.drills.placement import GROWTH, TARGET_RATIO, place, window_p95_ms
from servoscope.planner import profile as pf
from servoscope.planner.knobs import Knobs
from servoscope.planner.predict import replica


def test_the_baseline_sits_where_plus_15_percent_multiplies_the_window_p95() -> None:
    r = replica(pf.parse(profile_dict()), Knobs(4, 2.0, 1, 2, 2))
    placement = place(r, window_s=8.0)
    assert placement.low_ratio >= TARGET_RATIO
    assert placement.fraction >= placement.knee_fraction - 0.05  # from the knee up: +15% crosses it
    rate = placement.fraction * placement.saturation_per_s
    ratios = [window_p95_ms(r, GROWTH * rate, 8.0, s) / window_p95_ms(r, rate, 8.0, s) for s in range(100, 110)]
    assert np.median(ratios) >= 1.5  # draws the placement did not see agree
    lower = placement.fraction - 0.1
    assert (
        np.median(
            [
                window_p95_ms(r, GROWTH * lower * placement.saturation_per_s, 8.0, s)
                / window_p95_ms(r, lower * placement.saturation_per_s, 8.0, s)
                for s in range(10)
            ]
        )
        < 1.5
    )

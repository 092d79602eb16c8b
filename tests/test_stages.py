"""The per-request timing record, its Server-Timing form, and the manual clock."""

from __future__ import annotations

import pytest

from servoscope.clock import ManualClock, MonotonicClock
from servoscope.stages import STAGE_NAMES, STAGES, TOTAL, Stage, Timing, parse_server_timing


def full_timing() -> Timing:
    timing = Timing(start=10.0)
    at = 10.0
    for i, stage in enumerate(STAGES, start=1):
        at += 0.001 * i
        timing.end(stage, at)
    return timing


def test_stage_names_are_the_shared_words() -> None:
    assert STAGE_NAMES == (
        "ingest",
        "preprocess_wait",
        "preprocess",
        "batch_wait",
        "inference",
        "postprocess",
        "respond",
        "total",
    )
    assert str(Stage.BATCH_WAIT) == "batch_wait"


def test_durations_add_up_to_the_total() -> None:
    durations = full_timing().durations()
    assert list(durations) == list(STAGE_NAMES)
    for i, stage in enumerate(STAGES, start=1):
        assert durations[stage.value] == pytest.approx(0.001 * i)
    assert sum(v for k, v in durations.items() if k != TOTAL) == pytest.approx(durations[TOTAL])
    assert durations[TOTAL] == pytest.approx(0.028)


def test_unreached_stages_are_omitted() -> None:
    timing = Timing(start=1.0)
    timing.end(Stage.INGEST, 1.5)
    timing.end(Stage.PREPROCESS, 3.0)  # queue was skipped: preprocess runs from the end of ingest
    durations = timing.durations()
    assert durations == {"ingest": 0.5, "preprocess": 1.5, TOTAL: 2.0}
    assert timing.ended(Stage.PREPROCESS_WAIT) is None and timing.ended(Stage.PREPROCESS) == 3.0


def test_a_record_that_reached_no_stage() -> None:
    assert Timing(start=5.0).durations() == {TOTAL: 0.0}


def test_durations_never_go_negative() -> None:
    timing = Timing(start=2.0)
    timing.end(Stage.INGEST, 1.0)  # a clock from another thread a hair behind
    assert timing.durations()["ingest"] == 0.0


def test_server_timing_round_trip() -> None:
    timing = full_timing()
    header = timing.server_timing()
    assert header.startswith("ingest;dur=1.000, preprocess_wait;dur=2.000")
    parsed = parse_server_timing(header)
    durations = timing.durations()
    assert list(parsed) == list(durations)
    for name, seconds in durations.items():
        assert parsed[name] == pytest.approx(seconds, abs=1e-6)  # written in ms to 3 decimals


def test_parse_server_timing_ignores_what_it_does_not_know() -> None:
    header = 'cdn-cache; desc="HIT", edge;dur=5, bad;dur=x, ;dur=3, app;desc=x;dur=2.5'
    assert parse_server_timing(header) == {"edge": 0.005, "app": 0.0025}
    assert parse_server_timing("") == {}


def test_parse_server_timing_allows_whitespace_around_semicolons() -> None:
    # W3C Server-Timing: metric-name *( OWS ";" OWS server-timing-param ), as proxies may write it.
    assert parse_server_timing("app ; dur=2.5 , db ;dur=1") == {"app": 0.0025, "db": 0.001}


def test_manual_clock_moves_only_forward_and_only_when_told() -> None:
    clock = ManualClock(3.0)
    assert clock.now() == clock.now() == 3.0
    clock.advance(0.5)
    clock.advance(0.0)
    assert clock.now() == 3.5
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-0.001)
    assert clock.now() == 3.5


def test_monotonic_clock_never_goes_back() -> None:
    clock = MonotonicClock()
    readings = [clock.now() for _ in range(1000)]
    assert readings == sorted(readings)

"""The fleet view: replicas' documents merged exactly from their sketches, gray replicas flagged by a
sequential test (fast when one is slow, silent for an hour when none is), a fleet snapshot over
loopback HTTP, and the doctor telling one replica from the whole fleet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ddsketch import DDSketch

from fleet_fakes import MODEL, FakeReplica, serving
from servoscope import cli
from servoscope.doctor import fleet as doctor_fleet
from servoscope.doctor.evidence import EvidenceError
from servoscope.fleet.merge import MergeError, merge
from servoscope.fleet.outliers import GrayDetector, OutlierRule
from servoscope.fleet.view import fleet_snapshot, read_replicas
from servoscope.telemetry import document, sketchwire
from servoscope.telemetry.windows import RELATIVE_ACCURACY

REPLICAS = 8
RATE_PER_S = 21.0  # 10,000 req/min over 8 replicas


LIVE_RATE_PER_S = 8.0  # the loopback tests: fewer requests, still ~440 per replica a minute


def fleet(count: int = REPLICAS, seconds: float = 55.0) -> list[FakeReplica]:
    replicas = [FakeReplica(seed=i, median_s=0.05 * (1 + 0.005 * i)) for i in range(count)]
    for r in replicas:
        r.run(seconds, LIVE_RATE_PER_S)
    return replicas


def test_the_merged_percentiles_are_the_pooled_requests_percentiles_not_an_average() -> None:
    replicas = [FakeReplica(seed=i, median_s=0.03 * (i + 1)) for i in range(4)]  # unlike replicas, unlike loads
    for i, r in enumerate(replicas):
        r.run(55, RATE_PER_S / (i + 1))
    merged = merge({f"r{i}": document.read(r.document()) for i, r in enumerate(replicas)})
    total = merged.models[MODEL].windows["1m"].stages["total"]
    pooled = np.concatenate([r.latencies for r in replicas])
    exact = DDSketch(RELATIVE_ACCURACY)
    for value in pooled:
        exact.add(float(value))
    assert total.count == len(pooled)
    for q in (0.5, 0.9, 0.95, 0.99):
        assert getattr(total, f"p{q * 100:g}") == pytest.approx(exact.get_quantile_value(q), rel=1e-9)
        assert getattr(total, f"p{q * 100:g}") == pytest.approx(np.quantile(pooled, q), rel=2 * RELATIVE_ACCURACY)
    assert total.mean == pytest.approx(pooled.mean(), rel=1e-9) and total.max == pytest.approx(
        pooled.max(), rel=RELATIVE_ACCURACY
    )
    averaged = np.mean([document.read(r.document()).models[MODEL].windows["1m"].stages["total"].p99 for r in replicas])
    assert abs(averaged - np.quantile(pooled, 0.99)) > 2 * RELATIVE_ACCURACY * np.quantile(pooled, 0.99)
    window = merged.models[MODEL].windows["1m"]
    assert window.throughput.by_code == {"200": len(pooled)} and len(window.busy_ratio) == 4
    assert document.read(merged.to_json()) == merged


def test_a_document_without_sketches_is_refused_not_averaged() -> None:
    replicas = fleet(2, seconds=10)
    old = replicas[1].document()
    old["schema_version"] = 1
    for window in old["models"][MODEL]["windows"].values():
        del window["sketches"]
    del old["models"][MODEL]["lifetime_total"]
    docs = {"new": document.read(replicas[0].document()), "old": document.read(old)}
    with pytest.raises(MergeError, match=r"replica old has no sketch of .* in window 1m"):
        merge(docs)


def test_the_fleets_deployment_is_what_every_replica_runs_alike() -> None:
    replicas = fleet(2, seconds=10)
    raw = [r.document() for r in replicas]
    for i, doc in enumerate(raw):
        doc["deployment"] |= {"process_id": 100 + i, "process_started": 1000.0 + i}
        doc["deployment"]["settings"] = {"max_pending": 512, "slo_p95_ms": 200.0 + 100 * i}  # one replica changed
    merged = merge({f"r{i}": document.read(doc) for i, doc in enumerate(raw)}).deployment
    assert merged.settings == {"max_pending": 512}  # the setting that differs is unknown for the fleet
    assert merged.process_id is None and merged.process_started == 1001.0  # the latest restart


def test_a_bad_sketch_is_a_clear_error() -> None:
    for text in ("not base64!", "A" * (sketchwire.MAX_TEXT_CHARS + 1), "AAAA"):
        with pytest.raises(sketchwire.SketchError):
            sketchwire.decode(text)


def simulate(
    seconds: float, seed: int, gray: int | None = None, gray_from_s: float = 0.0, step_s: float = 5.0
) -> tuple[GrayDetector, float | None]:
    """A seeded simulation of 8 fake replicas' latencies fed to the detector every ``step_s``;
    from ``gray_from_s``, replica ``gray``'s requests take 1.3 × as long (+30% P95, no errors)."""
    rng = np.random.default_rng(seed)
    medians = 0.05 * rng.uniform(0.97, 1.03, REPLICAS)  # replicas differ a little, as real ones do
    detector = GrayDetector()
    for update in range(int(seconds / step_s)):
        intervals = {}
        for r in range(REPLICAS):
            values = medians[r] * rng.lognormal(0.0, 0.3, rng.poisson(RATE_PER_S * step_s))
            if r == gray and update * step_s >= gray_from_s:
                values = values * 1.3
            sketch = DDSketch(RELATIVE_ACCURACY)
            for v in values:
                sketch.add(float(v))
            intervals[f"replica-{r}"] = sketch
        if detector.update(intervals):
            return detector, (update + 1) * step_s - gray_from_s
    return detector, None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_gray_replica_among_eight_is_flagged_within_30_s(seed: int) -> None:
    detector, after_s = simulate(240, seed, gray=5, gray_from_s=120)
    assert after_s is not None and after_s <= 30
    assert list(detector.flagged) == ["replica-5"]


def test_no_false_flag_in_an_hour_of_unchanged_traffic() -> None:
    detector, _ = simulate(3600, seed=11)
    assert detector.flagged == {} and detector.updates == 720
    assert max(detector.statistic(f"replica-{r}") for r in range(REPLICAS)) < OutlierRule().threshold / 2


def test_the_rule_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="p1"):
        OutlierRule(quantile=0.95, p1=0.01)


def test_fleet_snapshot_over_loopback_names_the_gray_replica_and_the_doctor_says_one_replica(tmp_path: Path) -> None:
    replicas = fleet()
    with serving(replicas) as urls:
        base = tmp_path / "base.json"
        assert cli.main(["snapshot", *(a for u in urls for a in ("--replica", u)), "-o", str(base)]) == 0
        for r in replicas:
            r.clock.advance(60)  # a fresh minute: the baseline's requests leave the 1m window
        replicas[3].slowdown = 1.3
        for r in replicas:
            r.run(55, LIVE_RATE_PER_S)
        now = tmp_path / "now.json"
        assert cli.main(["snapshot", *(a for u in urls for a in ("--replica", u)), "-o", str(now)]) == 0
        docs = read_replicas(urls)
    saved = json.loads(now.read_text())
    assert set(saved["replicas"]) == set(urls) and [o["replica"] for o in saved["outliers"]] == [urls[3]]
    assert saved["stats"]["models"][MODEL]["windows"]["1m"]["stages"]["total"]["count"] == sum(
        d.models[MODEL].windows["1m"].stages["total"].count for d in docs.values()
    )
    scope = doctor_fleet.scope(saved, MODEL)
    assert scope is not None and scope.kind == "one replica" and scope.replicas == (urls[3],)
    healthy = doctor_fleet.scope(json.loads(base.read_text()), MODEL)
    assert healthy is not None and healthy.kind == "the whole fleet"


def test_the_doctor_says_the_whole_fleet_when_every_replica_slowed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    replicas = fleet(4)
    with serving(replicas) as urls:
        flags = [a for u in urls for a in ("--replica", u)]
        assert cli.main(["snapshot", *flags, "-o", str(tmp_path / "base.json")]) == 0
        for r in replicas:
            r.clock.advance(60)
            r.slowdown = 1.5
            r.run(55, LIVE_RATE_PER_S)
        assert cli.main(["snapshot", *flags, "-o", str(tmp_path / "now.json")]) == 0
    capsys.readouterr()
    args = ["doctor", "--snapshot", str(tmp_path / "now.json"), "--baseline", str(tmp_path / "base.json"), "--json"]
    assert cli.main(args) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["fleet"]["kind"] == "the whole fleet" and said["confirm"]["p95_ratio"] > 1.3


def test_two_reads_of_a_cumulative_sketch_difference_exactly_and_a_restart_is_refused() -> None:
    earlier, later = DDSketch(RELATIVE_ACCURACY), DDSketch(RELATIVE_ACCURACY)
    values = np.random.default_rng(5).lognormal(-3, 0.4, 500)
    for i, v in enumerate(values):
        later.add(float(v))
        if i < 200:
            earlier.add(float(v))
    between = sketchwire.subtract(sketchwire.decode(sketchwire.encode(later)), earlier)
    alone = DDSketch(RELATIVE_ACCURACY)
    for v in values[200:]:
        alone.add(float(v))
    assert between.count == 300 and between.get_quantile_value(0.95) == pytest.approx(alone.get_quantile_value(0.95))
    with pytest.raises(sketchwire.SketchError, match="not one sketch grown"):
        sketchwire.subtract(earlier, later)


def test_a_replica_with_a_broken_sketch_is_named_by_the_snapshot_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    replicas = fleet(2, seconds=10)
    broken = replicas[1].document
    replicas[1].document = lambda: {
        **broken(),
        "models": {  # type: ignore[method-assign]
            MODEL: {**broken()["models"][MODEL], "lifetime_total": "not a sketch"}
        },
    }
    with serving(replicas) as urls:
        code = cli.main(["snapshot", "--replica", urls[0], "--replica", urls[1], "-o", str(tmp_path / "f.json")])
    assert code == 2 and "cannot be merged: not a serialized DDSketch" in capsys.readouterr().err


def test_a_watched_fleet_snapshot_flags_live_from_the_replicas_lifetime_sketches_within_30_s() -> None:
    """The sequential test live: reads of each replica's cumulative sketch, differenced between reads."""
    replicas = fleet(seconds=5)
    replicas[2].slowdown = 1.3
    with serving(replicas) as urls:
        snap = fleet_snapshot(urls, watch_s=60, wait=lambda: [r.run(5, LIVE_RATE_PER_S) for r in replicas])
    assert snap["watched"]["model"] == MODEL and [f["replica"] for f in snap["watched"]["flags"]] == [urls[2]]
    assert 0 < snap["watched"]["flags"][0]["update"] <= 6  # within 30 s of the manual clock, at 8 req/s a replica
    with pytest.raises(EvidenceError, match="watch for 0 to"):
        fleet_snapshot(urls, watch_s=-1)

"""The ``/v1/stats`` document's contract: its schema is pinned, the server's writer produces it,
a missing field is an error naming the field, and the drill snapshots saved before the document
had a version are read through the migration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from servoscope.clock import ManualClock
from servoscope.doctor import evidence
from servoscope.stages import STAGE_NAMES, STAGES, Timing
from servoscope.telemetry import document
from servoscope.telemetry.monitor import Readings
from servoscope.telemetry.recorder import Telemetry
from servoscope.telemetry.stats import WINDOWS_S, stats
from support import REPO_ROOT, idle_gauges

SCHEMA = REPO_ROOT / "docs" / "stats-document.schema.json"
DRILLS = REPO_ROOT / "tests" / "data" / "drills"
SNAPSHOT = DRILLS / "traffic-growth" / "degraded.json"
MODEL = "efficientnet_lite0"


def saved(path: Path = SNAPSHOT) -> dict[str, Any]:
    """The /v1/stats document of a drill snapshot saved by an earlier version (no schema_version)."""
    return json.loads(path.read_text())["stats"]


def leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every scalar of a JSON value with its path (``models.m.instances``, ``stages[0]``)."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in leaves(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in leaves(v, f"{path}[{i}]")]
    return [(path, value)]


def written() -> document.StatsDocument:
    """What the server writes, from a real telemetry sink fed one request (manual clock, no server)."""
    clock = ManualClock(1000.0)
    telemetry = Telemetry(clock, CollectorRegistry())
    timing = Timing(clock.now(), model=MODEL, status=200, input_bytes=5000, input_pixels=76800, batch_size=1)
    for i, stage in enumerate(STAGES, start=1):
        timing.end(stage, clock.now() + i * 0.01)
    telemetry.record(timing)
    clock.advance(1.0)
    return stats(telemetry, idle_gauges(MODEL), Readings())


def test_the_schema_is_pinned() -> None:
    """A change to the document changes this file: bump SCHEMA_VERSION, extend the migration, and
    regenerate it with ``python -m servoscope.telemetry.document > docs/stats-document.schema.json``."""
    assert document.json_schema() == json.loads(SCHEMA.read_text())


def test_the_writer_produces_the_document_readers_read() -> None:
    doc = written()
    wire = json.loads(doc.model_dump_json())
    assert wire["schema_version"] == document.SCHEMA_VERSION and "schema" not in wire
    assert set(wire["windows_s"]) == set(WINDOWS_S) and wire["stages"] == list(STAGE_NAMES)
    assert wire["models"][MODEL]["windows"]["1m"]["stages"]["total"]["count"] == 1
    assert document.read(wire) == doc
    assert evidence.from_document(wire).total.count == 1


@pytest.mark.parametrize("path", sorted(DRILLS.glob("*/[bd]*.json")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_saved_drill_snapshot_round_trips_through_the_migration(path: Path) -> None:
    raw = saved(path)
    assert "schema_version" not in raw
    doc = document.read(raw)
    again = document.read(doc.to_json())
    assert again == doc
    # everything the earlier version wrote is kept, value for value, under its version 2 name
    kept = document.migrate_v1({k: v for k, v in raw.items() if k not in ("schema", "drill_answered_by_clients")})
    del kept["schema_version"]
    assert dict(leaves(kept)).items() <= dict(leaves(doc.to_json())).items()


def test_the_migration_fills_only_what_earlier_versions_did_not_record() -> None:
    raw = saved()
    migrated = document.migrate_unversioned(raw)
    assert migrated["schema_version"] == 1 and "schema" not in migrated and "drill_answered_by_clients" not in migrated
    assert migrated["windows_ago_s"] == {"1m": 0.0, "5m": 0.0}
    assert migrated["system_means"]["1m"] == dict.fromkeys(document.V1_MEANS)
    entry = migrated["models"][MODEL]
    assert entry["queues"]["concurrency_limit"] is None
    window = entry["windows"]["1m"]
    assert window["delivery"] is None and window["throughput"]["arrived_per_s"] == 0.0
    assert window["stages"] == raw["models"][MODEL]["windows"]["1m"]["stages"]
    assert raw.get("schema") == 1 and "windows_ago_s" not in raw  # the input is left as it was


V1_NAMES = {*document.V2_MEANS, *document.V2_SYSTEM, *document.V2_GPU_DEVICE}


def test_version_1_names_are_renamed_and_percents_become_ratios() -> None:
    v1 = document.migrate_unversioned(saved(DRILLS / "preprocess-starvation" / "degraded.json"))
    v2 = document.migrate_v1(v1)
    assert v1["schema_version"] == 1 and v2["schema_version"] == 2
    assert "queue" in v1["stages"] and "queue" not in v2["stages"] and "preprocess_wait" in v2["stages"]
    waited = v2["models"][MODEL]["windows"]["1m"]["stages"]["preprocess_wait"]
    assert waited == v1["models"][MODEL]["windows"]["1m"]["stages"]["queue"] and waited["count"] > 0
    system, old = v2["system"], v1["system"]
    assert system["cpu_utilization_ratio"] == pytest.approx(old["cpu_percent"] / 100)
    assert system["cpu_core_utilization_ratio"] == pytest.approx([p / 100 for p in old["cpu_percent_per_core"]])
    assert system["process_cpu_cores"] == pytest.approx(old["process_cpu_percent"] / 100)
    assert system["memory_used_ratio"] == pytest.approx(old["memory_used_percent"] / 100)
    means = v2["system_means"]["1m"]
    assert means["cpu_utilization_ratio"] == pytest.approx(v1["system_means"]["1m"]["cpu_percent"] / 100)
    assert not [path for path, _ in leaves(v2) if path.rsplit(".", 1)[-1].split("[")[0] in V1_NAMES]
    assert document.read(v1) == document.read(v2)


def test_a_version_1_gpu_reading_is_renamed_in_ratios() -> None:
    device = {"index": 0, "utilization_gpu_percent": 87, "utilization_memory_percent": 41}
    migrated = document.migrate_v1({"schema_version": 1, "gpu": {"available": True, "devices": [device]}})
    [device] = migrated["gpu"]["devices"]
    assert device == {"index": 0, "utilization_ratio": 0.87, "memory_utilization_ratio": 0.41}


def test_a_version_2_document_reads_with_its_deployment_unknown() -> None:
    wire = written().to_json()
    v2 = {k: v for k, v in wire.items() if k != "deployment"} | {"schema_version": 2}
    doc = document.read(v2)
    assert doc.schema_version == document.SCHEMA_VERSION and doc.deployment == document.UNKNOWN_DEPLOYMENT
    assert doc.models == written().models
    assert document.read(saved()).deployment.servoscope_version is None  # version-less: unknown too


def test_a_snapshot_with_means_keeps_them() -> None:
    raw = saved(DRILLS / "preprocess-starvation" / "degraded.json")
    doc = document.read(raw)
    assert doc.system_means["1m"].cpu_utilization_ratio == pytest.approx(raw["system_means"]["1m"]["cpu_percent"] / 100)
    assert doc.system_means["1m"].gpu_utilization_ratio is None
    assert doc.windows_ago_s["before"] == 60


@pytest.mark.parametrize(
    ("path", "named"),
    [
        (
            ("models", MODEL, "windows", "1m", "throughput", "ok_per_s"),
            f"models.{MODEL}.windows.1m.throughput.ok_per_s",
        ),
        (("system", "cpu_count"), "system.cpu_count"),
        (("preprocess", "workers"), "preprocess.workers"),
        (("models", MODEL, "instances"), "models.efficientnet_lite0.instances"),
    ],
)
def test_a_missing_field_is_an_error_that_names_it(path: tuple[str, ...], named: str) -> None:
    raw = saved()
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    with pytest.raises(document.DocumentError, match=rf"{named}: Field required"):
        document.read(raw)
    with pytest.raises(evidence.EvidenceError, match=named):
        evidence.from_document(raw)


def test_a_missing_stage_or_window_is_named() -> None:
    raw = saved()
    del raw["models"][MODEL]["windows"]["1m"]["stages"]["respond"]
    with pytest.raises(document.DocumentError, match=r"windows\.1m\.stages lacks \['respond'\]"):
        document.read(raw)
    raw = saved()
    del raw["event_loop_lag_s"]["5m"]
    with pytest.raises(document.DocumentError, match=r"event_loop_lag_s lacks \['5m'\]"):
        document.read(raw)


def test_a_wrong_type_or_unknown_field_is_named() -> None:
    raw = saved()
    raw["models"][MODEL]["queues"]["pending"] = "many"
    raw["preprocess"]["spare"] = 1
    with pytest.raises(document.DocumentError) as caught:
        document.read(raw)
    assert "models.efficientnet_lite0.queues.pending" in str(caught.value)
    assert "preprocess.spare: Extra inputs are not permitted" in str(caught.value)


def test_an_unknown_version_is_refused_not_guessed() -> None:
    wire = written().to_json()
    with pytest.raises(document.DocumentError, match="schema_version 5 is not one this servoscope reads"):
        document.read({**wire, "schema_version": 5})
    with pytest.raises(document.DocumentError, match="JSON object, got list"):
        document.read([wire])


def test_a_document_of_something_else_says_its_first_faults_and_how_many_more() -> None:
    with pytest.raises(document.DocumentError) as caught:
        document.read({"schema_version": 2, "hello": "world"})
    said = str(caught.value)
    assert said.startswith("not a /v1/stats document: time: Field required; windows_s: Field required")
    assert said.count(": Field required") == document.MAX_FAULTS_SAID and said.endswith("more")

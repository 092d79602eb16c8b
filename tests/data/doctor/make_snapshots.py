"""Generate the doctor's shape and rule snapshots: ``python tests/data/doctor/make_snapshots.py``.

Each pair (``<scenario>/baseline.json``, ``<scenario>/degraded.json``) is DERIVED from real drill
snapshots in ``tests/data/drills/`` by the edits written below (what each one changes is said in its
function), then read and written back through the current document types, so every file is a
current-version ``/v1/stats`` document with its ``deployment``. Deterministic: no clocks, no randomness.

``measured-*/`` are not made here: they were measured, by ``bench/doctor_accuracy.py --only
outside-slow-uploads`` and ``--only outside-one-instance`` (separate processes, a real service and clients).
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DRILLS = HERE.parent / "drills"
sys.path.insert(0, str(HERE.parents[2]))

from servoscope.settings import Settings  # noqa: E402 — after the path is set
from servoscope.telemetry import document  # noqa: E402
from servoscope.telemetry.deployment import flat  # noqa: E402

MODEL = "efficientnet_lite0"
Doc = dict[str, Any]


def stats(drill: str, which: str) -> Doc:
    return document.read(json.loads((DRILLS / drill / f"{which}.json").read_text())["stats"]).to_json()


def deployed(doc: Doc, instances: int = 2, version: str = "1", file_bytes: int = 18_986_000, pid: int = 4242) -> Doc:
    """What a server started with default settings, but ``instances``, would write."""
    settings = flat(Settings(model_overrides={"instances": instances}).model_dump(mode="json", exclude={"faults"}))
    doc["deployment"] = {
        "servoscope_version": "0.1.0",
        "packages": {"onnxruntime": "1.20.1", "numpy": "2.1.3"},
        "process_id": pid,
        "process_started": doc["time"] - 600.0,
        "settings": settings,
        "models": {
            name: {
                "version": version if name == MODEL else "1",
                "file_bytes": file_bytes,
                "instances": instances,
                "intra_op_threads": max(1, 2 // instances),
                "provider": "cpu",
                "isolation": "thread",
                "instance_pids": [pid] * instances,
                "batching": {
                    "max_batch_size": 4,
                    "max_queue_delay_s": 0.002,
                    "preferred_batch_sizes": "[]",
                    "max_queue_size": 256,
                },
            }
            for name in doc["models"]
        },
    }
    return doc


def idle_model(like: Doc) -> Doc:
    """A served model nobody sent a request to: every stage and size empty, busy ratios 0."""
    entry = copy.deepcopy(like)
    for window in entry["windows"].values():
        window["stages"] = dict.fromkeys(window["stages"])
        window["delivery"] = window["input_bytes"] = window["input_pixels"] = None
        window["throughput"] = {
            "arrived_per_s": 0.0,
            "answered_per_s": 0.0,
            "ok_per_s": 0.0,
            "errors_per_s": 0.0,
            "refused_per_s": 0.0,
            "by_code": {},
            "refused_by_reason": {},
        }
        window["batches"] = {"per_s": 0.0, "mean_size": None, "size_counts": {}}
        window["busy_ratio"] = dict.fromkeys(window["busy_ratio"], 0.0)
    return entry


def several_models() -> tuple[Doc, Doc]:
    """The CPU-contention drill, with the INT8 and FP16 variants served and idle beside the model; between
    the windows the FP16 variant was removed and a ``resnet_int8`` added (idle as well)."""
    base, now = stats("cpu-contention", "baseline"), stats("cpu-contention", "degraded")
    for name in ("efficientnet_lite0_int8", "efficientnet_lite0_fp16"):
        base["models"][name] = idle_model(base["models"][MODEL])
    now["models"]["efficientnet_lite0_int8"] = idle_model(now["models"][MODEL])
    now["models"]["resnet_int8"] = idle_model(now["models"][MODEL])
    return deployed(base), deployed(now)


def one_instance(entry: Doc) -> None:
    """The model's entry as one instance: its busy ratio is both instances' work on one."""
    entry["instances"] = 1
    for window in entry["windows"].values():
        busy = window["busy_ratio"]
        window["busy_ratio"] = {"0": min(1.0, sum(busy.values()))}


def capacity_change() -> tuple[Doc, Doc]:
    """The slow-inference drill's windows, as after a restart with 1 instance instead of 2: the degraded
    window's instances, busy ratios, settings and threads say so (the latencies are the drill's)."""
    base, now = stats("slow-inference", "baseline"), stats("slow-inference", "degraded")
    one_instance(now["models"][MODEL])
    return deployed(base, instances=2), deployed(now, instances=1, pid=5151)


def deploy() -> tuple[Doc, Doc]:
    """The slow-inference drill's windows, as after a deploy of version 2 of the model (another file)."""
    base, now = stats("slow-inference", "baseline"), stats("slow-inference", "degraded")
    return deployed(base), deployed(now, version="2", file_bytes=9_510_000, pid=5151)


def refusals() -> tuple[Doc, Doc]:
    """The traffic-growth baseline twice; the second window also refused 40 % of its requests with 429
    (queue_full), its served latency unchanged."""
    base, now = stats("traffic-growth", "baseline"), stats("traffic-growth", "baseline")
    window = now["models"][MODEL]["windows"]["1m"]
    served = window["throughput"]["by_code"]["200"]
    refused = round(served * 0.4 / 0.6)
    covered = window["covered_s"]
    window["throughput"]["by_code"] = {"200": served, "429": float(refused)}
    window["throughput"]["refused_by_reason"] = {"queue_full": float(refused)}
    window["throughput"]["refused_per_s"] = window["throughput"]["errors_per_s"] = refused / covered
    window["throughput"]["answered_per_s"] += refused / covered
    return deployed(base), deployed(now)


def slow_uploads() -> tuple[Doc, Doc]:
    """The traffic-growth baseline twice; in the second, clients on slow uplinks: ingest (the body
    arriving) P50/P95/P99 at 0.4/2.0/2.6 s, 18 requests in ingest, 12 answered 408 (body too slow)."""
    base, now = stats("traffic-growth", "baseline"), stats("traffic-growth", "baseline")
    window = now["models"][MODEL]["windows"]["1m"]
    for stage in ("ingest", "total"):
        summary = window["stages"][stage]
        summary.update(
            p50=summary["p50"] + 0.4,
            p90=summary["p90"] + 1.6,
            p95=summary["p95"] + 2.0,
            p99=summary["p99"] + 2.6,
            max=summary["max"] + 3.0,
            mean=summary["mean"] + 0.6,
        )
    window["throughput"]["by_code"]["408"] = 12.0
    now["ingesting"] = 18
    return deployed(base), deployed(now)


def below_alarm() -> tuple[Doc, Doc]:
    """The traffic-growth baseline twice; in the second, two cores of outside CPU on a 4-core machine
    (the service's own unchanged) and 5 % of swap in use, total P95 up 4 % only."""
    base, now = stats("traffic-growth", "baseline"), stats("traffic-growth", "baseline")
    for doc, machine, swap in ((base, 0.25, 0.0), (now, 0.75, 0.05)):
        doc["system"]["cpu_count"] = 4
        doc["system"]["process_cpu_cores"] = 1.0
        for means in doc["system_means"].values():
            means.update(cpu_utilization_ratio=machine, process_cpu_cores=1.0, swap_used_ratio=swap)
    total = now["models"][MODEL]["windows"]["1m"]["stages"]["total"]
    total.update(p95=total["p95"] * 1.04)
    return deployed(base), deployed(now)


SCENARIOS: dict[str, Callable[[], tuple[Doc, Doc]]] = {
    "several-models": several_models,
    "capacity-change": capacity_change,
    "deploy": deploy,
    "refusals": refusals,
    "slow-uploads": slow_uploads,
    "below-alarm": below_alarm,
}


def main() -> None:
    for name, make in SCENARIOS.items():
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        for which, doc in zip(("baseline", "degraded"), make()):
            typed = document.read(doc)  # through the types: a field out of place is an error here
            wrapped = {"stats_window": "1m", "stats": typed.to_json()}
            (folder / f"{which}.json").write_text(json.dumps(wrapped, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

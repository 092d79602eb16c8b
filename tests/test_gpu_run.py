"""The prepared GPU device run (bench/gpu/run.py) dry-runs on the CPU, so it never rots.

Only the quick sections run here (a few seconds); ``--run-slow`` runs them all (about a minute).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from support import REPO_ROOT


def load_run():
    spec = importlib.util.spec_from_file_location("gpu_run", REPO_ROOT / "bench" / "gpu" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def dry_run(model_repository: Path, out: Path, sections: str) -> dict[str, dict]:
    run = load_run()
    status = run.main(
        [
            "--device",
            "cpu",
            "--dry-run",
            "--out",
            str(out),
            "--repository",
            str(model_repository),
            "--sections",
            sections,
        ]
    )
    results = {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert status == 0, {name: r.get("error") for name, r in results.items()}
    assert (out / "summary.md").is_file() and (out / "run.log").is_file()
    return results


def test_the_dry_run_warms_every_bucket_and_measures_the_first_requests(model_repository: Path, tmp_path: Path) -> None:
    results = dry_run(model_repository, tmp_path, "throughput,first_requests")
    assert set(results) == {"throughput.json", "first_requests.json", "nvml.json"}
    first = results["first_requests.json"]
    # the dry run's buckets (1 and its max_batch_size, 4), every one warmed before the first request
    assert first["requests"] == 40 and first["warmed_buckets"] == [1, 4]
    assert first["max_ms"] >= first["p50_ms"] > 0 and first["max_over_p50"] == first["max_ms"] / first["p50_ms"]
    rows = results["throughput.json"]["rows"]
    assert [(r["compile"], r["batch"]) for r in rows] == [("none", 1), ("none", 4)]
    assert max(r["share_of_offline_limit"] for r in rows) == 1.0
    assert results["nvml.json"]["available"] is False  # no GPU here: said, not failed


@pytest.mark.slow
def test_the_whole_dry_run_writes_at_most_eight_files(model_repository: Path, tmp_path: Path) -> None:
    results = dry_run(model_repository, tmp_path, "agreement,throughput,first_requests,decode,e2e")
    assert len(list(tmp_path.iterdir())) <= 8
    rows = {r["engine"]: r for r in results["agreement.json"]["rows"]}
    assert rows["torch/cpu/fp32/channels_last"]["top1_agreement"] >= 0.995
    assert results["e2e.json"]["runs"]["cpu"]["saturated"]["counts"]["ok"] > 0
    assert results["decode.json"]["sets"]["small"]["top1_same"] >= 0.9

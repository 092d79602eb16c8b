"""A short fidelity check: the simulator's prediction against the real server, load generator and
batcher, with the model replaced by a FAKE runtime that sleeps a fixed time per batch.

The fake makes inference deterministic, so what is checked is the queueing and batching: the
real server (HTTP, preprocess pool, batcher, one instance) runs on loopback in a process of its own, the
real open-loop load generator drives it (latency from the scheduled send times), and the
simulator predicts the same run from a profile of the same fake pipeline measured in process
(servoscope.planner.measure: preprocess, batch and hand-off times) plus the ingest and respond
times the server reported (Server-Timing means; HTTP is outside the pipeline): the planner's own
path, profile → plan, beside a real run. Tolerances are loose — this catches gross errors (batching unlike the server's,
a stage left out), not a few percent: on a shared 2-core machine at load average ~5, six runs gave
measured/predicted P50 0.83–1.2 and P95 0.63–1.6, the profile's and the run's stalls apart.
The accuracy figures belong to bench/plan_accuracy.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planner_fake_server import fake_pipeline
from servoscope.loadgen import profiles
from servoscope.loadgen.client import Endpoint
from servoscope.loadgen.mixes import Mix, generated, parse_mix
from servoscope.loadgen.runner import LoadPlan, execute, result_json
from servoscope.loadgen.targets import Target
from servoscope.planner import measure, plan, service
from servoscope.planner.profile import Overheads
from servoscope.planner.sim import SimConfig
from support import MODEL, REPO_ROOT, ServerProcess, free_port, wait_ready

BASE_S, PER_IMAGE_S = 0.008, 0.004  # the fake's time for a batch of n: BASE_S + n × PER_IMAGE_S
MAX_BATCH, DELAY_S = 4, 0.002
RATE, DURATION_S, PROFILE_S = 60.0, 8.0, 4.0


@pytest.fixture
def fake_server(model_repository: Path, tmp_path: Path) -> Iterator[Endpoint]:
    """tests/planner_fake_server.py (its model a FAKE that sleeps per batch) on a free loopback port."""
    port = free_port()
    log = tmp_path / "fake-server.log"
    script = Path(__file__).with_name("planner_fake_server.py")
    args = [str(port), str(model_repository), str(BASE_S), str(PER_IMAGE_S), str(MAX_BATCH), str(DELAY_S)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(script), *args], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(server)
        yield Endpoint("127.0.0.1", port)
    finally:
        server.stop()


def load_run(endpoint: Endpoint, mix: Mix) -> dict[str, Any]:
    load = LoadPlan(
        endpoint, Target("v1", MODEL), mix, profile=profiles.constant(RATE, DURATION_S), duration_s=DURATION_S, seed=3
    )
    return result_json(load, asyncio.run(execute(load)))


def profiled(model_repository: Path, mix: Mix, http: dict[str, Any]) -> plan.Replica:
    """The planner's own path: a profile of the fake pipeline (in process), HTTP overheads from the run."""
    _, pipeline = fake_pipeline(0, model_repository, BASE_S, PER_IMAGE_S, MAX_BATCH, DELAY_S)
    spec = measure.Spec(1, 1, 1, MAX_BATCH, DELAY_S)
    samples = asyncio.run(measure.measure_pipeline(pipeline, spec, mix, PROFILE_S, 0, print))
    family = measure.family(spec, samples, measure.size_classes(mix))
    overheads = Overheads(ingest=[http["ingest"]["mean"] / 1000], respond=[http["respond"]["mean"] / 1000])
    return plan.Replica(service.from_family(family, overheads, MAX_BATCH), SimConfig(1, 1, family.batching), (1.0,))


def test_the_simulation_predicts_the_fake_service(
    fake_server: Endpoint, model_repository: Path, tmp_path: Path
) -> None:
    mix = generated(parse_mix("100%:320x240"), 0.0, tmp_path / "images")
    result = load_run(fake_server, mix)
    assert result["counts"]["ok"] == result["counts"]["scheduled"]
    predicted = plan.at_rate(profiled(model_repository, mix, result["stages_ms"]), plan.Traffic(), RATE, 600.0, seed=1)
    measured = result["latency_ms"]
    print(
        f"measured P50 {measured['p50']:.1f} P95 {measured['p95']:.1f} ms; "
        f"predicted {predicted.p50_ms:.1f} {predicted.p95_ms:.1f} ms;"
        f" stages measured {result['stages_ms']}, predicted {predicted.stage_mean_ms}"
    )
    assert measured["p50"] == pytest.approx(predicted.p50_ms, rel=0.35)
    assert 1 / 1.8 <= measured["p95"] / predicted.p95_ms <= 1.8

"""``servoscope fleet view``: the fleet view served over loopback HTTP by the real command (a process
of its own) in front of fake replicas (tests/fleet_fakes.py: this machine cannot host eight real
ones): ``/v1/stats`` merged from the replicas' sketches and read by the doctor's own client, the
gray replica flagged, an unreachable replica named; printed once without ``--serve``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from fleet_fakes import MODEL, FakeReplica, serving
from servoscope import cli
from servoscope.doctor import live
from servoscope.fleet.merge import merge
from servoscope.fleet.view_command import FleetView
from servoscope.telemetry import document
from support import REPO_ROOT, ServerProcess, free_port, wait_ready

RATE_PER_S = 8.0


def fleet(count: int) -> list[FakeReplica]:
    replicas = [FakeReplica(seed=i, median_s=0.05 * (1 + 0.005 * i)) for i in range(count)]
    for r in replicas:
        r.run(55, RATE_PER_S)
    return replicas


@contextmanager
def view_server(urls: list[str], workdir: Path) -> Iterator[ServerProcess]:
    """``servoscope fleet view --serve`` on a free loopback port, stopped after."""
    port = free_port()
    replicas = [a for u in urls for a in ("--replica", u)]
    command = [sys.executable, "-m", "servoscope", "fleet", "view", "--serve", "--port", str(port), *replicas]
    log = workdir / "view.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*command, "--refresh-s", "0"], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(server)
        yield server
    finally:
        server.stop()


def test_the_served_view_merges_the_sketches_flags_the_gray_replica_and_names_a_lost_one(tmp_path: Path) -> None:
    replicas = fleet(5)
    replicas[2].slowdown = 1.3
    for r in replicas:
        r.run(55, RATE_PER_S)
    with serving(replicas[:4]) as urls, ExitStack() as lost:
        last = lost.enter_context(serving(replicas[4:]))
        with view_server([*urls, *last], tmp_path) as view, httpx.Client(base_url=view.url, timeout=10) as client:
            merged = live.fetch_stats(view.url)  # the doctor's own client reads the fleet as one replica
            outliers = client.get("/v1/fleet/outliers").json()["outliers"]
            snapshot = client.get("/v1/fleet").json()
            lost.close()  # the fifth replica's server stops
            gone = client.get("/v1/stats")
    expected = merge({u: document.read(r.document()) for u, r in zip([*urls, *last], replicas)})
    total = merged.models[MODEL].windows["1m"].stages["total"]
    assert total is not None and total == expected.models[MODEL].windows["1m"].stages["total"]  # from the sketches
    p95s = [
        stage.p95
        for r in replicas
        if (stage := document.read(r.document()).models[MODEL].windows["1m"].stages["total"])
    ]
    assert total.p95 != pytest.approx(sum(p95s) / len(p95s), rel=0.02)  # not an average of percentiles
    assert [o["replica"] for o in outliers] == [urls[2]] and set(snapshot["replicas"]) == {*urls, *last}
    assert gone.status_code == 502 and last[0] in gone.json()["error"]


def test_the_view_reads_the_replicas_at_most_once_per_refresh() -> None:
    replicas = fleet(2)
    now = [0.0]
    with serving(replicas) as urls:
        view = FleetView(urls, refresh_s=5.0, clock=lambda: now[0])
        first = view.snapshot()
        now[0] = 4.9
        assert view.snapshot() is first
        now[0] = 5.0
        assert view.snapshot() is not first


def test_without_serve_the_view_is_printed_once(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(fleet(2)) as urls:
        assert cli.main(["fleet", "view", *(a for u in urls for a in ("--replica", u))]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["replicas"]) == set(urls) and printed["outliers"] == []
    assert cli.main(["fleet", "view", "--replica", urls[0], "--refresh-s", "-1"]) == 2

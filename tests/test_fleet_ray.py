"""servoscope on a real Ray Serve cluster bound to loopback, with Debian's HAProxy in front: answers,
autoscaling on the queue-wait signal, and no request lost when a replica is killed under load.

One cluster for the module (starting Ray costs ~20 s here); it is stopped at the end and every
process it started is asserted gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psutil
import pytest

from servoscope.cli import main
from servoscope.fleet.plan import FleetPlan
from servoscope.settings import load_settings

if TYPE_CHECKING:
    from servoscope.fleet.ray.fleet import RayFleet

from support import CLASSIFY, MODEL, TEST_SLO_P95_MS, Photo, classify, free_port, top1, wait_for

MIN_REPLICAS, MAX_REPLICAS = 2, 3
LOOPBACK = {"127.0.0.1", "[::ffff:127.0.0.1]"}  # as ss shows a listener's address
# each load below stops at this many requests, whatever happens; the kill test waits up to 20 s for the
# balancer to drop the dead replica while the other serves, then for 10 answers more: a cap of 400 could be
# spent in that wait on a busy machine (the full suite once), and the load stopped short of the answers awaited
LOAD_MAX_REQUESTS = 4000
LOAD_DEADLINE_S = 60.0


@dataclass
class Load:
    """``clients`` threads posting ``body`` until stopped (or the bounds): every answer is kept."""

    url: str
    body: bytes
    clients: int
    answers: list[tuple[int, str]] = field(default_factory=list)  # status, top-1 label (or the error)
    failures: list[str] = field(default_factory=list)  # requests that got no HTTP answer at all
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.clients)
        self._sent = 0
        self._futures = [self._pool.submit(self._client) for _ in range(self.clients)]

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=LOAD_DEADLINE_S) as client:
            while not self.stop.is_set() and self._take():
                try:
                    response = client.post(CLASSIFY, content=self.body, headers={"Content-Type": "image/jpeg"})
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(repr(exc))
                    continue
                label = response.json()["predictions"][0]["label"] if response.status_code == 200 else response.text
                with self._lock:
                    self.answers.append((response.status_code, label))

    def _take(self) -> bool:
        with self._lock:
            self._sent += 1
            return self._sent <= LOAD_MAX_REQUESTS

    def finish(self) -> None:
        self.stop.set()
        for future in self._futures:
            future.result(timeout=LOAD_DEADLINE_S)
        self._pool.shutdown()


@pytest.fixture(scope="module")
def fleet(model_repository: Path) -> Iterator[RayFleet]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported: a loopback cluster
        yield from started_fleet(model_repository)


def started_fleet(model_repository: Path) -> Iterator[RayFleet]:
    from servoscope.fleet.ray.fleet import FleetOptions, RayFleet  # Ray loads in ~3 s: not at collection

    settings = load_settings(
        None, model_repository=model_repository, models=(MODEL,), slo_p95_ms=float(TEST_SLO_P95_MS)
    )
    plan = FleetPlan.model_validate(
        {
            "replicas": {"min": MIN_REPLICAS, "max": MAX_REPLICAS},
            "cpu_cores": 0.5,
            "queue_wait_target_s": 0.005,
        }
    )
    options = FleetOptions(
        port=free_port(), num_cpus=2, signal_window_s=5.0, upscale_delay_s=1.0, downscale_delay_s=2.0
    )
    before = {p.pid for p in psutil.Process().children(recursive=True)}  # e.g. the session's own servers
    started = RayFleet(settings, plan, options)
    started.start()
    children = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    try:
        wait_for(lambda: len(started.balancer.served()) == MIN_REPLICAS, "the balancer serves both replicas", 60)
        yield started
    finally:
        started.stop()
        wait_for(
            lambda: not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
            "every process the fleet started has exited",
            60,  # Ray's workers and agents exit in their own time after ray.shutdown
        )


def in_progress(fleet: RayFleet, address: str) -> int:
    return fleet.balancer.counters(address).get("scur", 0)


@pytest.fixture(scope="module")
def url(fleet: RayFleet) -> str:
    return f"http://{fleet.balancer.address}"


def test_two_replicas_answer_chelsea_with_a_cat_and_listen_on_loopback_only(
    fleet: RayFleet, url: str, photos: dict[str, Photo]
) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        labels = {top1(classify(client, photos["chelsea"].jpeg)) for _ in range(4)}
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v1/stats").json()["models"]  # one replica's document, as servoscope serves it
    assert labels <= photos["chelsea"].accepted
    assert len(fleet.members()) == MIN_REPLICAS
    ours = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    listening = [
        line
        for line in subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout.splitlines()
        if any(f"pid={pid}," in line for pid in ours)
    ]
    assert listening, "ss shows none of the fleet's listeners"
    # Every one, Ray Serve's inter-deployment gRPC server included (fleet/ray/replica.py rebinds it
    # from the [::]:0 that Ray Serve 2.60 hard-codes to the node's address).
    others = listening
    assert all(line.split()[3].rsplit(":", 1)[0] in LOOPBACK for line in others), "\n".join(others)


def test_a_replica_killed_under_load_loses_no_request_and_the_fleet_recovers(
    fleet: RayFleet, url: str, photos: dict[str, Photo]
) -> None:
    before = fleet.members()
    victim = before[0]
    load = Load(url, photos["chelsea"].jpeg, clients=3)
    try:
        wait_for(lambda: len(load.answers) >= 10, "answers before the kill", 60)
        os.kill(victim.pid, signal.SIGSTOP)  # frozen first, so that requests are surely in it when it dies
        try:
            wait_for(lambda: in_progress(fleet, victim.address) > 0, "a request in the frozen replica")
        finally:
            os.kill(victim.pid, signal.SIGKILL)  # a crash: no drain, in-flight requests cut off
        wait_for(lambda: victim.address not in fleet.balancer.served(), "the balancer drops the dead replica", 20)
        answered_at_drop = len(load.answers)
        assert answered_at_drop + 10 <= LOAD_MAX_REQUESTS, f"cap spent before the drop: {answered_at_drop}"
        wait_for(lambda: len(load.answers) >= answered_at_drop + 10, "answers after the kill", 60)
    finally:
        load.finish()
    assert load.failures == []
    assert {status for status, _ in load.answers} == {200}, load.answers
    assert {label for _, label in load.answers} <= photos["chelsea"].accepted
    backend = fleet.balancer.counters()
    assert backend["wredis"] >= 1, backend  # the cut-off requests were sent again, to the other replica
    recovered = wait_for(
        lambda: (m := fleet.members()) and len(m) >= len(before) and victim not in m and m,
        "Ray replaces the killed replica",
        90,
    )
    assert victim.pid not in {m.pid for m in recovered}
    wait_for(lambda: sorted(m.address for m in fleet.members()) == fleet.balancer.served(), "the balancer follows", 20)


def test_the_doctor_and_snapshot_read_the_fleet_unchanged(fleet: RayFleet, url: str, tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshot.json"
    assert main(["snapshot", "--url", url, "-o", str(snapshot)]) == 0
    assert MODEL in json.loads(snapshot.read_text())["stats"]["models"]
    assert main(["doctor", "--url", url, "--baseline", str(snapshot)]) == 0
    with httpx.Client(base_url=url, timeout=30) as client:
        assert "servoscope_requests_total" in client.get("/metrics").text


@pytest.mark.slow  # ~35 s here: Ray's look-back window, then the delays, in both directions
def test_scales_up_under_load_and_back_down_on_the_queue_wait_signal(
    fleet: RayFleet, url: str, photos: dict[str, Photo]
) -> None:
    wait_for(lambda: fleet.running_replicas() == MIN_REPLICAS, "the fleet at its minimum before the load", 90)
    load = Load(url, photos["chelsea"].jpeg, clients=8)
    try:
        wait_for(lambda: fleet.running_replicas() == MAX_REPLICAS, "a scale-up under load", 60)
    finally:
        load.finish()
    assert load.failures == []
    assert {status for status, _ in load.answers} == {200}
    wait_for(lambda: fleet.running_replicas() == MIN_REPLICAS, "a scale-down once the load stopped", 90)

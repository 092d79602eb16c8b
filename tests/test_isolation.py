"""Process isolation on a real server: an instance's child process is SIGKILLed under load, and
nothing is lost — every request gets exactly one answer (200, or 503 with Retry-After), none hangs,
the instance is replaced (a new process id, requests served again), the restart is counted, the
counters reconcile, and the server's drain stops every child.

The load is bounded in count (``REQUESTS``), in concurrency and in time (client timeouts, and one
bound on the whole run).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import CLASSIFY, MODEL, Photo, ServerProcess, metric_sum, metric_value, wait_for
from test_process_runtime import gone

REQUESTS = 160
CONCURRENCY = 8
KILL_AFTER = REQUESTS // 4  # answers before the kill: the load is well under way
CLIENT_TIMEOUT_S = 30.0
RUN_DEADLINE_S = 90.0
DETAIL = f"/v1/models/{MODEL}"


@pytest.fixture
def isolated(spawn_server: Callable[..., ServerProcess]) -> ServerProcess:
    # static admission: the load is bounded by the clients, and no answer here should be a 429
    env = {"SERVOSCOPE_MODEL_OVERRIDES__ISOLATION": "process", "SERVOSCOPE_ADMISSION": "static"}
    return spawn_server("--models", MODEL, env=env)


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def instances(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get(DETAIL)
    assert response.status_code == 200, response.text
    return response.json()["instances"]


async def load_with_kill(url: str, body: bytes, victim: int) -> list[httpx.Response | BaseException]:
    """``REQUESTS`` classify requests from ``CONCURRENCY`` clients; ``victim`` is SIGKILLed once
    ``KILL_AFTER`` are answered. Every outcome is kept: a response, or the client's exception."""
    outcomes: list[httpx.Response | BaseException] = []
    started = iter(range(REQUESTS))
    enough = asyncio.Event()
    headers = {"Content-Type": "image/jpeg"}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT_S, limits=limits) as client:

        async def worker() -> None:
            for _ in started:
                try:
                    outcomes.append(await client.post(CLASSIFY, content=body, headers=headers))
                except httpx.HTTPError as exc:
                    outcomes.append(exc)
                if len(outcomes) >= KILL_AFTER:
                    enough.set()

        async def killer() -> None:
            await enough.wait()
            os.kill(victim, signal.SIGKILL)

        kill = asyncio.create_task(killer())
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), RUN_DEADLINE_S)
        assert kill.done(), "the load ended before the kill"
        await kill
    return outcomes


def test_a_killed_instance_process_is_replaced_and_no_request_is_lost(
    isolated: ServerProcess, photos: dict[str, Photo]
) -> None:
    photo = photos["coffee"]
    server_pid = isolated.process.pid
    with httpx.Client(base_url=isolated.url, timeout=CLIENT_TIMEOUT_S) as client:
        before = instances(client)
        pids = [i["pid"] for i in before]
        assert [i["isolation"] for i in before] == ["process"] * len(before)
        assert len(set(pids)) == len(pids) and server_pid not in pids
        assert all(parent_of(pid) == server_pid for pid in pids)
        victim = pids[0]

        outcomes = asyncio.run(load_with_kill(isolated.url, photo.jpeg, victim))

        assert len(outcomes) == REQUESTS
        hung = [o for o in outcomes if isinstance(o, BaseException)]
        assert not hung, f"requests without an answer: {hung[:3]}"
        responses = [o for o in outcomes if isinstance(o, httpx.Response)]
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}, statuses
        for r in responses:
            if r.status_code == 503:
                assert r.headers.get("retry-after") and "instance" in r.json()["error"], r.text
            else:
                assert r.json()["predictions"][0]["label"] in photo.accepted

        # Replaced: a new process for instance 0, the others untouched, and it serves.
        wait_for(lambda: gone(victim))
        after = instances(client)
        assert after[0]["pid"] not in (victim, None) and after[0]["restarts"] == 1
        assert parent_of(after[0]["pid"]) == server_pid
        assert [i["pid"] for i in after[1:]] == pids[1:] and all(i["restarts"] == 0 for i in after[1:])
        later = [
            client.post(CLASSIFY, content=photo.jpeg, headers={"Content-Type": "image/jpeg"})
            for _ in range(2 * len(after))
        ]
        assert [r.status_code for r in later] == [200] * len(later)

        # Counted: one restart; every answer once, by code; every 503 a refusal for instance_lost.
        answered = {200: statuses.count(200) + len(later), 503: statuses.count(503)}
        text = ""

        def all_recorded() -> bool:
            nonlocal text
            text = client.get("/metrics").text
            return metric_sum(text, "servoscope_requests_total", model=MODEL) >= REQUESTS + len(later)

        wait_for(all_recorded)  # records land just after the answers are sent
        assert metric_value(text, "servoscope_instance_restarts_total", model=MODEL) == 1.0
        assert {
            code: metric_sum(text, "servoscope_requests_total", model=MODEL, code=str(code)) for code in answered
        } == answered
        assert metric_sum(text, "servoscope_requests_total", model=MODEL) == REQUESTS + len(later)
        assert metric_sum(text, "servoscope_refused_total", model=MODEL) == answered[503]
        assert metric_sum(text, "servoscope_refused_total", reason="instance_lost") == answered[503]
        children = [i["pid"] for i in after]

    # Drained: the server exits cleanly and takes its children with it.
    assert isolated.stop() == 0, isolated.log_tail()
    assert all(gone(pid) for pid in children)
    assert "replacement 1 is process" in isolated.log.read_text()

"""SIGTERM drains: readiness goes false, open requests are answered, then the process exits 0.

The open requests are uploads paused half-way: the server is surely inside their handlers
when the signal arrives, and they cannot finish before it, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Callable

import httpx

from support import CLASSIFY, EXIT_DEADLINE_S, MODEL, Photo, ServerProcess, polls

OPEN = 4
DRAIN_DEADLINE_S = 20.0


async def paused_upload(data: bytes, sent_half: asyncio.Event, release: asyncio.Event) -> AsyncIterator[bytes]:
    half = len(data) // 2
    yield data[:half]
    sent_half.set()
    await release.wait()
    yield data[half:]


async def not_ready(url: str) -> str:
    """Poll readiness on fresh connections until it answers 503 or the listening socket is closed."""
    for pause in polls(DRAIN_DEADLINE_S, "readiness to fall", first_s=0.01, most_s=0.2):  # the drain is short
        try:
            async with httpx.AsyncClient(base_url=url, timeout=5.0) as probe:
                status = (await probe.get("/v2/health/ready")).status_code
            if status == 503:
                return "503"
            assert status == 200, status
        except httpx.ConnectError:
            return "refused"
        await asyncio.sleep(pause)
    raise AssertionError("unreachable: polls() fails at the deadline")


async def drain_scenario(srv: ServerProcess, uploads: list[tuple[Photo, bytes]]) -> tuple[list[httpx.Response], str]:
    release = asyncio.Event()
    halves = [asyncio.Event() for _ in uploads]
    limits = httpx.Limits(max_connections=len(uploads))
    async with httpx.AsyncClient(base_url=srv.url, timeout=60.0, limits=limits) as client:
        requests = [
            asyncio.create_task(
                client.post(CLASSIFY, content=paused_upload(data, half, release), headers={"Content-Type": "image/png"})
            )
            for (_, data), half in zip(uploads, halves)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*(h.wait() for h in halves)), DRAIN_DEADLINE_S)
            # Two round trips on another connection: the server has read the uploads' headers and
            # run their handlers up to the body read, so they are open.
            async with httpx.AsyncClient(base_url=srv.url, timeout=5.0) as probe:
                for _ in range(2):
                    assert (await probe.get("/v2/health/ready")).status_code == 200
            srv.process.send_signal(signal.SIGTERM)
            readiness = await not_ready(srv.url)
        finally:
            release.set()
        responses = await asyncio.wait_for(asyncio.gather(*requests), DRAIN_DEADLINE_S)
    return responses, readiness


def test_sigterm_drains_open_requests(spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]) -> None:
    srv = spawn_server("--models", MODEL)
    names = ["chelsea", "coffee", "rocket", "camera"][:OPEN]
    uploads = [(photos[name], photos[name].encode("PNG", scale=3)) for name in names]

    responses, readiness = asyncio.run(drain_scenario(srv, uploads))

    assert readiness in {"503", "refused"}
    assert [r.status_code for r in responses] == [200] * len(uploads), [r.text for r in responses]
    for (photo, _), response in zip(uploads, responses):
        assert response.json()["predictions"][0]["label"] in photo.accepted
    try:
        code = srv.process.wait(EXIT_DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"server still running {EXIT_DEADLINE_S}s after SIGTERM:\n{srv.log_tail()}") from None
    assert code == 0, f"exit status {code} after a clean drain:\n{srv.log_tail()}"

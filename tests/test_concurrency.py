"""Many concurrent requests: every one answered with its own image's class, and some batched together."""

from __future__ import annotations

import asyncio
import itertools

import httpx

from support import CLASSIFY, Photo, ServerProcess

REQUESTS = 64


async def _classify_all(url: str, bodies: list[tuple[bytes, str]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:
        return await asyncio.gather(
            *(client.post(CLASSIFY, content=data, headers={"Content-Type": ctype}) for data, ctype in bodies)
        )


def test_concurrent_requests_each_get_their_own_answer(server: ServerProcess, photos: dict[str, Photo]) -> None:
    formats = (("JPEG", "image/jpeg"), ("PNG", "image/png"))
    variants = [(photo, photo.encode(fmt), ctype) for photo in photos.values() for fmt, ctype in formats]
    sent = list(itertools.islice(itertools.cycle(variants), REQUESTS))
    responses = asyncio.run(_classify_all(server.url, [(data, ctype) for _, data, ctype in sent]))
    assert [r.status_code for r in responses] == [200] * REQUESTS, [r.text for r in responses if r.status_code != 200]
    for (photo, _, _), response in zip(sent, responses):
        assert response.json()["predictions"][0]["label"] in photo.accepted, photo.name
    batch_sizes = [r.json()["batch_size"] for r in responses]
    assert max(batch_sizes) > 1, batch_sizes

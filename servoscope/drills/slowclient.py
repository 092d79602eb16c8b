"""Clients that read their answers slowly: a small receive buffer (``SO_RCVBUF``) and small,
paced reads, so the answer trickles out of the server. Open loop (Poisson), one connection
per request, every request bounded by a timeout. Loopback only (``Endpoint`` checks)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from servoscope.loadgen import EncodedRequest, Endpoint, Sample

MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Reader:
    """How a client reads: ``chunk_bytes`` per read, ``pause_s`` between reads, its receive buffer."""

    chunk_bytes: int = 65536
    pause_s: float = 0.0
    rcvbuf_bytes: int = 0  # 0: the system default

    def describe(self) -> str:
        if not self.pause_s:
            return "read normally"
        return (
            f"read {self.chunk_bytes} B every {1000 * self.pause_s:g} ms through a {self.rcvbuf_bytes} B receive buffer"
        )


async def _connect(endpoint: Endpoint, reader: Reader) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if reader.rcvbuf_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, reader.rcvbuf_bytes)  # before connect: small window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (endpoint.host, endpoint.port))
    return sock


async def _read(sock: socket.socket, reader: Reader) -> tuple[int, str]:
    """Read one response at the reader's pace; its status and Server-Timing header."""
    loop = asyncio.get_running_loop()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await loop.sock_recv(sock, reader.chunk_bytes)
        if not chunk or len(data) > MAX_HEAD_BYTES:
            raise ConnectionError("no complete response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    remaining = int(headers.get("content-length", "0")) - len(body)
    while remaining > 0:
        if reader.pause_s:
            await asyncio.sleep(reader.pause_s)  # the slow reader's pace (the fault itself), not a wait
        chunk = await loop.sock_recv(sock, min(reader.chunk_bytes, remaining))
        if not chunk:
            raise ConnectionError("connection closed mid-body")
        remaining -= len(chunk)
    return int(lines[0].split(" ")[1]), headers.get("server-timing", "")


async def _exchange(
    endpoint: Endpoint, request: EncodedRequest, reader: Reader, sample: Sample, timeout_s: float
) -> None:
    sock: socket.socket | None = None
    try:
        async with asyncio.timeout(timeout_s):
            sock = await _connect(endpoint, reader)
            sample.sent = time.perf_counter()
            await asyncio.get_running_loop().sock_sendall(sock, request.head + request.body)
            sample.status, sample.server_timing = await _read(sock, reader)
    except (OSError, TimeoutError, ValueError, IndexError) as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    finally:
        sample.done = time.perf_counter()
        if sock is not None:
            sock.close()


async def slow_open_loop(
    endpoint: Endpoint,
    requests: Sequence[EncodedRequest],
    arrivals: Sequence[float],
    reader: Reader,
    timeout_s: float = 30.0,
) -> list[Sample]:
    """Send ``requests`` (cycled) at the ``arrivals`` offsets, each read by ``reader``; latency from the schedule."""
    start = time.perf_counter() + 0.01
    samples: list[Sample] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for i, offset in enumerate(arrivals):
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule
            sample = Sample(start + offset, start + offset)
            samples.append(sample)
            tasks.append(
                asyncio.create_task(_exchange(endpoint, requests[i % len(requests)], reader, sample, timeout_s))
            )
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return samples

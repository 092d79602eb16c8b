"""Closed-loop clients that retry refusals, as real client fleets do.

Each client sends its next request when the last one is answered. A refusal (429, or 503 with
``Retry-After``) is sent again after a pause — the same request, until it is answered or the window
ends — and the pause is the client's own behaviour:

- ``honour``: waits what ``Retry-After`` says (whole seconds), jittered by up to +50%;
- ``fixed``: ignores it and retries after a fixed pause (50 ms by default: a retry storm's recipe).

Both the attempts and the requests are measured: an answered attempt's latency is the service's
view; a request's latency from its first attempt to its answer is the client's.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from servoscope.loadgen.client import Connection, EncodedRequest, Endpoint, ProtocolError

Behaviour = Literal["honour", "fixed"]
REFUSALS = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    behaviour: Behaviour = "honour"
    fixed_pause_s: float = 0.05
    jitter: float = 0.5  # honour: up to this share added to Retry-After

    def pause_s(self, retry_after: str | None, rng: random.Random) -> float:
        if self.behaviour == "fixed":
            return self.fixed_pause_s
        try:
            seconds = float(retry_after) if retry_after else 1.0
        except ValueError:
            seconds = 1.0
        return seconds * (1.0 + self.jitter * rng.random())


@dataclass(slots=True)
class Population:
    """What one closed-loop population saw within its window."""

    window_s: float
    answered: list[float] = field(default_factory=list)  # latency of each answered (2xx) attempt, s
    requests: list[float] = field(default_factory=list)  # first attempt to answer, per answered request, s
    refusals: int = 0
    errors: int = 0  # other statuses, and failed exchanges

    @property
    def answered_per_s(self) -> float:
        return len(self.answered) / self.window_s

    @property
    def refused_per_s(self) -> float:
        return self.refusals / self.window_s


async def retrying_closed_loop(
    endpoint: Endpoint,
    requests: Sequence[EncodedRequest],
    clients: int,
    window_s: float,
    policy: RetryPolicy,
    seed: int = 0,
    timeout_s: float = 60.0,
) -> Population:
    """``clients`` closed loops for ``window_s``; requests cycle through ``requests``."""
    if not requests or clients < 1 or not window_s > 0:
        raise ValueError(f"need requests, clients >= 1 and window_s > 0, got {len(requests)}, {clients}, {window_s}")
    seen = Population(window_s)
    end = time.perf_counter() + window_s
    rng = random.Random(seed)

    async def client(index: int) -> None:
        conn: Connection | None = None
        n = index
        while time.perf_counter() < end:
            request = requests[n % len(requests)]
            n += clients
            first = time.perf_counter()
            while time.perf_counter() < end:
                try:
                    conn = conn if conn is not None and not conn.closed else await Connection.open(endpoint)
                    sent = time.perf_counter()
                    response = await conn.send(request, timeout_s)
                except (OSError, TimeoutError, ProtocolError):
                    seen.errors += 1
                    conn = None
                    break
                done = time.perf_counter()
                if response.status in REFUSALS:
                    if done < end:
                        seen.refusals += 1
                    await asyncio.sleep(
                        min(policy.pause_s(response.headers.get("retry-after"), rng), max(0.0, end - done))
                    )
                    continue
                if done <= end:
                    if 200 <= response.status < 300:
                        seen.answered.append(done - sent)
                        seen.requests.append(done - first)
                    else:
                        seen.errors += 1
                break
        if conn is not None:
            conn.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return seen

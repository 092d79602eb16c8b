"""A small Python client of servoscope's JSON API, sync (:class:`Client`) and async (:class:`AsyncClient`).

::

    from servoscope.client import Client
    with Client("http://127.0.0.1:8000") as client:
        answer = client.classify("cat.jpg", top_k=3, deadline_s=2.0)
        print(answer.predictions[0].label)

- ``classify`` takes a file path or the image's bytes; the content type is read from the bytes.
- Refusals (429, 503) are retried after the server's ``Retry-After``, jittered up to half as long
  again, at most ``RetryPolicy.attempts`` times — and only while the retry budget allows: each
  request earns ``budget_ratio`` of a retry, each retry spends one, so that under overload retries
  add at most that share of load (a steady allowance of ``budget_min`` retries is always there).
- A deadline (``deadline_s``) is sent as ``X-Request-Timeout`` with what remains of it on each
  attempt; no retry is made that would start after it.
- Errors are servoscope's own exception tree (``servoscope.errors``), chosen by status; a refusal
  left unretried is ``Overloaded`` or ``Unavailable`` with the server's ``retry_after_s``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from servoscope import errors

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_MODEL = "efficientnet_lite0"
Image = bytes | str | Path  # the encoded image, or the path of its file
ERRORS: dict[int, type[errors.ServoscopeError]] = {
    400: errors.RequestError,
    404: errors.ModelNotFound,
    408: errors.RequestTimeout,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    504: errors.DeadlineExceeded,
}
RETRYABLE: dict[int, type[errors.Overloaded] | type[errors.Unavailable]] = {
    429: errors.Overloaded,
    503: errors.Unavailable,
}


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    index: int
    score: float


@dataclass(frozen=True, slots=True)
class Answer:
    model: str
    version: str
    predictions: tuple[Prediction, ...]
    batch_size: int
    timings_ms: dict[str, float]
    attempts: int  # 1 when answered first time


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # at most, the first one included
    budget_ratio: float = 0.2  # retries earned per request
    budget_min: float = 3.0  # retries always allowed (the budget's starting and lowest cap)
    budget_max: float = 20.0
    jitter: float = 0.5  # a retry waits Retry-After × (1 + up to this)


class RetryBudget:
    """Retries allowed so far: each request earns ``ratio`` of one, each retry spends one."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.tokens = policy.budget_min

    def requested(self) -> None:
        self.tokens = min(self.policy.budget_max, self.tokens + self.policy.budget_ratio)

    def spend(self) -> bool:
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def media_type(data: bytes) -> str:
    """The content type of an encoded image, from its first bytes."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise errors.UnsupportedMediaType("not a JPEG, PNG or WebP image (judged from its first bytes)")


def image_bytes(image: Image) -> bytes:
    return image if isinstance(image, bytes) else Path(image).read_bytes()


def answer_of(response: httpx.Response, attempts: int) -> Answer:
    if response.status_code != 200:
        raise error_of(response)
    body: dict[str, Any] = response.json()
    predictions = tuple(Prediction(p["label"], p["index"], p["score"]) for p in body["predictions"])
    return Answer(body["model"], body["version"], predictions, body["batch_size"], body["timings_ms"], attempts)


def error_of(response: httpx.Response) -> errors.ServoscopeError:
    try:
        message = str(response.json().get("error", response.text))
    except ValueError:
        message = response.text or f"HTTP {response.status_code}"
    status = response.status_code
    if status in RETRYABLE:
        return RETRYABLE[status](message, retry_delay_s(response))
    return ERRORS.get(status, errors.ServoscopeError)(message)


def retry_delay_s(response: httpx.Response) -> float:
    """The server's ``Retry-After`` (seconds; 1 when absent or not a number)."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


class _Core:
    """What the sync and async clients share: the request, the retry decision, the deadline."""

    def __init__(self, model: str, policy: RetryPolicy, rng: random.Random, now: Callable[[], float]) -> None:
        self.model, self.policy, self.rng, self.now = model, policy, rng, now
        self.budget = RetryBudget(policy)

    def request(self, data: bytes, top_k: int | None, deadline: float | None, priority: str | None) -> dict[str, Any]:
        headers = {"Content-Type": media_type(data)}
        if deadline is not None:
            remaining_s = deadline - self.now()
            if remaining_s <= 0:
                raise errors.DeadlineExceeded("the deadline passed before the request could be sent")
            headers["X-Request-Timeout"] = f"{remaining_s * 1000:.3f}"
        if priority is not None:
            headers["X-Priority"] = priority
        params = {"top_k": top_k} if top_k is not None else {}
        return {"url": f"/v1/models/{self.model}/classify", "content": data, "headers": headers, "params": params}

    def retry_after(self, response: httpx.Response, attempt: int, deadline: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None when this answer is final."""
        if response.status_code not in RETRYABLE or attempt >= self.policy.attempts:
            return None
        delay_s = retry_delay_s(response) * (1 + self.rng.uniform(0, self.policy.jitter))
        if deadline is not None and self.now() + delay_s >= deadline:
            return None
        return delay_s if self.budget.spend() else None


class Client:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        model: str = DEFAULT_MODEL,
        timeout_s: float = 30.0,
        policy: RetryPolicy = RetryPolicy(),
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)
        self.core = _Core(model, policy, rng or random.Random(), time.monotonic)
        self.sleep = sleep

    def classify(
        self, image: Image, top_k: int | None = None, deadline_s: float | None = None, priority: str | None = None
    ) -> Answer:
        data, core = image_bytes(image), self.core
        deadline = core.now() + deadline_s if deadline_s is not None else None
        core.budget.requested()
        attempt = 1
        while True:
            response = self.http.request("POST", **core.request(data, top_k, deadline, priority))
            delay_s = core.retry_after(response, attempt, deadline)
            if delay_s is None:
                return answer_of(response, attempt)
            self.sleep(delay_s)
            attempt += 1

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        model: str = DEFAULT_MODEL,
        timeout_s: float = 30.0,
        policy: RetryPolicy = RetryPolicy(),
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)
        self.core = _Core(model, policy, rng or random.Random(), time.monotonic)

    async def classify(
        self, image: Image, top_k: int | None = None, deadline_s: float | None = None, priority: str | None = None
    ) -> Answer:
        data, core = image_bytes(image), self.core
        deadline = core.now() + deadline_s if deadline_s is not None else None
        core.budget.requested()
        attempt = 1
        while True:
            response = await self.http.request("POST", **core.request(data, top_k, deadline, priority))
            delay_s = core.retry_after(response, attempt, deadline)
            if delay_s is None:
                return answer_of(response, attempt)
            await asyncio.sleep(delay_s)
            attempt += 1

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

"""Evidence from a live service: its ``/v1/stats`` document, saved with where and when it was read.

A saved snapshot is ``{"url", "taken_at", "time", "model", "stats"}``; ``evidence.from_document``
reads it like a drill snapshot (the ``/v1/stats`` document under ``"stats"``). The document is
read through its types before it is saved, so a snapshot always holds the current version of it.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx

from servoscope.doctor.evidence import EvidenceError, stats_document
from servoscope.telemetry.document import StatsDocument

STATS_PATH = "/v1/stats"
TIMEOUT_S = 10.0


class LiveError(OSError):
    """The service could not be read (unreachable, or not a 2xx JSON answer)."""


def fetch_stats(url: str, timeout_s: float = TIMEOUT_S, transport: httpx.BaseTransport | None = None) -> StatsDocument:
    """The service's ``/v1/stats`` document; LiveError if it cannot be had, EvidenceError (naming the
    field at fault) if it is not one."""
    try:
        with httpx.Client(base_url=url, timeout=timeout_s, transport=transport) as client:
            response = client.get(STATS_PATH)
    except httpx.HTTPError as exc:
        raise LiveError(f"cannot read {url.rstrip('/')}{STATS_PATH}: {exc}") from exc
    if response.status_code != 200:
        raise LiveError(f"{url.rstrip('/')}{STATS_PATH} answered {response.status_code}: {response.text[:200]}")
    try:
        doc = response.json()
    except ValueError as exc:
        raise EvidenceError(f"{url.rstrip('/')}{STATS_PATH} is not JSON: {exc}") from exc
    return stats_document(doc)[0]


def snapshot(url: str, model: str | None = None, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """A snapshot of the live service: its stats (only ``model``'s if given) plus the URL and time."""
    stats = fetch_stats(url, timeout_s)
    if model is not None:
        if model not in stats.models:
            raise EvidenceError(f"model {model!r} not served at {url}; it serves {sorted(stats.models)}")
        stats = stats.model_copy(update={"models": {model: stats.models[model]}})
    now = time.time()
    return {
        "url": url,
        "taken_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
        "time": now,
        "model": model,
        "stats": stats.to_json(),
    }

"""The fleet view: every replica's ``/v1/stats``, merged from their sketches, with gray replicas named.

A fleet snapshot (``servoscope snapshot --replica URL --replica URL …``) is a snapshot as
``servoscope snapshot --url`` writes it — the merged fleet's document under ``"stats"``, so the
doctor reads it like any other — plus ``"replicas"`` (each replica's own document, by URL) and
``"outliers"`` (the replicas the gray-replica test flags on the snapshot's window, with its figures).

:func:`watch` runs the sequential test live: it reads each replica's ``lifetime_total`` sketch
every ``interval_s`` and feeds the detector the requests answered in between.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from servoscope.doctor import live
from servoscope.doctor.evidence import EvidenceError
from servoscope.fleet.merge import MergeError, merge
from servoscope.fleet.outliers import DEFAULT_RULE, Flag, GrayDetector, OutlierRule, on_window
from servoscope.telemetry import sketchwire
from servoscope.telemetry.document import StatsDocument

MAX_REPLICAS = 64
OUTLIER_WINDOW = "1m"  # the window a fleet snapshot tests
WATCH_INTERVAL_S = 5.0  # between reads of the live test
MAX_WATCH_S = 3600.0


def read_replicas(urls: Sequence[str], model: str | None = None) -> dict[str, StatsDocument]:
    """Each replica's document, by URL (only ``model``, when given); LiveError or EvidenceError name the replica."""
    if not urls or len(urls) > MAX_REPLICAS or len(set(urls)) != len(urls):
        raise EvidenceError(f"name 1 to {MAX_REPLICAS} distinct replicas, got {list(urls)}")
    docs = {}
    for url in urls:
        doc = live.fetch_stats(url)
        if model is not None:
            if model not in doc.models:
                raise EvidenceError(f"model {model!r} not served at {url}; it serves {sorted(doc.models)}")
            doc = doc.model_copy(update={"models": {model: doc.models[model]}})
        docs[url] = doc
    return docs


def fleet_snapshot(
    urls: Sequence[str], model: str | None = None, watch_s: float = 0.0, wait: Callable[[], None] | None = None
) -> dict[str, Any]:
    """The fleet snapshot; with ``watch_s``, first the live test for up to that long (reads every
    ``WATCH_INTERVAL_S``, or after each ``wait()``), its flags kept under ``"watched"``."""
    if not 0 <= watch_s <= MAX_WATCH_S:
        raise EvidenceError(f"watch for 0 to {MAX_WATCH_S:g} s, got {watch_s:g}")
    watched = _watched(urls, model, watch_s, wait or (lambda: time.sleep(WATCH_INTERVAL_S))) if watch_s else None
    docs = read_replicas(urls, model)
    try:
        merged = merge(docs)
        flags = [(m, flag) for m in merged.models for flag in on_window(docs, m, OUTLIER_WINDOW)]
    except (MergeError, sketchwire.SketchError) as exc:
        raise EvidenceError(f"the replicas' documents cannot be merged: {exc}") from None
    now = time.time()
    return {
        "url": "fleet of " + ", ".join(urls),
        "taken_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
        "time": now,
        "model": model,
        "stats": merged.to_json(),
        "replicas": {url: doc.to_json() for url, doc in docs.items()},
        "outliers": [{"model": m, **dataclasses.asdict(f)} for m, f in flags],
        **({"watched": watched} if watched is not None else {}),
    }


def _watched(urls: Sequence[str], model: str | None, watch_s: float, wait: Callable[[], None]) -> dict[str, Any]:
    """The live test on ``model`` (default: the model the fleet answered most for since start)."""
    if model is None:
        counts: dict[str, float] = {}
        for doc in read_replicas(urls).values():
            for name, entry in doc.models.items():
                text = entry.lifetime_total
                counts[name] = counts.get(name, 0.0) + (sketchwire.decode(text).count if text else 0.0)
        if not counts:
            raise EvidenceError("the replicas serve no model to watch")
        model = max(counts, key=lambda name: counts[name])
    updates = max(1, round(watch_s / WATCH_INTERVAL_S))
    flags = watch(lambda: read_replicas(urls, model), model, updates, wait)
    return {"model": model, "seconds": watch_s, "flags": [dataclasses.asdict(f) for f in flags]}


def watch(
    read: Callable[[], Mapping[str, StatsDocument]],
    model: str,
    updates: int,
    wait: Callable[[], None],
    rule: OutlierRule = DEFAULT_RULE,
) -> list[Flag]:
    """Up to ``updates`` updates of the sequential test: ``read()`` the replicas' documents, feed the
    requests each answered since the last read, ``wait()`` between; stops at the first flag. A
    replica whose sketch shrank (it restarted) starts again from its new sketch."""
    detector = GrayDetector(rule)
    last: dict[str, Any] = {}
    for _ in range(updates):
        intervals = {}
        for url, doc in read().items():
            text = doc.models[model].lifetime_total if model in doc.models else None
            if text is None:
                continue
            now = sketchwire.decode(text)
            try:
                intervals[url] = sketchwire.subtract(now, last[url]) if url in last else None
            except sketchwire.SketchError:
                intervals[url] = None
            last[url] = now
        flags = detector.update({url: s for url, s in intervals.items() if s is not None})
        if flags:
            return flags
        wait()
    return []

"""Where a fleet's regression lives: in one replica, or in the whole fleet.

Read from a fleet snapshot (``servoscope snapshot --replica …``): each replica's own document
is kept there, so the gray-replica test (:mod:`servoscope.fleet.outliers`) is run on the
snapshot's window — each replica's requests against the rest of the fleet's pooled P95. A
flagged replica is named ("one replica: URL"); none flagged means the fleet moved together
("the whole fleet"), and the doctor's diagnosis of the merged document applies to every replica.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servoscope.fleet.outliers import on_window
from servoscope.telemetry import document


@dataclass(frozen=True)
class Scope:
    kind: str  # "one replica", "some replicas" or "the whole fleet"
    replicas: tuple[str, ...]  # the flagged ones
    p95_s: dict[str, float]  # each replica's total P95 on the window
    summary: str


def scope(snapshot: Mapping[str, Any], model: str, window: str = "1m") -> Scope | None:
    """The scope of the regression for a fleet snapshot; None for a snapshot of one service."""
    raw = snapshot.get("replicas")
    if not isinstance(raw, Mapping) or not raw:
        return None
    docs = {url: document.read(doc) for url, doc in raw.items()}
    if any(window not in doc.windows_s for doc in docs.values()):
        raise ValueError(f"a replica's document has no window {window!r}")
    p95 = {}
    for url, doc in docs.items():
        total = doc.models[model].windows[window].stages["total"] if model in doc.models else None
        if total is not None:
            p95[url] = total.p95
    flagged = tuple(f.replica for f in on_window(docs, model, window))
    if not flagged:
        return Scope("the whole fleet", (), p95, f"the whole fleet: no replica of {len(docs)} stands out from the rest")
    kind = "one replica" if len(flagged) == 1 else "some replicas"
    said = ", ".join(f"{url} (P95 {1000 * p95.get(url, float('nan')):.0f} ms)" for url in flagged)
    others = [v for url, v in p95.items() if url not in flagged]
    rest = f"; the other {len(others)} at P95 ≤ {1000 * max(others):.0f} ms" if others else ""
    return Scope(kind, flagged, p95, f"{kind}: {said}{rest}")

"""One ``/v1/stats`` document for a fleet, merged from its replicas' documents.

Distributions are merged from each replica's sketches (the document's ``sketches``), never by
averaging percentiles: the fleet's P95 is the P95 of every request the fleet answered, within the
sketches' 1% relative accuracy. The other fields merge by what they mean:

- rates, counts, queues, instances, preprocess workers: summed;
- a summary's ``mean``: the count-weighted mean of the replicas' (exact); ``max``: the largest;
- ``covered_s``: the least any replica covers; ``busy_ratio``: every replica's instances, named
  ``"<replica>/<instance>"``;
- event-loop lag (one per process, not per request): the replica with the highest P95's;
- system means: the mean over replicas that sampled; the latest machine and GPU readings: none
  (they belong to one machine each; the replicas' documents keep them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TypeVar

from servoscope.telemetry import sketchwire
from servoscope.telemetry.document import (
    SCHEMA_VERSION,
    Batches,
    Deployment,
    ModelDeployment,
    ModelStats,
    ModelWindow,
    Preprocess,
    Queues,
    StatsDocument,
    Summary,
    SystemMeans,
    Throughput,
)
from servoscope.telemetry.windows import QUANTILES

K = TypeVar("K")


class MergeError(ValueError):
    """Documents that cannot be merged exactly (no sketches, or windows that differ)."""


def merge(docs: Mapping[str, StatsDocument]) -> StatsDocument:
    """The fleet's document from each replica's (by replica name, e.g. its URL)."""
    if not docs:
        raise MergeError("no replica documents to merge")
    first = next(iter(docs.values()))
    for name, doc in docs.items():
        if (doc.windows_s, doc.windows_ago_s, doc.stages) != (first.windows_s, first.windows_ago_s, first.stages):
            raise MergeError(f"replica {name} keeps other windows or stages than the first replica")
    models = sorted({m for doc in docs.values() for m in doc.models})
    return StatsDocument(
        schema_version=SCHEMA_VERSION,
        time=max(doc.time for doc in docs.values()),
        windows_s=first.windows_s,
        windows_ago_s=first.windows_ago_s,
        stages=first.stages,
        models={m: _model(m, {n: d.models[m] for n, d in docs.items() if m in d.models}) for m in models},
        preprocess=Preprocess(
            queue=sum(d.preprocess.queue for d in docs.values()),
            busy=sum(d.preprocess.busy for d in docs.values()),
            workers=sum(d.preprocess.workers for d in docs.values()),
        ),
        ingesting=_sum_known([d.ingesting for d in docs.values()]),
        event_loop_lag_s={
            label: _worst([d.event_loop_lag_s[label] for d in docs.values()]) for label in first.windows_s
        },
        system_means={label: _means([d.system_means[label] for d in docs.values()]) for label in first.windows_s},
        system=None,
        gpu=None,
        deployment=_deployment([d.deployment for d in docs.values()]),
    )


def _deployment(parts: Sequence[Deployment]) -> Deployment:
    """What every replica runs alike: a version, setting or model that differs between replicas is
    unknown in the fleet's (a rollout in progress shows as such); the start is the latest restart."""
    first = parts[0]
    started = [p.process_started for p in parts if p.process_started is not None]
    return Deployment(
        servoscope_version=first.servoscope_version
        if all(p.servoscope_version == first.servoscope_version for p in parts)
        else None,
        packages={k: v for k, v in first.packages.items() if all(p.packages.get(k) == v for p in parts)},
        process_id=None,  # one per replica
        process_started=max(started) if len(started) == len(parts) else None,
        settings={k: v for k, v in first.settings.items() if all(p.settings.get(k) == v for p in parts)},
        models={
            m: d.model_copy(update={"instance_pids": ()})
            for m, d in first.models.items()
            if all(_alike(p.models.get(m), d) for p in parts)
        },
    )


def _alike(a: ModelDeployment | None, b: ModelDeployment) -> bool:
    """The same model deployment, but for the processes running it."""
    return a is not None and a.model_copy(update={"instance_pids": ()}) == b.model_copy(update={"instance_pids": ()})


def _model(model: str, parts: Mapping[str, ModelStats]) -> ModelStats:
    labels = next(iter(parts.values())).windows
    lifetimes = [p.lifetime_total for p in parts.values()]
    return ModelStats(
        queues=Queues(
            pending=sum(p.queues.pending for p in parts.values()),
            batch_queue=sum(p.queues.batch_queue for p in parts.values()),
            batches_in_flight=sum(p.queues.batches_in_flight for p in parts.values()),
            concurrency_limit=_sum_known([p.queues.concurrency_limit for p in parts.values()]),
        ),
        instances=sum(p.instances for p in parts.values()),
        windows={label: _window(model, label, {n: p.windows[label] for n, p in parts.items()}) for label in labels},
        lifetime_total=None if None in lifetimes else _encoded(lifetimes),  # type: ignore[arg-type]
        variant=next((p.variant for p in parts.values() if p.variant), ""),  # a rollout on some replicas: theirs
    )


def _window(model: str, label: str, parts: Mapping[str, ModelWindow]) -> ModelWindow:
    windows = list(parts.values())
    sketches: dict[str, str] = {}
    for series in {s for w in windows for s in w.sketches}:
        sketches[series] = _encoded([w.sketches[series] for w in windows if series in w.sketches])

    def summary(series: str, of: Sequence[Summary | None]) -> Summary | None:
        present = [(n, s) for n, s in zip(parts, of) if s is not None]
        if not present:
            return None
        lacking = [n for n, _ in present if series not in parts[n].sketches]
        if lacking:
            raise MergeError(
                f"replica {lacking[0]} has no sketch of {model} {series} in window {label} (a version 1 document?): "
                "its percentiles cannot be merged exactly"
            )
        return _summary(sketches[series], [s for _, s in present])

    stages = {stage: summary(stage, [w.stages[stage] for w in windows]) for stage in windows[0].stages}
    return ModelWindow(
        covered_s=min(w.covered_s for w in windows),
        stages=stages,
        delivery=summary("delivery", [w.delivery for w in windows]),
        throughput=_throughput([w.throughput for w in windows]),
        batches=_batches([w.batches for w in windows]),
        busy_ratio={f"{n}/{i}": r for n, w in parts.items() for i, r in w.busy_ratio.items()},
        input_bytes=summary("input_bytes", [w.input_bytes for w in windows]),
        input_pixels=summary("input_pixels", [w.input_pixels for w in windows]),
        sketches=sketches,
    )


def _encoded(texts: list[str]) -> str:
    sketch = sketchwire.merged(texts)
    assert sketch is not None
    return sketchwire.encode(sketch)


def _summary(encoded: str, parts: Sequence[Summary]) -> Summary:
    sketch = sketchwire.decode(encoded)
    count = sum(p.count for p in parts)
    quantiles = {f"p{q * 100:g}": float(sketch.get_quantile_value(q) or 0.0) for q in QUANTILES}
    mean = sum(p.mean * p.count for p in parts) / count if count else 0.0
    return Summary(count=count, **quantiles, mean=mean, max=max(p.max for p in parts))


def _throughput(parts: Sequence[Throughput]) -> Throughput:
    return Throughput(
        arrived_per_s=sum(p.arrived_per_s for p in parts),
        answered_per_s=sum(p.answered_per_s for p in parts),
        ok_per_s=sum(p.ok_per_s for p in parts),
        errors_per_s=sum(p.errors_per_s for p in parts),
        refused_per_s=sum(p.refused_per_s for p in parts),
        by_code=_added([p.by_code for p in parts]),
        refused_by_reason=_added([p.refused_by_reason for p in parts]),
    )


def _batches(parts: Sequence[Batches]) -> Batches:
    sizes = _added([p.size_counts for p in parts])
    total = sum(sizes.values())
    return Batches(
        per_s=sum(p.per_s for p in parts),
        mean_size=sum(int(s) * n for s, n in sizes.items()) / total if total else None,
        size_counts=dict(sorted(sizes.items(), key=lambda kv: int(kv[0]))),
    )


def _added(tables: Sequence[Mapping[K, float]]) -> dict[K, float]:
    total: Counter[K] = Counter()
    for table in tables:
        total.update(table)
    return dict(total)


def _sum_known(values: Sequence[int | None]) -> int | None:
    return None if None in values else sum(v for v in values if v is not None)


def _worst(summaries: Sequence[Summary | None]) -> Summary | None:
    present = [s for s in summaries if s is not None]
    return max(present, key=lambda s: s.p95) if present else None


def _means(parts: Sequence[SystemMeans]) -> SystemMeans:
    out: dict[str, float | None] = {}
    for name in SystemMeans.model_fields:
        values = [getattr(p, name) for p in parts if getattr(p, name) is not None]
        out[name] = sum(values) / len(values) if values else None
    return SystemMeans(**out)

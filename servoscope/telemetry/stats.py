"""Computes the ``/v1/stats`` document (typed in :mod:`servoscope.telemetry.document`): rolling
percentiles per model and stage, rates, queues, busy ratios, batch sizes, input sizes, event-loop
lag, and the system and GPU readings. All times in seconds.

The doctor and the dashboard read this (and nothing of the service's internals).
"""

from __future__ import annotations

import time

from servoscope.pipeline.gauges import Gauges
from servoscope.stages import STAGE_NAMES
from servoscope.telemetry.document import (
    SCHEMA_VERSION,
    UNKNOWN_DEPLOYMENT,
    Batches,
    Deployment,
    ModelStats,
    ModelWindow,
    Preprocess,
    Queues,
    StatsDocument,
    Summary,
    SystemMeans,
    Throughput,
)
from servoscope.telemetry.monitor import Readings
from servoscope.telemetry.recorder import DELIVERY, Telemetry
from servoscope.telemetry.sketchwire import encode
from servoscope.telemetry.windows import summary

SERIES: tuple[str, ...] = (*STAGE_NAMES, DELIVERY, "input_bytes", "input_pixels")  # what a window sketches

WINDOWS_S: dict[str, float] = {"1m": 60.0, "5m": 300.0, "before": 240.0}
# How far back each window ends: "before" is the four minutes before the last one — a baseline
# for the "1m" window taken from the same document (``servoscope doctor --baseline-window before``).
WINDOWS_AGO_S: dict[str, float] = {"1m": 0.0, "5m": 0.0, "before": 60.0}


def _summary(t: Telemetry, key: tuple[str, str], window_s: float, ago_s: float) -> Summary | None:
    found = summary(t.sketches.merged(key, window_s, ago_s))
    return None if found is None else Summary(**found)


def model_window(t: Telemetry, model: str, instances: int, window_s: float, ago_s: float = 0.0) -> ModelWindow:
    covered = t.counts.covered_s(window_s, ago_s)
    merged = {series: t.sketches.merged((model, series), window_s, ago_s) for series in SERIES}

    def of(series: str) -> Summary | None:
        found = summary(merged[series])
        return None if found is None else Summary(**found)

    codes: dict[str, float] = {}
    refused: dict[str, float] = {}
    sizes: dict[str, float] = {}
    for key in t.counts.keys(window_s, ago_s):
        kind, name = key[0], key[1]
        if name != model:
            continue
        total = t.counts.total(key, window_s, ago_s)
        if kind == "code":
            codes[key[2]] = total
        elif kind == "refused":
            refused[key[2]] = total
        elif kind == "batch_size":
            sizes[str(key[2])] = total
    answered = sum(codes.values())
    ok = sum(n for code, n in codes.items() if code.startswith("2"))
    batches = sum(sizes.values())
    return ModelWindow(
        covered_s=covered,
        stages={stage: of(stage) for stage in STAGE_NAMES},
        delivery=of(DELIVERY),
        throughput=Throughput(
            # demand: from the first arrival to the last in the window (see Rolling.event_rate)
            arrived_per_s=t.counts.event_rate(("arrived", model), window_s, ago_s),
            answered_per_s=answered / covered,
            ok_per_s=ok / covered,
            errors_per_s=(answered - ok) / covered,
            refused_per_s=sum(refused.values()) / covered,
            by_code=codes,
            refused_by_reason=refused,
        ),
        batches=Batches(
            per_s=batches / covered,
            mean_size=sum(int(s) * n for s, n in sizes.items()) / batches if batches else None,
            size_counts=dict(sorted(sizes.items(), key=lambda kv: int(kv[0]))),
        ),
        busy_ratio={str(i): t.busy_ratio(model, i, window_s, ago_s) for i in range(instances)},
        input_bytes=of("input_bytes"),
        input_pixels=of("input_pixels"),
        sketches={series: encode(sketch) for series, sketch in merged.items() if sketch is not None and sketch.count},
    )


def stats(
    t: Telemetry, gauges: Gauges, readings: Readings, ingesting: int = 0, deployment: Deployment = UNKNOWN_DEPLOYMENT
) -> StatsDocument:
    models = {
        name: ModelStats(
            queues=Queues(
                pending=g.pending,
                batch_queue=g.batch_queue,
                batches_in_flight=g.batches_in_flight,
                concurrency_limit=g.concurrency_limit,
            ),
            instances=g.instances,
            windows={
                label: model_window(t, name, g.instances, seconds, WINDOWS_AGO_S[label])
                for label, seconds in WINDOWS_S.items()
            },
            lifetime_total=encode(t.lifetime[name]) if name in t.lifetime else None,
            variant=t.metrics.variant_of(name),
        )
        for name, g in gauges.models.items()
    }
    return StatsDocument(
        schema_version=SCHEMA_VERSION,
        time=time.time(),
        windows_s=WINDOWS_S,
        windows_ago_s=WINDOWS_AGO_S,
        stages=STAGE_NAMES,
        models=models,
        preprocess=Preprocess(
            queue=gauges.preprocess_queue, busy=gauges.preprocess_busy, workers=gauges.preprocess_workers
        ),
        ingesting=ingesting,
        event_loop_lag_s={
            label: _summary(t, ("event_loop", "lag"), seconds, WINDOWS_AGO_S[label])
            for label, seconds in WINDOWS_S.items()
        },
        system_means={label: _means(t, seconds, WINDOWS_AGO_S[label]) for label, seconds in WINDOWS_S.items()},
        system=readings.system,
        gpu=readings.gpu,
        deployment=deployment,
    )


def _means(t: Telemetry, window_s: float, ago_s: float) -> SystemMeans:
    found = t.system_means(window_s, ago_s)
    return SystemMeans(**{**dict.fromkeys(SystemMeans.model_fields), **found})  # a mean it does not name: an error

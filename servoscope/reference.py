"""The settings and metrics references, generated from the code (docs/reference.md is its output,
and a test keeps the two equal): ``python -m servoscope.reference > docs/reference.md``."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry

from servoscope.clock import ManualClock
from servoscope.pipeline.batcher import InstanceRestart
from servoscope.pipeline.gauges import Gauges, ModelGauges
from servoscope.settings import Settings
from servoscope.stages import STAGES, BatchRecord, Timing
from servoscope.telemetry.live import LiveCollector
from servoscope.telemetry.monitor import Readings
from servoscope.telemetry.recorder import Telemetry


def _default(value: Any) -> str:
    if hasattr(value, "model_dump"):
        value = {k: v for k, v in value.model_dump(mode="json").items() if v is not None} or "none"
    return f"`{json.dumps(value, default=str)}`"


def settings_table() -> str:
    rows = ["| setting | env | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        env = f"SERVOSCOPE_{name.upper()}"
        rows.append(f"| `{name}` | `{env}` | {_default(field.default)} | {field.description or ''} |")
    return "\n".join(rows)


def metrics_table() -> str:
    telemetry = Telemetry(ManualClock(), CollectorRegistry())
    served = Timing(0.0, model="m", status=200, error="", input_bytes=1, input_pixels=1, delivery_s=0.0)
    for stage in STAGES:
        served.end(stage, 0.0)
    telemetry.record(served)  # one of each record, so every labelled series shows its labels
    telemetry.record(Timing(0.0, model="m", status=429, error="reason"))
    telemetry.record_batch(BatchRecord("m", 0, 0.0, 0.0, 0.0, (served,)))
    telemetry.record_restart(InstanceRestart("m", 0, ""))
    telemetry.record_loop_lag(0.0)
    gauges = Gauges(0, 0, 1, {"m": ModelGauges(0, 1, 1, 0, 1, 0, 1)})
    telemetry.registry.register(LiveCollector(telemetry, lambda: gauges, Readings(), lambda: 0))
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for family in sorted(telemetry.registry.collect(), key=lambda f: f.name):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = sorted({k for s in family.samples for k in s.labels if k != "le"})
        rows.append(f"| `{name}` | {family.type} | {', '.join(labels) or '—'} | {family.documentation} |")
    return "\n".join(rows)


def reference() -> str:
    return (
        "# servoscope reference\n\n"
        "Generated from the code by `python -m servoscope.reference`; a test keeps this file up to date.\n\n"
        "## Settings\n\nDefaults < TOML file (`--config`, `SERVOSCOPE_CONFIG`) < environment < flags. "
        "Nested fields take `__` in the environment (`SERVOSCOPE_MODEL_OVERRIDES__MAX_BATCH_SIZE=8`).\n\n"
        f"{settings_table()}\n\n"
        "## Metrics\n\nServed at `GET /metrics`. Labelled series appear once they have a value; system and GPU "
        "gauges once the first reading is taken.\n\n"
        f"{metrics_table()}\n"
    )


if __name__ == "__main__":
    print(reference(), end="")

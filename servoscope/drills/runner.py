"""A drill end to end: capacity → baseline window → one degradation → degraded window → restore
→ report. Each window runs on a freshly started service, so the 1 min stats window holds that
window's traffic and nothing else; neighbours live only around the degraded window."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from servoscope.drills import neighbours as nb
from servoscope.drills.placement import Placement, place, profile_replica
from servoscope.drills.report import model_window, write_report
from servoscope.drills.scenarios import Context, Scenario
from servoscope.drills.service import running
from servoscope.drills.traffic import measure_capacity, mixed_images
from servoscope.drills.window import measure
from servoscope.models.prepare import DEFAULT_MODEL


@dataclass(frozen=True, slots=True)
class Form:
    """How long the drill's parts run."""

    name: str
    capacity_concurrencies: tuple[int, ...]
    capacity_step_s: float
    window_s: float
    profile_s: float  # the planner's profile, for a placed baseline

    @classmethod
    def of(cls, short: bool) -> Form:
        if short:
            return cls("short", (1, 4, 16), 1.5, 8.0, 4.0)
        return cls("full", (1, 2, 4, 8, 16, 32), 5.0, 90.0, 20.0)


Progress = Callable[[str], None]


def stage_p95_s(window: dict[str, Any]) -> dict[str, float]:
    return {name: s["p95"] for name, s in model_window(window)["stages"].items() if s}


def run_drill(
    scenario: Scenario, repository: Path, out_dir: Path, short: bool, say: Progress = print
) -> dict[str, Any]:
    form = Form.of(short)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(f"drill {scenario.name} ({form.name}): {scenario.changes}")
    images = mixed_images(scenario.mix)
    placement = placed(repository, images, form, say) if scenario.placed else None
    with running(repository, scenario.baseline_flags, out_dir / "service-capacity.log") as service:
        capacity = measure_capacity(service.endpoint, images, form.capacity_concurrencies, form.capacity_step_s)
    if placement is not None:
        capacity = replace(capacity, placed_rps=placement.fraction * capacity.max_rps, placement=placement.to_json())
    say(f"  capacity {capacity.max_rps:.1f} req/s; knee {capacity.knee_rps:.1f} req/s")
    traffic = scenario.baseline_traffic(capacity, form.window_s)
    with running(repository, scenario.baseline_flags, out_dir / "service-baseline.log") as service:
        baseline, _ = measure(service, traffic, [])
    say(f"  baseline: {traffic.describe()}")
    ctx = Context(capacity, traffic, stage_p95_s(baseline), short, form.window_s)
    change = scenario.degrade(ctx)
    flags = scenario.baseline_flags if change.same_config else scenario.baseline_flags + change.flags
    say(f"  degraded: {change.what}")
    with (
        running(repository, flags, out_dir / "service-degraded.log") as service,
        nb.running(change.neighbours) as neighbours,
    ):
        degraded, _ = measure(service, change.traffic or traffic, neighbours.pids)
    restored = restore(repository, scenario, out_dir, degraded["neighbour_pids"])
    for name, doc in (("baseline", baseline), ("degraded", degraded)):
        (out_dir / f"{name}.json").write_text(json.dumps(doc, indent=1))
    report = write_report(
        scenario, change, capacity, baseline, degraded, restored, out_dir, form.name, time.monotonic() - started
    )
    say(f"  report: {out_dir / 'report.md'} ({report['elapsed_s']:.0f} s)")
    return report


def placed(repository: Path, images: list[bytes], form: Form, say: Progress) -> Placement:
    """The planner's baseline for the service's default configuration, profiled here and now."""
    replica = profile_replica(repository, images, form.profile_s, lambda _: None)
    placement = place(replica, form.window_s)
    say(
        f"  planner: saturation {placement.saturation_per_s:.1f} req/s in process, knee at "
        f"{placement.knee_fraction:.2f}; baseline at {placement.fraction:.2f} of saturation "
        f"(window P95 {placement.p95_ms[0]:.0f} → {placement.p95_ms[1]:.0f} ms at +15%)"
    )
    return placement


def restore(repository: Path, scenario: Scenario, out_dir: Path, neighbour_pids: list[int]) -> dict[str, Any]:
    """Neighbours gone, and the service back on its baseline configuration (started and checked)."""
    with running(repository, scenario.baseline_flags, out_dir / "service-restored.log") as service:
        config = service.json("/v1/config")
    return {
        "neighbours_alive": [pid for pid in neighbour_pids if nb.alive(pid)],
        "baseline_config_restarted": True,
        "faults": config["service"]["faults"],
        "batching": config["models"][DEFAULT_MODEL]["batching"],
        "preprocess_workers": config["service"]["preprocess_workers"],
    }

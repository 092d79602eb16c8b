"""What ``servoscope plan`` prints and writes: text lines, JSON, and a PNG of P95 against load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from servoscope.planner.fleet import FleetPlan, explain
from servoscope.planner.plan import Knee, Point, Replica
from servoscope.planner.sim import SimResult
from servoscope.planner.summary import Summary, summarize


def describe_replica(replica: Replica) -> str:
    c, b = replica.config, replica.config.batching
    preferred = f", preferred {list(b.preferred_batch_sizes)}" if b.preferred_batch_sizes else ""
    return (
        f"{c.instances} instance(s), {c.preprocess_workers} preprocess workers, max batch {b.max_batch_size}, "
        f"max queue delay {1000 * b.max_queue_delay_s:g} ms{preferred}, batch queue {b.max_queue_size}"
    )


def replica_json(replica: Replica) -> dict[str, Any]:
    return {
        "instances": replica.config.instances,
        "preprocess_workers": replica.config.preprocess_workers,
        "batching": replica.config.batching.model_dump(mode="json"),
        "mix": {name: share for name, share in zip(replica.service.classes, replica.shares) if share > 0},
    }


def config_toml(replica: Replica) -> str:
    """The settings to write into the model's ``config.toml``."""
    b = replica.config.batching
    lines = [
        "[batching]",
        f"max_batch_size = {b.max_batch_size}",
        f"max_queue_delay_s = {b.max_queue_delay_s:g}",
        f"max_queue_size = {b.max_queue_size}",
        "[instances]",
        f"count = {replica.config.instances}",
    ]
    if b.preferred_batch_sizes:
        lines.insert(3, f"preferred_batch_sizes = {list(b.preferred_batch_sizes)}")
    if replica.intra_op_threads:
        lines.append(f"intra_op_threads = {replica.intra_op_threads}")
    return "\n".join(lines)


def curve_lines(sat: float, knee: Knee | None, points: Sequence[Point]) -> list[str]:
    lines = [f"saturation: {sat:.1f} req/s per replica"]
    if knee is None:
        lines.append("knee: none below 97.5% of saturation (P95 never bends that steeply)")
    else:
        lines.append(
            f"knee: {knee.rate:.1f} req/s (ρ = {knee.fraction:.2f}), P95 {knee.p95_ms:.1f} ms there "
            f"(where P95 starts rising ≥ {knee.k:g}× its low-load value per saturation's worth of load)"
        )
    return lines


def summary_lines(s: Summary, sat: float, what: str) -> list[str]:
    stages = ", ".join(f"{name} {value:.1f}" for name, value in s.stage_mean_ms.items())
    return [
        f"at {what} (ρ = {s.offered_per_s / sat:.2f}): "
        f"P50 {s.p50_ms:.1f} ms, P95 {s.p95_ms:.1f} ms, P99 {s.p99_ms:.1f} ms",
        f"  answered {s.answered_per_s:.1f}/s of {s.offered_per_s:.1f}/s offered, refused {s.refused} of {s.requests}, "
        f"mean batch {s.mean_batch_size:.2f}, instances busy {100 * s.utilization:.0f}%",
        f"  mean per stage, ms: {stages}",
    ]


def phase_lines(result: SimResult, phases: Sequence[tuple[float, float]], sat: float) -> list[str]:
    """One line per phase of a replayed run with more than one (a step, a ramp): each phase's requests."""
    if len(phases) < 2:
        return []
    lines = ["  by phase of the run:"]
    for start, end in phases:
        s = summarize(result, warmup_s=start, end_s=end)
        lines.append(
            f"    {start:5.0f}–{end:.0f} s: {s.offered_per_s:6.1f} req/s (ρ = {s.offered_per_s / sat:.2f}): "
            f"P50 {s.p50_ms:.1f} ms, P95 {s.p95_ms:.1f} ms, P99 {s.p99_ms:.1f} ms, refused {s.refused}"
        )
    return lines


def fleet_lines(plan: FleetPlan, replica: Replica) -> list[str]:
    q = plan.question
    burst = f", burst P95 {plan.burst_p95_ms:.1f} ms" if plan.burst_p95_ms is not None else ""
    return [
        f"fleet: {plan.replicas} replicas for {q.fleet_rpm * (1 + q.growth):.0f} req/min "
        f"({q.fleet_rpm:g} {100 * q.growth:+g}%) at P95 ≤ {q.slo_p95_ms:g} ms",
        f"  each replica: {q.grown_per_s / plan.replicas:.1f} req/s, ρ = {plan.rho:.2f}, "
        f"P95 {plan.at_plan.p95_ms:.1f} ms{burst}; "
        f"headroom +{100 * plan.headroom:.0f}% before saturation"
        + (f", +{100 * _to_knee(plan):.0f}% before the knee" if plan.knee else ""),
        f"  per-replica settings ({replica.config.preprocess_workers} preprocess workers; the model's config.toml):",
        *("    " + line for line in config_toml(replica).splitlines()),
        "",
        explain(plan),
    ]


def _to_knee(plan: FleetPlan) -> float:
    assert plan.knee is not None
    return max(0.0, plan.knee.rate * plan.replicas / plan.question.grown_per_s - 1)


def knee_json(knee: Knee | None) -> dict[str, Any] | None:
    return None if knee is None else {k: float(v) for k, v in asdict(knee).items()}


def point_json(point: Point) -> dict[str, Any]:
    s = point.summary
    return {
        "fraction": float(point.fraction),
        "rate_per_s": float(point.rate),
        "p50_ms": s.p50_ms,
        "p95_ms": s.p95_ms,
        "p99_ms": s.p99_ms,
    }


def fleet_json(plan: FleetPlan) -> dict[str, Any]:
    now = plan.now
    return {
        "question": asdict(plan.question),
        "replicas": plan.replicas,
        "replicas_steady": plan.replicas_steady,
        "replicas_burst": plan.replicas_burst,
        "rho": plan.rho,
        "headroom": plan.headroom,
        "at_plan": plan.at_plan.to_json(),
        "burst_p95_ms": plan.burst_p95_ms,
        "now": {
            "replicas": now.replicas,
            "rho_before": now.rho_before,
            "rho_after": now.rho_after,
            "p95_before_ms": now.before.p95_ms,
            "p95_after_ms": now.after.p95_ms,
        },
        "explanation": explain(plan),
    }


def plot(points: Sequence[Point], sat: float, knee: Knee | None, plan: FleetPlan | None, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    try:
        x = [p.rate for p in points]
        for key, style in (("p50_ms", ":"), ("p95_ms", "-"), ("p99_ms", "--")):
            ax.plot(x, [getattr(p.summary, key) for p in points], style, label=key.split("_")[0].upper(), linewidth=1.6)
        if knee is not None:
            ax.axvline(knee.rate, color="tab:red", alpha=0.6, label=f"knee ρ={knee.fraction:.2f}")
        if plan is not None:
            ax.axhline(plan.question.slo_p95_ms, color="black", alpha=0.4, linestyle="-.", label="objective P95")
            now = plan.now
            for rho, label in ((now.rho_before, "today"), (now.rho_after, f"{100 * plan.question.growth:+.0f}%")):
                ax.axvline(rho * sat, color="tab:gray", alpha=0.5, linestyle=":")
                ax.annotate(label, (rho * sat, ax.get_ylim()[1] * 0.9), rotation=90, fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel(f"requests / s per replica (saturation {sat:.0f})")
        ax.set_ylabel("predicted latency, ms")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(loc="upper left")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path

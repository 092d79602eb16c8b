"""The drill report: the two windows side by side (``report.json``, ``report.md``, PNG plots).

Server-side stage percentiles come from each window's ``/v1/stats`` snapshot; client-side
latency is measured from each request's scheduled send time (open loop), and ``delivery`` is
the client latency minus the server's ``total`` (time outside the server)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from servoscope.drills.scenarios import Degradation, Scenario
from servoscope.drills.traffic import Capacity
from servoscope.models.prepare import DEFAULT_MODEL
from servoscope.stages import STAGE_NAMES
from servoscope.telemetry import document

QS = ("p50", "p95", "p99")


def model_window(window: dict[str, Any]) -> dict[str, Any]:
    """The drill model's stats window of a measured window, read through the typed document."""
    stats = document.read(window["stats"])
    return stats.models[DEFAULT_MODEL].windows[window["stats_window"]].model_dump(mode="json")


def stage_ms(window: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per stage (server) and per client figure: P50/P95/P99 in ms."""
    out = {}
    for stage, s in model_window(window)["stages"].items():
        out[stage] = {q: 1000 * s[q] for q in QS} if s else {q: math.nan for q in QS}
    out["client:latency"] = window["client"]["latency_ms"]
    out["client:delivery"] = window["client"]["delivery_ms"]
    if window.get("client_slow"):
        out["client:slow_latency"] = window["client_slow"]["latency_ms"]
        out["client:slow_delivery"] = window["client_slow"]["delivery_ms"]
    return out


def ratio(a: float, b: float) -> float:
    return b / a if a and a > 0 and not math.isnan(a) and not math.isnan(b) else math.nan


def compare(baseline: dict[str, Any], degraded: dict[str, Any]) -> dict[str, Any]:
    b, d = stage_ms(baseline), stage_ms(degraded)
    stages = {
        k: {
            "baseline_ms": b[k],
            "degraded_ms": d.get(k),
            "p95_ratio": ratio(b[k]["p95"], d.get(k, {}).get("p95", math.nan)),
        }
        for k in b
    }
    mb, md = model_window(baseline), model_window(degraded)
    return {
        "stages": stages,
        "throughput": {
            "client_ok_per_s": [baseline["client"]["ok_per_s"], degraded["client"]["ok_per_s"]],
            "client_errors": [baseline["client"]["errors"], degraded["client"]["errors"]],
            "server_answered": [sum(mb["throughput"]["by_code"].values()), sum(md["throughput"]["by_code"].values())],
            "mean_batch_size": [mb["batches"]["mean_size"], md["batches"]["mean_size"]],
        },
        "queues": {k: [baseline["gauges"].get(k), degraded["gauges"].get(k)] for k in baseline["gauges"]},
        "busy_ratio": [mb["busy_ratio"], md["busy_ratio"]],
        "cpu_cores": {k: [baseline["cpu_cores"][k], degraded["cpu_cores"][k]] for k in baseline["cpu_cores"]},
    }


def write_report(
    scenario: Scenario,
    change: Degradation,
    capacity: Capacity,
    baseline: dict[str, Any],
    degraded: dict[str, Any],
    restored: dict[str, Any],
    out_dir: Path,
    form: str,
    elapsed_s: float,
) -> dict[str, Any]:
    comparison = compare(baseline, degraded)
    affected = comparison["stages"][scenario.stage]
    report = {
        "scenario": scenario.name,
        "form": form,
        "changes": scenario.changes,
        "change": {
            "what": change.what,
            "parameter": change.parameter,
            "baseline": change.baseline_value,
            "degraded": change.degraded_value,
            "injected": change.injected,
            "neighbours": [n.argv()[3:] for n in change.neighbours],
        },
        "expected_stage": scenario.stage,
        "affected": {
            "stage": scenario.stage,
            "baseline_p95_ms": affected["baseline_ms"]["p95"],
            "degraded_p95_ms": affected["degraded_ms"]["p95"],
            "p95_ratio": affected["p95_ratio"],
        },
        "capacity": capacity.to_json(),
        "baseline_traffic": baseline["traffic"],
        "degraded_traffic": degraded["traffic"],
        "stats_window": baseline["stats_window"],
        "comparison": comparison,
        "restored": restored,
        "snapshots": {"baseline": "baseline.json", "degraded": "degraded.json"},
        "elapsed_s": elapsed_s,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    plots = plot(comparison, baseline, degraded, out_dir)
    (out_dir / "report.md").write_text(markdown(report, plots))
    return report


def _ms(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def markdown(report: dict[str, Any], plots: list[str]) -> str:
    c, a, ch = report["comparison"], report["affected"], report["change"]
    injected = " **(INJECTED fault)**" if ch["injected"] else ""
    lines = [
        f"# Drill `{report['scenario']}` ({report['form']} form)",
        "",
        f"**Changed{injected}:** {ch['what']}  ",
        f"`{ch['parameter']}`: {ch['baseline']} → {ch['degraded']}",
        "",
        f"**Affected stage `{a['stage']}`: P95 {_ms(a['baseline_p95_ms'])} ms → {_ms(a['degraded_p95_ms'])} ms "
        f"(×{a['p95_ratio']:.2f})**",
        "",
        f"Capacity (closed loop): {report['capacity']['max_rps']:.1f} req/s; knee "
        f"{report['capacity']['knee_rps']:.1f} req/s "
        f"at {report['capacity']['knee_concurrency']} clients.  ",
        f"Baseline traffic: {report['baseline_traffic']['description']}.  ",
        f"Degraded traffic: {report['degraded_traffic']['description']}.  ",
        f"Each window ran on a freshly started service; server figures are its `/v1/stats` `{report['stats_window']}` "
        "window (`baseline.json`, `degraded.json`).",
        "",
        "| stage | P50 base | P50 degr | P95 base | P95 degr | P95 × | P99 base | P99 degr |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage, s in c["stages"].items():
        b, d = s["baseline_ms"], s["degraded_ms"] or {}
        lines.append(
            f"| {stage} | {_ms(b['p50'])} | {_ms(d.get('p50'))} | {_ms(b['p95'])} | {_ms(d.get('p95'))} | "
            f"{_ms(s['p95_ratio']) if not math.isnan(s['p95_ratio']) else '–'} | {_ms(b['p99'])} | "
            f"{_ms(d.get('p99'))} |"
        )
    lines += [
        "",
        "(ms; `client:*` are measured by the drill's clients from each request's scheduled send time.)",
        "",
        "| figure | baseline | degraded |",
        "|---|---:|---:|",
    ]
    for name, pair in {
        **c["throughput"],
        **{f"queue {k} (mean/max)": v for k, v in c["queues"].items()},
        **{f"CPU cores: {k}": v for k, v in c["cpu_cores"].items()},
    }.items():
        lines.append(f"| {name} | {_fmt(pair[0])} | {_fmt(pair[1])} |")
    lines.append(f"| busy ratio per instance | {_fmt(c['busy_ratio'][0])} | {_fmt(c['busy_ratio'][1])} |")
    r = report["restored"]
    lines += [
        "",
        f"Restored: neighbours still alive {r['neighbours_alive'] or 'none'}; baseline configuration restarted "
        f"(faults {r['faults']}, batching {r['batching']}, preprocess_workers {r['preprocess_workers']}).",
        "",
    ]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def plot(comparison: dict[str, Any], baseline: dict[str, Any], degraded: dict[str, Any], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s for s in (*STAGE_NAMES, "client:latency", "client:delivery") if s in comparison["stages"]]
    fig, ax = plt.subplots(figsize=(10, 4))
    xs = range(len(names))
    for offset, key, label in ((-0.2, "baseline_ms", "baseline"), (0.2, "degraded_ms", "degraded")):
        ax.bar(
            [x + offset for x in xs], [max(1e-3, comparison["stages"][n][key]["p95"]) for n in names], 0.4, label=label
        )
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("P95, ms (log)")
    ax.legend()
    ax.set_title("P95 per stage: baseline vs degraded")
    fig.tight_layout()
    fig.savefig(out_dir / "stages_p95.png", dpi=90)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for ax, (label, w) in zip(axes, (("baseline", baseline), ("degraded", degraded))):
        series = w["gauge_series"]
        for key in ("preprocess_queue", "batch_queue", "pending"):
            ax.plot([p["t_s"] for p in series], [p[key] for p in series], label=key)
        ax.set_title(f"{label}: queue depths")
        ax.set_xlabel("s")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out_dir / "queues.png", dpi=90)
    plt.close(fig)
    return ["stages_p95.png", "queues.png"]

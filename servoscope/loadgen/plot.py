"""A PNG of a load result over time: latency percentiles above, throughput below (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(result: dict[str, Any], path: Path, title: str = "") -> Path:
    """Draw ``result["timeline"]`` (a result file's dict) to ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["timeline"]
    t = [r["t_s"] for r in rows]
    fig, (lat, rate) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5), height_ratios=(3, 2))
    try:
        for key, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
            lat.plot(
                [x + 0.5 for x in t], [r[key] for r in rows], style, label=key.split("_")[0].upper(), linewidth=1.6
            )
        lat.set_ylabel("latency from scheduled send, ms")
        lat.grid(True, alpha=0.3)
        lat.legend(loc="upper left")
        for key in ("offered", "sent", "answered"):
            rate.plot(t, [r[key] for r in rows], label=key, linewidth=1.4, drawstyle="steps-post")
        errors = [r["errors"] for r in rows]
        if any(errors):
            rate.bar(t, errors, color="tab:red", alpha=0.5, label="errors", align="edge", width=1.0)
        rate.set_ylabel("requests / s")
        rate.set_xlabel("seconds from start")
        rate.grid(True, alpha=0.3)
        rate.legend(loc="upper left")
        lat.set_title(title or _title(result))
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def _title(result: dict[str, Any]) -> str:
    settings = result.get("settings", {})
    latency = result.get("latency_ms", {})
    return (
        f"servoscope load — {settings.get('target', '?')} {settings.get('loop', '?')} loop, "
        f"P50 {latency.get('p50', float('nan')):.1f} / P95 {latency.get('p95', float('nan')):.1f} / "
        f"P99 {latency.get('p99', float('nan')):.1f} ms"
    )

"""The doctor's Markdown report, with a PNG beside it: per-stage P95, baseline vs now."""

from __future__ import annotations

from pathlib import Path

from servoscope.doctor.evidence import Evidence
from servoscope.doctor.rules import DELIVERY, Diagnosis, ms
from servoscope.stages import STAGE_NAMES


def write(d: Diagnosis, base: Evidence, now: Evidence, path: Path) -> tuple[Path, Path]:
    """Write the report to ``path`` and its plot to ``path`` with a ``.png`` suffix; returns both."""
    path.parent.mkdir(parents=True, exist_ok=True)
    png = path.with_suffix(".png")
    plot_stages(base, now, png, title=f"{d.model}: per-stage P95, baseline vs now")
    path.write_text(to_markdown(d, base, now, png.name))
    return path, png


def to_markdown(d: Diagnosis, base: Evidence, now: Evidence, plot_name: str | None = None) -> str:
    c, a = d.confirm, d.attribution
    lines = [
        f"# servoscope doctor — {d.model}",
        "",
        f"**Top finding:** `{d.top.cause}` (confidence {d.top.confidence:.2f}) — {d.top.summary}",
        "",
        "## 1. Confirm",
        "",
        c.verdict,
        "",
        "| total | baseline | now |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {ms(b)} | {ms(n)} |" for name, (b, n) in (("P50", c.p50), ("P95", c.p95), ("P99", c.p99))]
    lines += [
        "",
        f"Samples: {c.samples[0]} baseline, {c.samples[1]} now (window {d.window}).",
        "",
        "## 2. Attribute",
        "",
        "| stage | P95 baseline | P95 now | Δ P95 | share of the rise |",
        "|---|---:|---:|---:|---:|",
    ]
    for stage in STAGE_NAMES:
        delta, share = a.deltas_s.get(stage), a.shares.get(stage)
        mark = " **◀**" if stage == a.carrier else ""
        cells = (
            (f"{delta * 1000:+.1f} ms", f"{share:.0%}{mark}") if delta is not None and share is not None else ("", "")
        )
        lines.append(
            f"| {stage} | {ms(base.stages[stage].p95)} | {ms(now.stages[stage].p95)} | {cells[0]} | {cells[1]} |"
        )
    mark = " **◀**" if a.carrier == DELIVERY else ""
    lines.append(
        f"| {DELIVERY} (after total) | {ms(base.delivery.p95)} | {ms(now.delivery.p95)} | "
        f"{a.deltas_s[DELIVERY] * 1000:+.1f} ms | {a.shares[DELIVERY]:.0%}{mark} |"
    )
    if plot_name:
        lines += ["", f"![per-stage P95, baseline vs now]({plot_name})"]
    lines += ["", "## 3. Explain", ""]
    for i, f in enumerate(d.findings):
        lines.append(f"{i + 1}. **{f.cause}** — {f.summary} (confidence {f.confidence:.2f})")
        lines += [f"   - {e}" for e in f.evidence]
    lines += ["", "## 4. Prescribe", ""]
    for i, fix in enumerate(d.top.fixes, 1):
        lines.append(f"{i}. [{fix.scope}] {fix.action} — expected: {fix.effect}")
    return "\n".join(lines) + "\n"


def plot_stages(base: Evidence, now: Evidence, path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(STAGE_NAMES)
    x = range(len(stages))
    fig, ax = plt.subplots(figsize=(9, 4))
    try:
        width = 0.4
        ax.bar([i - width / 2 for i in x], [base.stages[s].p95 * 1000 for s in stages], width, label="baseline")
        ax.bar([i + width / 2 for i in x], [now.stages[s].p95 * 1000 for s in stages], width, label="now")
        ax.set_xticks(list(x), stages, rotation=20)
        ax.set_ylabel("P95 (ms)")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path

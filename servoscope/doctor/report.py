"""The doctor's report: a terminal report (rich: colour on a terminal, plain text in a pipe or a
log), or a JSON document (``--json``)."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from servoscope.doctor.rules import Diagnosis, Finding, ms

WIDTH = 110  # of the plain-text rendering
BAR_CELLS = 20


def to_json(d: Diagnosis) -> dict[str, Any]:
    return {
        "model": d.model,
        "window": d.window,
        "confirm": dataclasses.asdict(d.confirm) | {"p95_ratio": d.confirm.p95_ratio},
        "attribute": dataclasses.asdict(d.attribution),
        "explain": [_finding_json(f) for f in d.findings],
        "prescribe": [dataclasses.asdict(fix) for fix in d.top.fixes],
        "top": {"cause": d.top.cause, "summary": d.top.summary, "confidence": d.top.confidence},
        "availability": None
        if d.availability is None
        else dataclasses.asdict(d.availability) | {"significant": d.availability.significant},
        "changes": [dataclasses.asdict(c) | {"said": c.describe()} for c in d.changes],
        "warnings": list(d.warnings),
        "counterfactual": None
        if d.explanation is None
        else {
            "simulated_p95_s": list(d.explanation.simulated_p95_s),
            "reproduced_p95_s": d.explanation.reproduced_p95_s,
            "shares": d.explanation.shares,
        },
    }


def _finding_json(f: Finding) -> dict[str, Any]:
    return {"cause": f.cause, "summary": f.summary, "confidence": f.confidence, "evidence": list(f.evidence)}


def one_line(d: Diagnosis) -> str:
    return f"{d.top.cause} (confidence {d.top.confidence:.2f}): {d.top.summary}"


def print_report(d: Diagnosis, console: Console | None = None) -> None:
    (console or Console()).print(renderable(d))


def to_text(d: Diagnosis) -> str:
    """The terminal report as plain text."""
    out = io.StringIO()
    Console(file=out, width=WIDTH, color_system=None, force_terminal=False).print(renderable(d))
    return out.getvalue().rstrip() + "\n"


def renderable(d: Diagnosis) -> RenderableType:
    return Group(
        Text(f"servoscope doctor — model {d.model}, window {d.window}", style="bold"),
        _confirm(d),
        _attribute(d),
        _explain(d),
        _prescribe(d),
        _warnings(d),
    )


def _heading(text: str) -> Text:
    return Text(f"\n{text}", style="bold cyan")


def _confirm(d: Diagnosis) -> RenderableType:
    c = d.confirm
    table = Table(box=None, padding=(0, 2), show_header=True, header_style="dim")
    for column in ("total", "baseline", "now"):
        table.add_column(column, justify="left" if column == "total" else "right")
    for name, (b, n) in (("P50", c.p50), ("P95", c.p95), ("P99", c.p99)):
        table.add_row(name, ms(b), ms(n))
    table.add_row("samples", str(c.samples[0]), str(c.samples[1]))
    verdict = Text(c.verdict, style="bold red" if c.significant else "green")
    lines: list[RenderableType] = [_heading("1. Confirm"), _indent(verdict, 3), table]
    if d.availability is not None:
        a = d.availability
        said = f"availability: {a.describe()}" + (" — a regression" if a.significant else "")
        lines.append(_indent(Text(said, style="bold red" if a.significant else "green"), 3))
    return Group(*lines)


def _attribute(d: Diagnosis) -> RenderableType:
    a = d.attribution
    table = Table(box=None, padding=(0, 2), show_header=True, header_style="dim")
    for column, justify in (("stage", "left"), ("Δ P95", "right"), ("share", "right"), ("", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for stage, delta in a.deltas_s.items():
        share = a.shares[stage]
        carrier = stage == a.carrier
        bar = "█" * round(share * BAR_CELLS) + ("  ◀ carries it" if carrier else "")
        table.add_row(
            stage, f"{delta * 1000:+.1f} ms", f"{share:.0%}", Text(bar, style="bold yellow" if carrier else "yellow")
        )
    return Group(_heading("2. Attribute (share of the total-P95 increase, from per-stage P95 deltas)"), table)


def _explain(d: Diagnosis) -> RenderableType:
    lines: list[RenderableType] = [_heading("3. Explain")]
    for i, f in enumerate(d.findings):
        head = Text(f"{'→' if i == 0 else ' '} ")
        head.append(f.cause, style="bold magenta" if i == 0 else "magenta")
        head.append(f" — {f.summary} ")
        head.append(f"(confidence {f.confidence:.2f})", style=_confidence_style(f.confidence))
        lines.append(_indent(head, 3))
        lines += [_indent(Text(f"· {e}"), 7) for e in f.evidence]
    if d.explanation is not None:
        lines.append(_indent(Text(f"counterfactual — {d.explanation.describe()}", style="dim"), 3))
    return Group(*lines)


def _prescribe(d: Diagnosis) -> RenderableType:
    lines: list[RenderableType] = [_heading("4. Prescribe (in order)")]
    for i, fix in enumerate(d.top.fixes, 1):
        line = Text(f"{i}. ")
        line.append(f"[{fix.scope}]", style="bold")
        line.append(f" {fix.action}")
        lines += [_indent(line, 3), _indent(Text(f"expected: {fix.effect}", style="dim"), 6)]
    if d.confirm.significant:
        scopes = {fix.scope for fix in d.top.fixes}
        verdict = (
            "the model itself may need to change"
            if "model" in scopes
            else "infrastructure/configuration changes suffice"
        )
        lines.append(_indent(Text(f"\n{verdict}"), 3))
    lines.append(_indent(Text(f"\ntop finding: {one_line(d)}", style="bold"), 3))
    return Group(*lines)


def _warnings(d: Diagnosis) -> RenderableType:
    if not d.warnings:
        return Group()
    lines: list[RenderableType] = [_heading("Warnings (below the alarm)")]
    lines += [_indent(Text(f"! {w}", style="yellow"), 3) for w in d.warnings]
    return Group(*lines)


def _indent(text: Text, cells: int) -> Padding:
    """Wrapped lines keep the indent."""
    return Padding(text, (0, 0, 0, cells), expand=False)


def _confidence_style(confidence: float) -> str:
    return "green" if confidence >= 0.8 else "yellow" if confidence >= 0.6 else "red"

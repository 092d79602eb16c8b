"""The doctor's report: plain text for a terminal, or a JSON document (``--json``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from servoscope.doctor.rules import Diagnosis, Finding, ms


def to_json(d: Diagnosis) -> dict[str, Any]:
    return {
        "model": d.model,
        "window": d.window,
        "confirm": dataclasses.asdict(d.confirm) | {"p95_ratio": d.confirm.p95_ratio},
        "attribute": dataclasses.asdict(d.attribution),
        "explain": [_finding_json(f) for f in d.findings],
        "prescribe": [dataclasses.asdict(fix) for fix in d.top.fixes],
        "top": {"cause": d.top.cause, "summary": d.top.summary, "confidence": d.top.confidence},
    }


def _finding_json(f: Finding) -> dict[str, Any]:
    return {"cause": f.cause, "summary": f.summary, "confidence": f.confidence, "evidence": list(f.evidence)}


def one_line(d: Diagnosis) -> str:
    return f"{d.top.cause} (confidence {d.top.confidence:.2f}): {d.top.summary}"


def to_text(d: Diagnosis) -> str:
    c, a = d.confirm, d.attribution
    lines = [f"servoscope doctor — model {d.model}, window {d.window}", "", "1. Confirm", f"   {c.verdict}"]
    for name, (b, n) in (("P50", c.p50), ("P95", c.p95), ("P99", c.p99)):
        lines.append(f"   total {name}: {ms(b):>10} → {ms(n):>10}")
    lines.append(f"   samples: {c.samples[0]} baseline, {c.samples[1]} now")
    lines += ["", "2. Attribute (share of the total-P95 increase, from per-stage P95 deltas)"]
    for stage, delta in a.deltas_s.items():
        mark = "  ◀ carries it" if stage == a.carrier else ""
        lines.append(f"   {stage:<12} {delta * 1000:+9.1f} ms  {a.shares[stage]:5.0%}{mark}")
    lines += ["", "3. Explain"]
    for i, f in enumerate(d.findings):
        lines.append(f"   {'→' if i == 0 else ' '} {f.cause} — {f.summary} (confidence {f.confidence:.2f})")
        lines += [f"       · {e}" for e in f.evidence]
    lines += ["", "4. Prescribe (in order)"]
    for i, fix in enumerate(d.top.fixes, 1):
        lines.append(f"   {i}. [{fix.scope}] {fix.action}")
        lines.append(f"      expected: {fix.effect}")
    scopes = {fix.scope for fix in d.top.fixes}
    if c.significant:
        verdict = "the model itself may need to change" if "model" in scopes else "infrastructure/configuration changes suffice"
        lines += ["", f"   {verdict}"]
    lines += ["", f"   top finding: {one_line(d)}"]
    return "\n".join(lines)

"""The one table: per image set and server, its thread layout, each figure and its ratio to servoscope's."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from measure import LOAD_FRACTIONS

BASELINE = "servoscope"
MIB = 1024 * 1024

Figure = Callable[[dict[str, Any]], float]


def load_key(fraction: float) -> str:
    return f"{round(100 * fraction)}%"


def columns() -> list[tuple[str, Figure]]:
    """(heading, how to read the figure from one server's result)."""
    cols: list[tuple[str, Figure]] = [("saturation req/s", lambda r: r["saturation"]["requests_per_s"])]
    for fraction in LOAD_FRACTIONS:
        key = load_key(fraction)
        for q in ("p50", "p95", "p99"):
            cols.append((f"{q.upper()}@{key} ms", lambda r, key=key, q=q: r["open"][key][f"{q}_ms"]))
    cols.append(("peak RSS MiB", lambda r: r["peak_rss_bytes"] / MIB))
    return cols


def errors(result: dict[str, Any]) -> int:
    """Failed requests over every measured window (closed and open loops)."""
    closed = sum(run["errors"] for run in result["saturation"]["by_concurrency"].values())
    return closed + sum(run["errors"] for run in result["open"].values())


def others_cores(result: dict[str, Any]) -> float:
    """Mean cores that everything else on the machine used during this server's measured windows."""
    windows = [*result["saturation"]["by_concurrency"].values(), *result["open"].values()]
    return sum(w["cpu"]["others_cores"] for w in windows) / len(windows)


def layout_cell(result: dict[str, Any]) -> str:
    """``2x1``; with the count of instances that served a batch when it is not the layout's."""
    layout = result["layout"]
    served = layout["instances_served"]
    return layout["text"] if served in (None, layout["instances"]) else f"{layout['text']} ({served} served)"


def cell(value: float, baseline: float | None) -> str:
    if math.isnan(value):
        return "n/a"
    if baseline is None or not baseline or math.isnan(baseline):
        return f"{value:.1f}"
    return f"{value:.1f} ({value / baseline:.2f}x)"


def rows(set_name: str, results: dict[str, dict[str, Any]]) -> list[list[str]]:
    base = results.get(BASELINE, {})
    out: list[list[str]] = []
    for name, result in results.items():
        if "error" in result:
            out.append([set_name, name, layout_cell(result), f"failed: {result['error']}"])
            continue
        figures = [cell(read(result), None if "error" in base or not base else read(base)) for _, read in columns()]
        out.append(
            [
                set_name,
                name,
                layout_cell(result),
                *figures[:-1],
                str(errors(result)),
                figures[-1],
                f"{others_cores(result):.2f}",
            ]
        )
    return out


def table(sets: dict[str, dict[str, Any]]) -> str:
    heading = ["set", "server", "layout", *[h for h, _ in columns()[:-1]], "errors", columns()[-1][0], "others cores"]
    body = [row for set_name, result in sets.items() for row in rows(set_name, result["servers"])]
    width = len(heading)
    widths = [max(len(r[i]) for r in [heading, *body] if len(r) == width) for i in range(width)]
    lines = [_line(heading, widths)]
    for row in body:
        failed = "  ".join([*(c.ljust(w) for c, w in zip(row[:3], widths, strict=False)), *row[3:]])
        lines.append(_line(row, widths) if len(row) == width else failed)
    return "\n".join(lines)


def _line(row: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))


def legend(sets: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"(x): the figure over {BASELINE}'s; for latency and memory, above 1 is worse.",
        "others cores: what the rest of the machine used meanwhile (mean over the server's windows);",
        "a row taken while it is well above 0 is not comparable.",
        "layout: model instances x ONNX Runtime intra-op threads each (a peer's figure in parentheses: instances that",
        "served a batch, when not all did):",
    ]
    layouts = {name: r["layout"] for result in sets.values() for name, r in result["servers"].items()}
    lines += [f"  {name:<10} {layout['text']}: {layout['how']}" for name, layout in layouts.items()]
    for set_name, result in sets.items():
        rates = ", ".join(f"{key} = {rate:.1f} req/s" for key, rate in result["open_rates_per_s"].items())
        images = result["images"]
        size = f"{images['size'][0]}x{images['size'][1]}"
        lines.append(
            f"{set_name}: {images['count']} JPEGs {size}; open-loop rates (of {BASELINE}'s saturation): {rates}"
        )
    return "\n".join(lines)

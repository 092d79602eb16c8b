"""The doctor's predicted effects against measurement (issue #18): for each scenario, a baseline window,
a degraded window, the doctor's diagnosis, then a window with the doctor's first predicted fix applied,
and ``servoscope doctor --verify``: predicted P95 after the fix against the one measured.

Every part is a separate process, as in ``bench/doctor_scenarios.py`` (whose windows this reuses):
``servoscope serve`` fresh for each window, ``servoscope load`` (open loop, Poisson), ``servoscope
snapshot``, ``servoscope doctor``. A scenario names the fix it can apply (a flag change); when the doctor's
first predicted fix is another one, the scenario is reported as such and not verified.
Target: the measured effect within 25% of the predicted one, for at least three fixes.

    python bench/doctor_verify.py                  # 3 scenarios × 3 windows of 20 s: ~5 minutes
    python bench/doctor_verify.py --window-s 30    # longer windows, steadier P95s

Figures to stdout and bench/results/doctor_verify.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doctor_scenarios import BASE_RATE, Window, cli, run_window

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PHONE = "100%:4032x3024"
PHONE_RATE = 20.0  # req/s: about 40% of what two decode workers take, 70–80% of what one does


@dataclass(frozen=True)
class FixScenario:
    name: str
    degraded: Window
    fixed: Window  # the degraded window with the fix applied
    fix_names: str  # a word the doctor's fix must name to be the one applied
    baseline: Window = field(default_factory=lambda: Window(BASE_RATE))


SCENARIOS: tuple[FixScenario, ...] = (
    FixScenario(
        "one-instance → two",
        Window(BASE_RATE * 1.3, serve=("--instances", "1", "--intra-op-threads", "1")),
        Window(BASE_RATE * 1.3),
        "instances",
    ),
    FixScenario(
        "batch delay 50 ms → default",
        Window(BASE_RATE, serve=("--max-queue-delay-ms", "50", "--max-batch-size", "16")),
        Window(BASE_RATE),
        "max_queue_delay",
    ),
    FixScenario(  # phone photos: decoding them carries the load, so the decode workers matter
        "one decode worker → default",
        Window(PHONE_RATE, mix=PHONE, serve=("--preprocess-workers", "1")),
        Window(PHONE_RATE, mix=PHONE),
        "preprocess",
        baseline=Window(PHONE_RATE, mix=PHONE),
    ),
)


def doctor(*args: str) -> dict[str, Any]:
    out = subprocess.run(cli("doctor", *args, "--json"), capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(out.stdout))


def first_predicted_fix(diagnosis: dict[str, Any]) -> str | None:
    fixes = diagnosis["prescribe"]
    return next((f["action"] for f in fixes if f.get("predicted_p95_s") is not None), None)


def measure(scenario: FixScenario, folder: Path, window_s: float) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {part: folder / f"{part}.json" for part in ("baseline", "before", "after")}
    run_window(scenario.baseline, files["baseline"], folder, window_s)
    run_window(scenario.degraded, files["before"], folder, window_s)
    diagnosis = doctor("--snapshot", str(files["before"]), "--baseline", str(files["baseline"]))
    fix = first_predicted_fix(diagnosis)
    row: dict[str, Any] = {"scenario": scenario.name, "cause": diagnosis["top"]["cause"], "fix": fix}
    if fix is None or scenario.fix_names not in fix:
        row["verified"] = False
        return row
    run_window(scenario.fixed, files["after"], folder, window_s)
    paths = [str(files[part]) for part in ("baseline", "before", "after")]
    checked = doctor("--verify", "--baseline", paths[0], "--before", paths[1], "--after", paths[2])["verify"]
    return {**row, **checked, "verified": True}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=20.0, help="seconds of load per window (default 20)")
    parser.add_argument("--only", help="run the scenarios whose name contains this")
    args = parser.parse_args()
    if not 5 <= args.window_s <= 300:
        parser.error("--window-s must be 5..300")
    chosen = [s for s in SCENARIOS if args.only is None or args.only in s.name]
    rows = []
    with tempfile.TemporaryDirectory(prefix="doctor-verify-") as tmp:
        for i, scenario in enumerate(chosen):
            print(f"[{i + 1}/{len(chosen)}] {scenario.name}", file=sys.stderr, flush=True)
            rows.append(measure(scenario, Path(tmp) / str(i), args.window_s))
    print(f"\n{'scenario':<30} {'cause':<20} {'P95 before':>10} {'predicted':>10} {'measured':>10} {'error':>7}")
    for row in rows:
        if not row["verified"]:
            print(f"{row['scenario']:<30} {row['cause']:<20} not verified: the doctor's first fix was {row['fix']!r}")
            continue
        print(
            f"{row['scenario']:<30} {row['cause']:<20} {1000 * row['before_p95_s']:8.1f}ms "
            f"{1000 * row['predicted_p95_s']:8.1f}ms {1000 * row['after_p95_s']:8.1f}ms {row['error']:6.0%}"
        )
        print(f"{'':<30} fix: {row['fix']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "doctor_verify.json").write_text(json.dumps(rows, indent=2))
    confirmed = sum(1 for r in rows if r["verified"] and r["confirmed"])
    print(f"\nwithin 25%: {confirmed} of {len(rows)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

"""The rollout's live drills, as README "Roll out a variant" shows them: each on a fresh
``servoscope serve --instances 1`` on loopback under ``servoscope load --concurrency 4``, a ladder of
20 → 50 → 100% with minimums small enough (100 canary, 128 baseline and 100 mirrored requests,
thresholds refreshed every 64 baseline answers) that each drill takes about a minute — the defaults,
3,000 and 1,000, are for production::

    python bench/rollout_drill.py                 # the three drills, ~4 minutes
    python bench/rollout_drill.py --only slowed

identical — the same weights loaded again (``--canary-version 1``): promoted.
slowed    — the same, each of its batches 20 ms longer (``--inject-inference-delay-ms 20``): rolled
            back, the stage named.
int8      — the INT8 variant, half of the baseline's requests mirrored to it, a 10% disagreement
            budget and the model owners' sign-off: judged on latency, errors and disagreement.

Prints each drill's ``rollout start --watch`` lines and its audit log's first and last lines.
Requires the INT8 variant in models/ (``servoscope model quantize``; ``make test`` leaves it there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from serve import MODEL, ROOT, progress, server, servoscope_argv

INT8 = f"{MODEL}_int8"
SMALL_GATE = (
    "--steps", "20,50,100", "--min-canary-requests", "100", "--min-baseline-requests", "128",
    "--min-mirrored-requests", "100", "--refresh-every", "64", "--seed", "1",
)  # fmt: skip
DRILLS = {
    "identical": ("--canary-version", "1"),
    "slowed": ("--canary-version", "1", "--inject-inference-delay-ms", "20"),
    "int8": (
        "--canary-model", INT8, "--mirror", "0.5", "--max-disagreement", "0.1",
        "--signoff", "vision-models team (ML-1234)",
    ),
}  # fmt: skip
LOAD_S = 240  # the load outlasts any drill; it is stopped when the rollout ends
WATCH_TIMEOUT_S = 200
SERVOSCOPE = (sys.executable, "-m", "servoscope")


def watch(audit: Path) -> tuple[str, ...]:
    return ("--audit-log", str(audit), "--watch", "--watch-timeout-s", str(WATCH_TIMEOUT_S))


def drill(name: str, flags: tuple[str, ...], folder: Path) -> int:
    audit = folder / f"{name}-audit.jsonl"
    argv = servoscope_argv(("--instances", "1"), model=f"{MODEL},{INT8}")
    with server(name, argv, folder / f"{name}-server.log") as (endpoint, _):
        where = ("--host", endpoint.host, "--port", str(endpoint.port))
        load = subprocess.Popen(
            [*SERVOSCOPE, "load", *where, "--model", MODEL, "--concurrency", "4", "--duration", str(LOAD_S), "--quiet"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://{endpoint.host}:{endpoint.port}"
            watched = subprocess.run(
                [*SERVOSCOPE, "rollout", "start", MODEL, "--url", url, *flags, *SMALL_GATE, *watch(audit)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=WATCH_TIMEOUT_S + 60,
            )
        finally:
            load.terminate()
            load.wait(timeout=30)
    print(f"\n## {name}\n")
    print(watched.stdout.rstrip() or watched.stderr.rstrip())
    lines = audit.read_text().splitlines() if audit.exists() else []
    for line in lines[:1] + lines[-1:]:
        print(json.dumps(json.loads(line))[:600])
    return watched.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated drills: {', '.join(DRILLS)}")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(DRILLS)
    if unknown := [n for n in names if n not in DRILLS]:
        parser.error(f"unknown drills {unknown}; known: {list(DRILLS)}")
    if INT8 in (DRILLS[n][1] for n in names) and not (ROOT / "models" / INT8).is_dir():
        parser.error(f"models/{INT8} is missing: servoscope model quantize {MODEL} (make test leaves it there)")
    with tempfile.TemporaryDirectory(prefix="rollout-drill-") as tmp:
        codes = []
        for name in names:
            progress(f"drill {name}")
            codes.append(drill(name, DRILLS[name], Path(tmp)))
    return max(codes)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

"""``servoscope drill SCENARIO``: reproduce a known degradation end to end."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    drill = subparsers.add_parser("drill", help="reproduce a latency degradation on purpose and report it")
    drill.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("servoscope drill: not built yet")

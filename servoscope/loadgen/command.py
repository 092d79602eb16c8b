"""``servoscope load``: drive a service with an open- or closed-loop load (see the package docs)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    load = subparsers.add_parser("load", help="drive a service (loopback) with open- or closed-loop load")
    load.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("servoscope load: not built yet")

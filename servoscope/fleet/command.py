"""``servoscope deploy TARGET``: the fleet's deployment for an engine. Each target module in
``TARGETS`` has add_parser(subparsers), as the top-level tools do."""

from __future__ import annotations

import importlib
from typing import Any

TARGETS: tuple[str, ...] = ("servoscope.fleet.k8s.command", "servoscope.fleet.ray.command")


def add_parser(subparsers: Any) -> None:
    deploy = subparsers.add_parser("deploy", help="a fleet on an engine: k8s (manifests, generated) or ray (live)")
    targets = deploy.add_subparsers(dest="target", required=True)
    for target in TARGETS:
        importlib.import_module(target).add_parser(targets)

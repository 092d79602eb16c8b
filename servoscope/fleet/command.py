"""``servoscope deploy TARGET``: the fleet's deployment for an engine. Each target module in
``TARGETS`` has add_parser(subparsers), as the top-level tools do."""

from __future__ import annotations

from typing import Any

from servoscope.fleet import ray_command
from servoscope.fleet.k8s import command as k8s_command

TARGETS = (k8s_command, ray_command)


def add_parser(subparsers: Any) -> None:
    deploy = subparsers.add_parser("deploy", help="a fleet on an engine: k8s (manifests, generated) or ray (live)")
    targets = deploy.add_subparsers(dest="target", required=True)
    for target in TARGETS:
        target.add_parser(targets)

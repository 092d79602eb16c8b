"""``servoscope deploy k8s``: write the Kubernetes manifests and the Containerfile to a directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from servoscope.fleet.k8s.env import DeployError
from servoscope.fleet.k8s.monitoring import RulesError, default_rules_file
from servoscope.fleet.k8s.target import Target, TargetError
from servoscope.fleet.k8s.write import HPA_DIR, KEDA_DIR, render, write
from servoscope.fleet.plan import PlanError, plan_and_settings
from servoscope.settings import SettingsError


def add_parser(subparsers: Any) -> None:
    k8s = subparsers.add_parser(
        "k8s",
        help="Kubernetes manifests (Deployment, Service, HPA and adapter rules or KEDA, PodMonitor, "
        "PrometheusRule) and a Containerfile",
    )
    k8s.add_argument("-o", "--output", type=Path, default=Path("k8s"), help="directory to write (default: k8s)")
    k8s.add_argument("--config", type=Path, help="servoscope settings (TOML, as serve's; and SERVOSCOPE_*)")
    k8s.add_argument("--plan", type=Path, help="fleet plan (JSON): replicas, cpu_cores, memory_mib … (fleet/plan.py)")
    defaults = Target()
    k8s.add_argument("--name", default=defaults.name, help=f"Deployment name (default: {defaults.name})")
    k8s.add_argument("--namespace", default=defaults.namespace, help=f"namespace (default: {defaults.namespace})")
    k8s.add_argument("--image", default=defaults.image, help=f"container image (default: {defaults.image})")
    k8s.add_argument("--prometheus-url", default=defaults.prometheus_url, help="the Prometheus KEDA queries")
    k8s.add_argument("--adapter-namespace", default=defaults.adapter_namespace, help="the Prometheus Adapter's")
    k8s.add_argument("--rules", type=Path, help="Prometheus rules to ship (default: deploy/prometheus/rules.yml)")
    k8s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        plan, settings = plan_and_settings(args.plan, args.config)
        target = Target(args.name, args.namespace, args.image, args.prometheus_url, args.adapter_namespace)
        files = render(settings, plan, target, args.rules or default_rules_file(), str(args.output))
    except (PlanError, SettingsError, TargetError, DeployError, RulesError) as exc:
        print(f"servoscope deploy k8s: {exc}", file=sys.stderr)
        return 2
    try:
        written = write(files, args.output)
    except OSError as exc:
        print(f"servoscope deploy k8s: cannot write {args.output}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} files to {args.output}/: {', '.join(sorted(files))}", file=sys.stderr)
    out = args.output
    print(
        f"apply: kubectl apply -f {out}/ -f {out}/{HPA_DIR}/  (with KEDA: {out}/{KEDA_DIR}/ for the second)",
        file=sys.stderr,
    )
    return 0

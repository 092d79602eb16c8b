"""Offline validation of generated Kubernetes manifests (helpers, no fixtures).

- Core kinds: kubernetes-validate's CLI with ``--strict`` (its JSON schemas of the Kubernetes API,
  unknown fields rejected), against every Kubernetes version it ships from ``MIN_KUBERNETES`` on.
- Custom resources (KEDA, Prometheus Operator): the CRDs' own schemas, vendored in tests/data/crds
  (README there: source and version), checked with jsonschema, made strict the same way.
- The Prometheus Adapter's config inside its ConfigMap: a schema of the adapter's config struct.
A document of any other kind is a problem: nothing is left unchecked.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate.utils import all_versions
from packaging.version import Version

from support import REPO_ROOT

CRDS = REPO_ROOT / "tests" / "data" / "crds"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_v1_podmonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
}
ADAPTER_SCHEMA = "prometheus-adapter-config.schema.json"
ADAPTER_TEMPLATE_FIELDS = {"Series", "LabelMatchers", "LabelValuesByName", "GroupBy", "GroupBySlice"}  # pkg/naming
MIN_KUBERNETES = "1.30"  # preStop's sleep action is on by default from 1.30 (beta; GA in 1.34)


def kubernetes_versions() -> list[str]:
    """Every Kubernetes version kubernetes-validate ships schemas for, from MIN_KUBERNETES on."""
    shipped = set(all_versions())  # each version twice: its strict and its lax schemas
    return sorted((v for v in shipped if Version(v) >= Version(MIN_KUBERNETES)), key=Version)


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifest_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))


def is_core(doc: dict[str, Any]) -> bool:
    return (doc.get("apiVersion"), doc.get("kind")) not in CRD_SCHEMAS


# --- core kinds --------------------------------------------------------------------------------


def core_problems(files: list[Path]) -> list[str]:
    """kubernetes-validate --strict over ``files``, each document against each version: anything
    but a pass (an error, or a warning such as a kind it has no schema for) is a problem."""
    if not files:
        return []
    versions = [arg for v in kubernetes_versions() for arg in ("-k", v)]
    done = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", *versions, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = (done.stdout + done.stderr).splitlines()
    problems = [line for line in lines if not re.match(r"^INFO .* passed for resource ", line)]
    expected = sum(len(documents(f)) for f in files) * len(kubernetes_versions())
    passed = len(lines) - len(problems)
    if done.returncode != 0 or passed != expected:
        problems.append(f"kubernetes-validate exited {done.returncode}: {passed} of {expected} checks passed")
    return problems


# --- custom resources --------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """A copy in which an object schema that lists its properties accepts no others (unless it
    preserves unknown fields, or says what the others must be). And one translation from Go's
    regular expressions (RE2) to Python's: a flag group after ``^`` moves before it."""
    schema = copy.deepcopy(schema)
    for node in _schemas(schema):
        if isinstance(node.get("pattern"), str):
            node["pattern"] = re.sub(r"^\^(\(\?[a-z]+\))", r"\1^", node["pattern"])
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
    return schema


def _schemas(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``node`` and every schema inside it (only where a schema stands, not e.g. a property named
    "properties")."""
    yield node
    children = [*node.get("properties", {}).values(), *node.get("patternProperties", {}).values()]
    children += [node[k] for k in ("items", "additionalProperties", "not") if isinstance(node.get(k), dict)]
    children += [s for k in ("anyOf", "allOf", "oneOf") for s in node.get(k, [])]
    for child in children:
        yield from _schemas(child)


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    schema = strict(json.loads((CRDS / name).read_text()))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def schema_problems(doc: Any, schema_file: str, where: str) -> list[str]:
    errors = sorted(validator(schema_file).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{where}: {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]


def crd_problems(doc: dict[str, Any], where: str) -> list[str]:
    problems = schema_problems(doc, CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])], where)
    spec = doc.get("spec", {})
    if doc["kind"] == "ScaledObject" and spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        problems.append(f"{where}: minReplicaCount above maxReplicaCount (the CRD's CEL rule)")
    return problems


def adapter_problems(doc: dict[str, Any], where: str) -> list[str]:
    """The Prometheus Adapter's rules, when a ConfigMap carries them (key config.yaml)."""
    text = doc.get("data", {}).get("config.yaml")
    if doc.get("kind") != "ConfigMap" or text is None:
        return []
    config = yaml.safe_load(text)
    problems = schema_problems(config, ADAPTER_SCHEMA, f"{where} config.yaml")
    for rule in config.get("rules", []):
        unknown = set(re.findall(r"<<\s*\.(\w+)\s*>>", rule.get("metricsQuery", ""))) - ADAPTER_TEMPLATE_FIELDS
        if unknown:
            problems.append(f"{where} config.yaml: metricsQuery uses unknown template fields {sorted(unknown)}")
    return problems


def directory_problems(directory: Path) -> list[str]:
    """Every manifest under ``directory`` validated; the problems found (none: all valid)."""
    problems: list[str] = []
    core_files = []
    for path in manifest_files(directory):
        docs = documents(path)
        if not docs:
            problems.append(f"{path}: no documents")
        if any(is_core(d) for d in docs):
            core_files.append(path)
        for i, doc in enumerate(docs):
            where = f"{path.relative_to(directory)}[{i}]"
            if not is_core(doc):
                problems += crd_problems(doc, where)
            problems += adapter_problems(doc, where)
    if any(not is_core(d) for f in core_files for d in documents(f)):
        problems.append("a file mixes core kinds and custom resources: kubernetes-validate only warns on the latter")
    return problems + core_problems(core_files)

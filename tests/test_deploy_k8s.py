"""``servoscope deploy k8s``: every file it writes is validated offline (tests/k8s_validation.py),
with the defaults and with a plan; the plan shapes the fleet; bad plans are refused clearly; the
validators themselves reject broken manifests; the Containerfile agrees with the Deployment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s_validation import directory_problems, documents
from servoscope.cli import main
from servoscope.fleet.k8s.arrival_rate import RATE_METRIC
from servoscope.settings import Settings, load_settings
from support import REPO_ROOT

KINDS = {
    "deployment.yaml": "Deployment",
    "service.yaml": "Service",
    "poddisruptionbudget.yaml": "PodDisruptionBudget",
    "hpa/hpa.yaml": "HorizontalPodAutoscaler",
    "hpa/prometheus-adapter.yaml": "ConfigMap",
    "podmonitor.yaml": "PodMonitor",
    "prometheusrule.yaml": "PrometheusRule",
    "keda/scaledobject.yaml": "ScaledObject",
}
PLAN = {
    "replicas": {"min": 3, "max": 20},
    "cpu_cores": 3.5,
    "memory_mib": 3072,
    "queue_wait_target_s": 0.08,
    "replica_capacity_per_s": 40,
    "target_utilization": 0.75,
    "drain_delay_s": 15,
    "settings": {
        "max_pending": 256,
        "models": ["efficientnet_lite0"],
        "model_overrides": {"isolation": "process", "max_batch_size": 8},
    },
}


def deploy(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "k8s"
    assert main(["deploy", "k8s", "-o", str(out), *args]) == 0
    return out


def load(out: Path, name: str) -> dict[str, Any]:
    [doc] = documents(out / name)
    return doc


def pod_spec(out: Path) -> dict[str, Any]:
    return load(out, "deployment.yaml")["spec"]["template"]["spec"]


def write_plan(tmp_path: Path, plan: Any) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(plan if isinstance(plan, str) else json.dumps(plan))
    return path


@pytest.fixture(autouse=True)
def _no_servoscope_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SERVOSCOPE_")]:
        monkeypatch.delenv(name)


def test_every_file_written_with_the_defaults_validates(tmp_path: Path) -> None:
    out = deploy(tmp_path)
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert written == {*KINDS, "Containerfile"}
    assert {name: load(out, name)["kind"] for name in KINDS} == KINDS
    assert directory_problems(out) == []

    container = pod_spec(out)["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert pod_spec(out)["terminationGracePeriodSeconds"] > container["lifecycle"]["preStop"]["sleep"]["seconds"] + 30
    assert "replicas" not in load(out, "deployment.yaml")["spec"]  # the HPA owns the count
    hpa = load(out, "hpa/hpa.yaml")["spec"]
    assert [m["pods"]["metric"]["name"] for m in hpa["metrics"]] == [RATE_METRIC]  # proportional to the load
    assert set(hpa["behavior"]) == {"scaleUp", "scaleDown"}


def test_a_plan_and_settings_shape_the_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "servoscope.toml"
    config.write_text('shutdown_timeout_s = 20.0\nlog_level = "warning"\n')
    out = deploy(
        tmp_path,
        "--plan",
        str(write_plan(tmp_path, PLAN)),
        "--config",
        str(config),
        "--name",
        "classify",
        "--namespace",
        "vision",
        "--image",
        "registry.example/servoscope:1",
    )
    assert directory_problems(out) == []

    pod = pod_spec(out)
    [container] = pod["containers"]
    assert container["image"] == "registry.example/servoscope:1"
    resources = container["resources"]
    assert resources["limits"] == resources["requests"] == {"cpu": "3500m", "memory": "3072Mi"}
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] == 15
    assert pod["terminationGracePeriodSeconds"] == 15 + 20 + 5  # preStop, shutdown_timeout_s, margin
    assert {v["mountPath"] for v in container["volumeMounts"]} == {"/tmp", "/dev/shm"}  # process isolation
    hpa = load(out, "hpa/hpa.yaml")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 20)
    assert hpa["metrics"][0]["pods"]["target"] == {"type": "AverageValue", "averageValue": "30000m"}  # 40 × 0.75
    keda = load(out, "keda/scaledobject.yaml")["spec"]
    assert (keda["minReplicaCount"], keda["maxReplicaCount"]) == (3, 20)
    assert keda["triggers"][0]["metricType"] == "AverageValue"  # the deployment's rate / threshold = pods
    assert keda["triggers"][0]["metadata"]["threshold"] == "30"
    assert 'namespace="vision",app_kubernetes_io_instance="classify"' in keda["triggers"][0]["metadata"]["query"]
    assert load(out, "service.yaml")["metadata"] == load(out, "hpa/hpa.yaml")["metadata"]
    assert load(out, "service.yaml")["metadata"]["namespace"] == "vision"

    # The container's environment is the settings: loaded back, they are the plan's and the file's,
    # with what a pod fixes (host, model preparation) and threads sized to 3 cores.
    for var in container["env"]:
        monkeypatch.setenv(var["name"], var["value"])
    pod_settings = load_settings()
    assert pod_settings.host == "0.0.0.0" and Settings.model_fields["host"].default == "127.0.0.1"
    assert (pod_settings.port, pod_settings.prepare_default_model) == (container["ports"][0]["containerPort"], False)
    assert (pod_settings.max_pending, pod_settings.models) == (256, ("efficientnet_lite0",))
    assert pod_settings.shutdown_timeout_s == 20.0
    assert pod_settings.log_level == "warning"
    overrides = pod_settings.model_overrides
    assert (overrides.isolation, overrides.max_batch_size) == ("process", 8)
    assert (pod_settings.preprocess_workers, overrides.instances, overrides.intra_op_threads) == (3, 3, 1)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ({"replica": {"min": 2}}, "replica: Extra inputs are not permitted"),
        ({"replicas": {"min": 5, "max": 2}}, "max (2) must be >= min (5)"),
        ({"cpu_cores": 0}, "cpu_cores: Input should be greater than 0 (got 0)"),
        ({"queue_wait_target_s": "fast"}, "queue_wait_target_s: Input should be a valid number"),
        ({"target_utilization": 1.5}, "target_utilization: Input should be less than or equal to 1"),
        ({"settings": {"max_pendng": 3}}, "max_pendng"),
        ({"settings": {"faults": {"inference_delay_s": 0.1}}}, "injected faults are for drills"),
        ({"settings": {"port": 0}}, "port 0"),
    ],
)
def test_a_bad_plan_is_refused_with_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plan: Any, message: str
) -> None:
    out = tmp_path / "k8s"
    assert main(["deploy", "k8s", "-o", str(out), "--plan", str(write_plan(tmp_path, plan))]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--plan", "missing.json"), "plan missing.json does not exist"),
        (("--name", "Classify_1"), "name must be a DNS label"),
        (("--rules", "no-such-rules.yml"), "rules file no-such-rules.yml does not exist"),
        (("--prometheus-url", "prometheus:9090"), "prometheus URL must be"),
    ],
)
def test_bad_arguments_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    assert main(["deploy", "k8s", "-o", str(tmp_path / "k8s"), *args]) == 2
    assert message in capsys.readouterr().err


def _break(out: Path, name: str, change: Any) -> None:
    path = out / name
    [doc] = documents(path)
    change(doc)
    path.write_text(yaml.safe_dump(doc))


def _adapter_typo(doc: dict[str, Any]) -> None:
    config = yaml.safe_load(doc["data"]["config.yaml"])
    config["rules"][0]["metricQuery"] = config["rules"][0].pop("metricsQuery")
    doc["data"]["config.yaml"] = yaml.safe_dump(config)


@pytest.mark.parametrize(
    ("name", "change", "found"),
    [
        (
            "deployment.yaml",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(readinesProbe={}),
            "readinesProbe",
        ),
        ("hpa/hpa.yaml", lambda d: d["spec"]["behavior"]["scaleUp"].update(stabilizationWindowSeconds="0"), "behavior"),
        ("keda/scaledobject.yaml", lambda d: d["spec"]["triggers"][0].pop("metadata"), "metadata"),
        ("keda/scaledobject.yaml", lambda d: d["spec"].update(pollingIntervalSeconds=15), "pollingIntervalSeconds"),
        ("keda/scaledobject.yaml", lambda d: d["spec"].update(minReplicaCount=30), "minReplicaCount above"),
        ("podmonitor.yaml", lambda d: d["spec"]["podMetricsEndpoints"][0].update(port=8000), "port"),
        ("prometheusrule.yaml", lambda d: d["spec"]["groups"][0]["rules"][0].update(expresion="1"), "expresion"),
        ("hpa/prometheus-adapter.yaml", _adapter_typo, "metricQuery"),
    ],
)
def test_the_validators_reject_a_broken_manifest(tmp_path: Path, name: str, change: Any, found: str) -> None:
    out = deploy(tmp_path)
    _break(out, name, change)
    problems = directory_problems(out)
    assert problems and any(found in p for p in problems), problems


def test_the_prometheus_rule_ships_deploy_rules_as_they_are(tmp_path: Path) -> None:
    groups = load(deploy(tmp_path), "prometheusrule.yaml")["spec"]["groups"]
    shipped = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "rules.yml").read_text())["groups"]
    assert groups[: len(shipped)] == shipped
    assert [g["name"] for g in groups[len(shipped) :]] == ["servoscope-autoscaling"]


def instructions(text: str) -> list[tuple[str, str]]:
    """The Containerfile's instructions (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    return [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def test_the_containerfile_installs_as_the_readme_and_runs_what_the_deployment_expects(tmp_path: Path) -> None:
    out = deploy(tmp_path)
    steps = instructions((out / "Containerfile").read_text())
    known = {"FROM", "RUN", "WORKDIR", "COPY", "ENV", "USER", "EXPOSE", "ENTRYPOINT"}
    assert {op for op, _ in steps} <= known
    makefile = (REPO_ROOT / "Makefile").read_text()
    made = [arg.split()[1] for op, arg in steps if op == "RUN" and arg.startswith("make ")]
    assert made == ["model"] and re.search(r"^serve: model$", makefile, flags=re.MULTILINE)
    assert "make serve" in (REPO_ROOT / "README.md").read_text()

    container = pod_spec(out)["containers"][0]
    port = container["ports"][0]["containerPort"]
    uid = container["securityContext"]["runAsUser"]
    values = dict(steps_of(steps, "EXPOSE", "USER", "WORKDIR", "ENTRYPOINT"))
    assert values["EXPOSE"] == str(port) and values["USER"] == f"{uid}:{uid}"
    workdir = values["WORKDIR"]
    assert json.loads(values["ENTRYPOINT"]) == [f"{workdir}/.venv/bin/servoscope", "serve"]
    [copied] = [arg for op, arg in steps if op == "COPY" and arg.startswith("--from=build")]
    assert copied.split()[-1] == f"{workdir}/{Settings().model_repository}"  # where the pod looks for models
    env = next(arg for op, arg in steps if op == "ENV")
    assert "SERVOSCOPE_HOST=0.0.0.0" in env and f"SERVOSCOPE_PORT={port}" in env


def steps_of(steps: list[tuple[str, str]], *ops: str) -> list[tuple[str, str]]:
    """The last value of each instruction in ``ops`` (the runtime stage's)."""
    return [(op, [arg for o, arg in steps if o == op][-1]) for op in ops]


def test_the_readme_example_writes_valid_manifests(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Run it as a fleet — Kubernetes", 1)[1].split("\n## ", 1)[0]
    plan = re.search(r"```json\n(.*?)```", section, re.S)
    command = re.search(r"```sh\n(.*?)```", section, re.S)
    assert plan and command, "the section has no plan or no command"
    (tmp_path / "plan.json").write_text(plan.group(1))
    script = command.group(1).replace("servoscope ", f"{sys.executable} -m servoscope ", 1)
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert directory_problems(tmp_path / "k8s") == []
    assert load(tmp_path / "k8s", "hpa/hpa.yaml")["spec"]["maxReplicas"] == json.loads(plan.group(1))["replicas"]["max"]

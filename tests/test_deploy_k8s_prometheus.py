"""The PromQL that ``servoscope deploy k8s`` ships, checked by Prometheus itself: the generated
PrometheusRule's groups pass ``promtool check rules`` and ``promtool test rules`` (deploy's own rule
tests, and the autoscaling group's); the Prometheus Adapter's query, rendered as the adapter
renders it, and KEDA's query run against a real Prometheus on loopback that scrapes a live
servoscope with the generated rules loaded, and agree with the replica's own ``/v1/stats``.

FAKE, the one part a cluster would provide: the labels the Prometheus Operator's PodMonitor puts
on a replica's series (namespace, pod, app_kubernetes_io_instance) are given here as the static
scrape target's labels. Skipped where the prometheus/promtool binaries are not installed.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from k8s_validation import documents
from servoscope.cli import main
from servoscope.fleet.k8s.arrival_rate import COUNTER
from servoscope.fleet.k8s.monitoring import AUTOSCALING_GROUP, RATE_RECORD, WAIT_RECORD
from support import CLASSIFY, MODEL, REPO_ROOT, Photo, start_server, wait_for
from test_prometheus import PROMETHEUS, PROMTOOL, Prometheus, drive_load, start_prometheus

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None, reason="the prometheus and promtool binaries are not on PATH"
)

NAME = NAMESPACE = "servoscope"  # the generator's defaults
POD = "servoscope-5c7d9b8f6-x2k4q"
# One instance whose batches take 25 ms more (an INJECTED fault): under the paced load, requests
# wait for it in the batcher, so the mean wait is tens of milliseconds, not a fraction of one.
WAITING = ("--instances", "1", "--inject-inference-delay-ms", "25")
POD_LABELS = {"namespace": NAMESPACE, "pod": POD, "app_kubernetes_io_instance": NAME}  # FAKE: the PodMonitor's


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    out = tmp_path / "k8s"
    assert main(["deploy", "k8s", "-o", str(out)]) == 0
    return out


def spec(out: Path, name: str) -> dict[str, Any]:
    [doc] = documents(out / name)
    return doc["spec"]


def rules_file(out: Path, workdir: Path) -> Path:
    """The PrometheusRule's groups as a plain rules file (what the operator hands Prometheus)."""
    path = workdir / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": spec(out, "prometheusrule.yaml")["groups"]}, sort_keys=False))
    return path


def promtool(*args: str) -> str:
    done = subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "SUCCESS" in output and "FAILED" not in output, output
    return output


# --- promtool -----------------------------------------------------------------------------------


def series(name: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    tags = {"namespace": NAMESPACE, "pod": pod, "app_kubernetes_io_instance": NAME, "model": "m", **labels}
    return {"series": name + "{" + ", ".join(f'{k}="{v}"' for k, v in tags.items()) + "}", "values": values}


def traffic(pod: str, per_15s: int, preprocess_wait_s: float, batch_wait_s: float) -> list[dict[str, str]]:
    """A pod's counters: ``per_15s`` requests arriving and served every 15 s, each having waited the given
    seconds; and as many again arriving for a second model, and refused (counted on arrival, never served)."""
    h = "servoscope_stage_duration_seconds"
    return [
        series(COUNTER, pod, f"0+{per_15s}x80"),
        series(COUNTER, pod, f"0+{per_15s}x80", model="other"),
        series(f"{h}_count", pod, f"0+{per_15s}x80", stage="total"),
        series(f"{h}_sum", pod, f"0+{per_15s * preprocess_wait_s:g}x80", stage="preprocess_wait"),
        series(f"{h}_sum", pod, f"0+{per_15s * batch_wait_s:g}x80", stage="batch_wait"),
    ]


def autoscaling_tests(out: Path) -> dict[str, Any]:
    [group] = [g for g in spec(out, "prometheusrule.yaml")["groups"] if g["name"] == AUTOSCALING_GROUP]
    [alert] = [r for r in group["rules"] if "alert" in r]
    fired = {"severity": "warning", "namespace": NAMESPACE, "app_kubernetes_io_instance": NAME}
    summary = f"servoscope {NAME} in {NAMESPACE}: requests wait 187.5ms on average"
    return {
        "evaluation_interval": "15s",
        "tests": [
            {  # pod a waits 0.1875 s a request (0.125 + 0.0625; almost 4 times the 0.05 s target), pod b is
                # idle: the fleet's mean is a's (b serves nothing), above twice the target; b reads 0, not NaN.
                # (Rounded to 1/1024, which holds 0.1875 exactly: promtool compares floats exactly.)
                "interval": "15s",
                "input_series": [*traffic("a", 32, 0.125, 0.0625), *traffic("b", 0, 0, 0)],
                "promql_expr_test": [
                    {  # the HPA's metric: a's 2 × 32 arrivals every 15 s (both models, refused ones too)
                        "expr": RATE_RECORD,
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": f'{RATE_RECORD}{{namespace="{NAMESPACE}", pod="{p}"}}', "value": v}
                            for p, v in (("a", 2 * 32 / 15), ("b", 0))
                        ],
                    },
                    {
                        "expr": f"round({WAIT_RECORD}, 1 / 1024)",
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": f'{{namespace="{NAMESPACE}", pod="{p}"}}', "value": v}
                            for p, v in (("a", 0.1875), ("b", 0))
                        ],
                    },
                ],
                "alert_rule_test": [
                    {"alertname": alert["alert"], "eval_time": "5m"},  # pending: not yet for 10 minutes
                    {
                        "alertname": alert["alert"],
                        "eval_time": "15m",
                        "exp_alerts": [
                            {
                                "exp_labels": fired,
                                "exp_annotations": {
                                    "summary": summary,
                                    "description": alert["annotations"]["description"],
                                },
                            }
                        ],
                    },
                ],
            },
            {  # 0.08 s: above the target (the autoscaler's business), below twice it: no alert.
                "interval": "15s",
                "input_series": traffic("a", 32, 0.05, 0.03),
                "alert_rule_test": [{"alertname": alert["alert"], "eval_time": "15m"}],
            },
        ],
    }


def test_generated_rules_pass_promtool(generated: Path, tmp_path: Path) -> None:
    rules = rules_file(generated, tmp_path)
    promtool("check", "rules", str(rules))
    # deploy's own rule tests, run on the rules as the PrometheusRule ships them
    deploy_tests = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "rules_test.yml").read_text())
    (tmp_path / "deploy_test.yml").write_text(yaml.safe_dump({**deploy_tests, "rule_files": [str(rules)]}))
    promtool("test", "rules", str(tmp_path / "deploy_test.yml"))
    autoscaling = {"rule_files": [str(rules)], **autoscaling_tests(generated)}
    (tmp_path / "autoscaling_test.yml").write_text(yaml.safe_dump(autoscaling))
    promtool("test", "rules", str(tmp_path / "autoscaling_test.yml"))


# --- a real Prometheus --------------------------------------------------------------------------


def adapter_query(template: str, namespace: str, pods: list[str]) -> str:
    """The adapter's metricsQuery for a pods request, rendered as prometheus-adapter's
    pkg/naming/metrics_query.go Build does: namespace, then the resource label (=~ for several)."""
    pod = f'pod="{pods[0]}"' if len(pods) == 1 else f'pod=~"{"|".join(pods)}"'
    return template.replace("<<.LabelMatchers>>", f'namespace="{namespace}",{pod}').replace("<<.GroupBy>>", "pod")


def one_value(prom: Prometheus, expr: str, at: float) -> tuple[dict[str, str], float]:
    """The one sample ``expr`` gives at ``at`` (one instant for all: rate's extrapolation moves with it)."""
    body = prom.client.get("/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}).json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    [sample] = body["data"]["result"]
    return sample["metric"], float(sample["value"][1])


def test_autoscaling_queries_against_a_live_replica(
    generated: Path, tmp_path: Path, model_repository: Path, photos: dict[str, Photo]
) -> None:
    config = yaml.safe_load(documents(generated / "hpa/prometheus-adapter.yaml")[0]["data"]["config.yaml"])
    rate_rule, rule = config["rules"]
    keda = spec(generated, "keda/scaledobject.yaml")["triggers"][0]["metadata"]["query"]
    rules = rules_file(generated, tmp_path)
    server = start_server(model_repository, tmp_path, ("--models", MODEL, *WAITING))
    prom: Prometheus | None = None
    try:
        prom = start_prometheus(tmp_path, server.url.removeprefix("http://"), rules, POD_LABELS)
        bodies = [photo.jpeg for photo in photos.values()]
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            assert client.post(CLASSIFY, content=bodies[0], headers={"Content-Type": "image/jpeg"}).status_code == 200
            count = f'servoscope_stage_duration_seconds_count{{stage="total", pod="{POD}"}}'
            wait_for(lambda: prom.query(count), "the replica scraped")
            served = drive_load(server.url, bodies)
            assert served >= 40, server.log_tail()
            stages = client.get("/v1/stats").json()["models"][MODEL]["windows"]["5m"]["stages"]
        served_n = stages["total"]["count"]
        wait_for(lambda: [r for r in prom.query(count) if float(r["value"][1]) >= served_n], "the last request scraped")
        at = time.time()

        # The adapter finds the series its rule names, with the labels it maps to namespace and pod.
        found = prom.client.get("/api/v1/series", params={"match[]": rule["seriesQuery"]}).json()["data"]
        assert found and all(re.match(rule["name"]["matches"], s["__name__"]) and s["pod"] == POD for s in found)
        # Its query, for this pod alone and among several: one value for the pod, the mean wait.
        labels, per_pod = one_value(prom, adapter_query(rule["metricsQuery"], NAMESPACE, [POD]), at)
        assert labels == {"pod": POD}
        among = adapter_query(rule["metricsQuery"], NAMESPACE, [POD, "servoscope-5c7d9b8f6-gone1"])
        assert one_value(prom, among, at) == ({"pod": POD}, per_pod)
        expected = stages["preprocess_wait"]["mean"] + stages["batch_wait"]["mean"]
        print(f"\nmean wait: adapter {per_pod * 1e3:.3f} ms, /v1/stats {expected * 1e3:.3f} ms ({served} requests)")
        assert math.isfinite(per_pod) and abs(per_pod - expected) <= 0.05 * expected + 0.0005

        # The scaling metric: the pod's arrivals a second over the last minute, every request counted
        # (the one before the load and the load's); KEDA's query, one series (it refuses more), is the same
        # for a one-replica deployment.
        arrived = f'{COUNTER}{{pod="{POD}"}}'
        found = prom.client.get("/api/v1/series", params={"match[]": rate_rule["seriesQuery"]}).json()["data"]
        assert found and all(s["__name__"] == COUNTER and s["pod"] == POD for s in found)
        labels, rate = one_value(prom, adapter_query(rate_rule["metricsQuery"], NAMESPACE, [POD]), at)
        assert labels == {"pod": POD}
        total = one_value(prom, f"sum({arrived})", at)[1]
        print(f"\narrival rate: adapter {rate:.3f} req/s; {total:.0f} arrivals, all in the last minute")
        assert total >= served + 1 and rate * 60 == pytest.approx(total, rel=0.2)  # rate's extrapolation: < 20%
        assert one_value(prom, keda, at)[1] == pytest.approx(rate, rel=1e-9)

        # Every rule of the PrometheusRule evaluates without error; the wait is recorded per pod.
        names = {r.get("record") or r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}

        def evaluated() -> list[dict[str, Any]] | None:
            loaded = [r for g in prom.client.get("/api/v1/rules").json()["data"]["groups"] for r in g["rules"]]
            ran = all(not r["lastEvaluation"].startswith("0001-") for r in loaded)
            done = ran and {r["name"] for r in loaded} == names
            return loaded if done else None

        loaded = wait_for(evaluated, "every rule evaluated")
        unhealthy = {r["name"]: r.get("lastError") for r in loaded if r["health"] != "ok"}
        assert not unhealthy, unhealthy
        recorded = wait_for(lambda: prom.query(f'{WAIT_RECORD}{{pod="{POD}"}}'), "the wait recorded")
        assert float(recorded[0]["value"][1]) == pytest.approx(per_pod, rel=0.15, abs=0.001)
        assert wait_for(lambda: prom.query(f'{RATE_RECORD}{{pod="{POD}"}}'), "the arrival rate recorded")
    finally:
        if prom is not None:
            prom.stop()
        server.stop()

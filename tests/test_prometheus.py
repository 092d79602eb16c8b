"""deploy/ against a real Prometheus: it scrapes a real servoscope on loopback with the deploy
rules loaded; its per-stage P95s agree with ``/v1/stats``, every rule evaluates cleanly, and
every Grafana panel expression runs. Skipped only where the ``prometheus``/``promtool``
binaries are not installed (``make test`` installs them from Debian's ``prometheus`` package).
"""

from __future__ import annotations

import bisect
import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from servoscope.stages import STAGE_NAMES
from servoscope.telemetry.metrics import LATENCY_BUCKETS_S
from support import CLASSIFY, MODEL, REPO_ROOT, Photo, ServerProcess, free_port, start_server, wait_for

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="the prometheus and promtool binaries are not on PATH (Debian: apt-get install prometheus)",
)

DEPLOY = REPO_ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules_test.yml"
CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "servoscope.json"

LOAD_S = 15.0  # load duration bound; the [30s] rate window below must cover all of it
LOAD_MAX_REQUESTS = 300
LOAD_CONCURRENCY = 4
WINDOW = "30s"
DEADLINE_S = 30.0
STAGE_P95 = (
    "histogram_quantile(0.95, sum by (le, stage) "
    '(rate(servoscope_stage_duration_seconds_bucket{{model="{model}"}}[{window}])))'
)


# --- a real Prometheus -------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    client: httpx.Client

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at now; fails with Prometheus's own error message."""
        body = self.client.get("/api/v1/query", params={"query": expr}).json()
        assert body["status"] == "success", f"{expr}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]["result"]

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
                return
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(15)


def scrape_config(target: str, rules: Path = RULES, labels: dict[str, str] | None = None) -> dict[str, Any]:
    # JSON is YAML: no YAML library needed to write Prometheus's configuration.
    static = {"targets": [target], **({"labels": labels} if labels else {})}
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "servoscope", "metrics_path": "/metrics", "static_configs": [static]}],
    }


def start_prometheus(
    workdir: Path, target: str, rules: Path = RULES, labels: dict[str, str] | None = None
) -> Prometheus:
    """Prometheus scraping ``target`` every second with ``rules`` loaded; ``labels`` are added to
    every series scraped from it (as a service discovery's target labels would be)."""
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps(scrape_config(target, rules, labels)))
    for attempt in range(3):
        port = free_port()
        log = workdir / f"prometheus-{port}.log"
        command = [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={workdir / f'tsdb-{port}'}",
            "--storage.tsdb.retention.time=1h",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        prom = Prometheus(
            f"http://127.0.0.1:{port}", process, log, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
        )

        def ready(process: subprocess.Popen[bytes] = process, prom: Prometheus = prom) -> bool:
            if process.poll() is not None:
                return True
            try:
                return prom.client.get("/-/ready").status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(ready, "Prometheus ready", DEADLINE_S)
        except AssertionError:
            prom.stop()
            raise AssertionError(f"Prometheus not ready:\n{prom.log_tail()}") from None
        if process.poll() is None:
            return prom
        prom.stop()
        if attempt == 2 or "address already in use" not in prom.log_tail().lower():
            raise AssertionError(f"Prometheus exited with {process.returncode}:\n{prom.log_tail()}")
    raise AssertionError("unreachable")


@pytest.fixture
def stack(model_repository: Path, tmp_path: Path) -> Iterator[tuple[ServerProcess, Prometheus]]:
    """A servoscope of this test's own, and a Prometheus scraping it every second."""
    server = start_server(model_repository, tmp_path, ("--models", MODEL))
    prometheus: Prometheus | None = None
    try:
        prometheus = start_prometheus(tmp_path, server.url.removeprefix("http://"))
        yield server, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        server.stop()


# --- load --------------------------------------------------------------------------------------


def drive_load(url: str, bodies: list[bytes]) -> int:
    """Paced load from a few threads: request n is sent no earlier than n / rate seconds in, so
    LOAD_MAX_REQUESTS spread over LOAD_S seconds (fewer if the service is slower). Returns 2xx count."""
    start = time.monotonic()
    deadline = start + LOAD_S
    interval_s = LOAD_S / LOAD_MAX_REQUESTS
    lock = threading.Lock()
    sent = [0]

    def worker(k: int) -> int:
        ok = 0
        with httpx.Client(base_url=url, timeout=30.0) as client:
            while time.monotonic() < deadline:
                with lock:
                    if sent[0] >= LOAD_MAX_REQUESTS:
                        break
                    sent[0] += 1
                    n = sent[0]
                time.sleep(max(0.0, start + n * interval_s - time.monotonic()))  # pacing, not waiting
                body = bodies[(n + k) % len(bodies)]
                response = client.post(CLASSIFY, content=body, headers={"Content-Type": "image/jpeg"})
                ok += response.status_code == 200
        return ok

    with ThreadPoolExecutor(LOAD_CONCURRENCY) as pool:
        return sum(pool.map(worker, range(LOAD_CONCURRENCY)))


# --- comparison --------------------------------------------------------------------------------


def bucket_index(seconds: float) -> int:
    """Index of the histogram bucket holding ``seconds``: first bound >= it (len(bounds) is +Inf)."""
    return bisect.bisect_left(LATENCY_BUCKETS_S, seconds)


def p95_agrees(prometheus_s: float, stats_s: float) -> bool:
    """Whether a Prometheus P95 and the /v1/stats P95 of the same requests agree as well as the
    bucket layout allows.

    ``histogram_quantile`` finds the bucket holding the 95th-percentile rank and interpolates
    linearly inside it, so it only knows the true value lies in that bucket (le bounds 1.25-1.5x
    apart, the lowest [0, 0.5 ms]: a 100 µs stage reads as ~0.47 ms). /v1/stats is a DDSketch,
    within 1% of the exact value. The two populations also differ by a few requests: rate()
    starts from the first scrape after the warm-up request, while /v1/stats has that one too;
    and the two use slightly different rank conventions. So: the sketch value (±1%) must fall in
    the Prometheus value's bucket or an adjacent one.
    """
    here = bucket_index(prometheus_s)
    low, high = bucket_index(stats_s * 0.99), bucket_index(stats_s * 1.01)
    return low - 1 <= here <= high + 1


def rule_names(text: str) -> set[str]:
    return set(re.findall(r"^\s*- (?:record|alert): (\S+)\s*$", text, flags=re.MULTILINE))


def panel_expressions(dashboard: dict[str, Any]) -> list[str]:
    panels = [*dashboard["panels"], *(p for row in dashboard["panels"] for p in row.get("panels", []))]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", WINDOW).replace("${model}", MODEL).replace("$model", MODEL)


# --- the test ----------------------------------------------------------------------------------


def test_deploy_config_and_rules_pass_promtool() -> None:
    checks = (["check", "rules", str(RULES)], ["check", "config", str(CONFIG)], ["test", "rules", str(RULES_TEST)])
    for args in checks:
        done = subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=60)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert "SUCCESS" in output and "FAILED" not in output, output


def test_prometheus_agrees_with_stats(stack: tuple[ServerProcess, Prometheus], photos: dict[str, Photo]) -> None:
    server, prom = stack
    bodies = [photo.jpeg for photo in photos.values()]
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        # One request first, so every stage's series exists from Prometheus's first scrape on.
        assert client.post(CLASSIFY, content=bodies[0], headers={"Content-Type": "image/jpeg"}).status_code == 200
        wait_for(
            lambda: prom.query(f'servoscope_stage_duration_seconds_count{{model="{MODEL}", stage="total"}}'),
            "Prometheus scraped the model's stage histograms",
            DEADLINE_S,
        )
        served = drive_load(server.url, bodies)
        assert served >= 40, f"only {served} requests served under load:\n{server.log_tail()}"

        def stats_total() -> float:
            return client.get("/v1/stats").json()["models"][MODEL]["windows"]["5m"]["stages"]["total"]["count"]

        expected = stats_total()
        wait_for(
            lambda: [
                r
                for r in prom.query(f'servoscope_stage_duration_seconds_count{{model="{MODEL}", stage="total"}}')
                if float(r["value"][1]) >= expected
            ],
            "Prometheus scraped the last request",
            DEADLINE_S,
        )

        def p95_per_stage() -> dict[str, float] | None:
            result = prom.query(STAGE_P95.format(model=MODEL, window=WINDOW))
            values = {r["metric"]["stage"]: float(r["value"][1]) for r in result}
            return values if set(values) == set(STAGE_NAMES) else None

        from_prometheus: dict[str, float] = wait_for(p95_per_stage, "a P95 for every stage", DEADLINE_S)
        stages = client.get("/v1/stats").json()["models"][MODEL]["windows"]["5m"]["stages"]

    rows = [(s, from_prometheus[s], stages[s]["p95"], stages[s]["count"]) for s in STAGE_NAMES]
    table = "\n".join(
        f"{s:12} prometheus {p * 1e3:9.3f} ms   /v1/stats {v * 1e3:9.3f} ms   n={n:.0f}" for s, p, v, n in rows
    )
    print(f"\nP95 by stage, {served} requests under load:\n{table}")
    disagree = [s for s, p, v, _ in rows if not p95_agrees(p, v)]
    assert not disagree, f"P95 of {disagree} disagree beyond the bucket layout:\n{table}"

    # Every deploy rule is loaded and has evaluated without error.
    names = rule_names(RULES.read_text())

    def evaluated_rules() -> list[dict[str, Any]] | None:
        groups = prom.client.get("/api/v1/rules").json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        done = all(not r["lastEvaluation"].startswith("0001-") for r in rules)
        return rules if done and {r["name"] for r in rules} == names else None

    rules = wait_for(evaluated_rules, "every rule loaded and evaluated", DEADLINE_S)
    unhealthy = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not unhealthy, unhealthy

    # The recording rules produce the model's series.
    recorded = prom.query(f'model_stage:servoscope_stage_duration_seconds:p95_rate1m{{model="{MODEL}"}}')
    assert {r["metric"]["stage"] for r in recorded} == set(STAGE_NAMES)
    for ratio in ("model:servoscope_requests_errors:ratio_rate1m", "model:servoscope_refused:ratio_rate1m"):
        assert [float(r["value"][1]) for r in prom.query(f'{ratio}{{model="{MODEL}"}}')] == [0.0], ratio

    # Every Grafana panel expression runs, and the model variable finds the model.
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = panel_expressions(dashboard)
    assert len(expressions) >= 15
    for expr in expressions:
        prom.query(grafana_to_promql(expr))
    models = prom.client.get("/api/v1/label/model/values", params={"match[]": "servoscope_requests_total"}).json()
    assert MODEL in models["data"]

"""Rollouts on a real server over loopback, with real weights: the split (header, sticky key,
weight), an identical variant promoted through the CLI, a variant slowed by the injected inference
delay rolled back with no request dropped and the stage named, mirrored requests shed first, and
the INT8 variant judged on its disagreement with the owners' sign-off in the audit log.

Every loop is bounded by a count of requests; waits poll with a deadline."""

from __future__ import annotations

import base64
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from servoscope.cli import main
from servoscope.rollout.audit import read
from servoscope.variants.quantize import quantize
from support import (
    CLASSIFY,
    EXPECTED_TOP1,
    MODEL,
    Photo,
    ServerProcess,
    free_port,
    metric_sum,
    metric_value,
    start_server,
    wait_for,
)
from test_grpc import raw_error, raw_infer, raw_request

ROLLOUT = f"/v1/rollouts/{MODEL}"
CANARY = f"{MODEL}@canary"
INT8 = f"{MODEL}_int8"
SMALL_GATE = {"min_canary_requests": 50, "min_baseline_requests": 48, "refresh_every": 16, "baseline_window": 256}
SURE = {**SMALL_GATE, "alpha": 0.001}  # where a false FAIL would fail the test: one in a thousand rollouts at most
NEVER_DONE = {**SMALL_GATE, "min_canary_requests": 1_000_000}  # the rollout stays at its first step


@pytest.fixture(scope="module")
def grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def rollout_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory, grpc_port: int
) -> Iterator[ServerProcess]:
    """Serves the model and its INT8 variant (the session's, quantized once and kept while current), over
    HTTP and gRPC."""
    quantize(model_repository, MODEL, INT8, force=False)
    args = ("--instances", "1", "--grpc-port", str(grpc_port))
    srv = start_server(model_repository, tmp_path_factory.mktemp("rollout"), args)
    yield srv
    srv.stop()


@pytest.fixture
def admin(rollout_server: ServerProcess) -> Iterator[httpx.Client]:
    """A client of the rollout server; whatever rollout a test leaves running is aborted after it."""
    with httpx.Client(base_url=rollout_server.url, timeout=60.0) as c:
        yield c
        c.post(f"{ROLLOUT}/abort")


def start(client: httpx.Client, audit: Path, **body: Any) -> dict[str, Any]:
    response = client.post(ROLLOUT, json={"audit_log": str(audit), "seed": 7, **body})
    assert response.status_code == 201, response.text
    return response.json()


def status(client: httpx.Client) -> dict[str, Any]:
    return client.get(ROLLOUT).raise_for_status().json()


def send(
    client: httpx.Client,
    images: list[bytes],
    count: int,
    workers: int = 4,
    headers: dict[str, str] | None = None,
    until: Callable[[], bool] = lambda: False,
) -> list[httpx.Response]:
    """Up to ``count`` classify requests from ``workers`` threads, stopping early once ``until()``."""
    tickets = itertools.count()
    lock = threading.Lock()
    out: list[httpx.Response] = []

    def work() -> None:
        while (n := next(tickets)) < count and not until():
            response = client.post(
                CLASSIFY, content=images[n % len(images)], headers={"Content-Type": "image/jpeg", **(headers or {})}
            )
            with lock:
                out.append(response)

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()
    return out


def variants(responses: list[httpx.Response]) -> list[str]:
    return [r.headers["x-variant"] for r in responses]


def counted(client: httpx.Client, routed: int) -> dict[str, Any] | None:
    """The status, once ``routed`` requests have been counted (else None)."""
    now = status(client)
    return now if sum(now["served"].values()) == routed else None


def ended(client: httpx.Client) -> Callable[[], bool]:
    return lambda: status(client)["state"] != "running"


@pytest.fixture(scope="module")
def images(photos: dict[str, Photo]) -> list[bytes]:
    return [photos[name].jpeg for name in EXPECTED_TOP1]


def test_the_split_by_header_sticky_key_and_weight(admin: httpx.Client, images: list[bytes], tmp_path: Path) -> None:
    start(admin, tmp_path / "audit.jsonl", canary={"version": "1"}, steps_percent=[50, 100], gate=NEVER_DONE)
    pinned = send(admin, images, 6, headers={"X-Variant": "canary"})
    assert variants(pinned) == ["canary"] * 6 and {r.json()["model"] for r in pinned} == {CANARY}
    assert variants(send(admin, images, 3, headers={"X-Variant": "baseline"})) == ["baseline"] * 3
    wrong = send(admin, images, 1, headers={"X-Variant": "nightly"})[0]
    assert wrong.status_code == 400 and "X-Variant must be one of baseline, canary" in wrong.json()["error"]
    per_key = {key: set(variants(send(admin, images, 2, 1, {"X-Client-Key": key}))) for key in map(str, range(16))}
    assert all(len(seen) == 1 for seen in per_key.values()), per_key  # a client sticks to its variant
    assert set().union(*per_key.values()) == {"baseline", "canary"}  # and the keys spread over both
    weighted = send(admin, images, 40)
    assert set(variants(weighted)) == {"baseline", "canary"} and all(r.status_code == 200 for r in weighted)
    routed = 6 + 3 + 32 + 40  # the refused header counts for no variant
    # a request is counted once its answer has been delivered: just after the client has read it
    now = wait_for(lambda: counted(admin, routed), f"{routed} requests counted")
    verdict = now["verdict"]  # the gate counts the weighted draws only: pinned and sticky requests are not random
    assert verdict["canary_requests"] + verdict["baseline_requests"] == 40
    metrics = admin.get("/metrics").text
    assert metric_sum(metrics, "servoscope_requests_total", model=CANARY, variant="canary") >= 6
    assert metric_sum(metrics, "servoscope_stage_duration_seconds_count", model=MODEL, variant="baseline") > 0
    assert metric_value(metrics, "servoscope_requests_pending", model=CANARY, variant="canary") == 0
    assert metric_value(metrics, "servoscope_queue_depth", queue="batch", model=MODEL, variant="baseline") == 0
    assert metric_sum(metrics, "servoscope_rollout_requests_total", model=MODEL) == routed
    assert metric_value(metrics, "servoscope_rollout_canary_share", model=MODEL) == 0.5
    per_model = admin.get("/v1/stats").json()["models"]
    assert per_model[CANARY]["variant"] == "canary" and per_model[MODEL]["variant"] == "baseline"


def v2_infer(client: httpx.Client, image: bytes, headers: dict[str, str]) -> httpx.Response:
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}
    return client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [tensor]}, headers=headers)


def grpc_variant(address: str, image: bytes, metadata: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """(the answering model, the trailer's x-variant) of one gRPC ModelInfer."""
    response, trailer = raw_infer(address, raw_request([image]), metadata)
    return response.model_name, trailer["x-variant"]


def test_the_split_on_v2_http_and_grpc(
    admin: httpx.Client, images: list[bytes], grpc_port: int, tmp_path: Path
) -> None:
    start(admin, tmp_path / "audit.jsonl", canary={"version": "1"}, steps_percent=[50, 100], gate=NEVER_DONE)
    address = f"127.0.0.1:{grpc_port}"
    pinned = [v2_infer(admin, image, {"X-Variant": "canary"}) for image in images[:3]]
    assert [(r.headers["x-variant"], r.json()["model_name"]) for r in pinned] == [("canary", CANARY)] * 3
    assert [grpc_variant(address, image, (("x-variant", "canary"),)) for image in images[:3]] == [
        (CANARY, "canary")
    ] * 3
    assert grpc_variant(address, images[0], (("x-variant", "baseline"),)) == (MODEL, "baseline")
    assert v2_infer(admin, images[0], {"X-Variant": "nightly"}).status_code == 400
    error = raw_error(address, raw_request([images[0]]), (("x-variant", "nightly"),))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "X-Variant must be one of" in error.details()
    keys = [str(key) for key in range(8)]
    over_v2 = {
        key: {v2_infer(admin, images[0], {"X-Client-Key": key}).headers["x-variant"] for _ in "ab"} for key in keys
    }
    over_grpc = {key: {grpc_variant(address, images[0], (("x-client-key", key),))[1] for _ in "ab"} for key in keys}
    assert over_v2 == over_grpc and all(len(seen) == 1 for seen in over_v2.values())  # the same key, the same variant
    assert set().union(*over_v2.values()) == {"baseline", "canary"}
    drawn = [v2_infer(admin, images[n % len(images)], {}).headers["x-variant"] for n in range(20)]
    drawn += [grpc_variant(address, images[n % len(images)], ())[1] for n in range(20)]
    assert set(drawn) == {"baseline", "canary"}
    routed = 3 + 4 + 32 + 40  # the refused headers count for no variant
    now = wait_for(lambda: counted(admin, routed), f"{routed} requests counted")
    assert now["verdict"]["canary_requests"] + now["verdict"]["baseline_requests"] == 40  # the drawn ones only


def test_admin_requests_are_checked(admin: httpx.Client, tmp_path: Path) -> None:
    assert admin.get("/v1/rollouts/nope").status_code == 404
    bad = admin.post(ROLLOUT, json={"audit_log": str(tmp_path / "a.jsonl"), "steps_percent": [50, 20, 100]})
    assert bad.status_code == 400 and "steps must" in bad.json()["error"]
    same = admin.post(ROLLOUT, json={"audit_log": str(tmp_path / "a.jsonl")})
    assert same.status_code == 400 and "must differ" in same.json()["error"]
    unknown = admin.post(ROLLOUT, json={"audit_log": str(tmp_path / "a.jsonl"), "gate": {"alfa": 1}})
    assert unknown.status_code == 400 and "alfa" in unknown.json()["error"]
    unwritable = admin.post(ROLLOUT, json={"audit_log": "/proc/no/such.jsonl", "canary": {"version": "1"}})
    assert unwritable.status_code == 400 and "cannot write the audit log" in unwritable.json()["error"]
    assert admin.post("/v1/rollouts/nope", json={"audit_log": "x.jsonl", "canary": {"version": "1"}}).status_code == 404


def test_an_identical_variant_is_promoted(
    admin: httpx.Client, images: list[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit = tmp_path / "audit.jsonl"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SURE.items()]
    url = str(admin.base_url).rstrip("/")
    argv = ["rollout", "start", MODEL, "--url", url, "--canary-version", "1", "--steps", "50,100", "--seed", "3"]
    assert main([*argv, "--audit-log", str(audit), *flags]) == 0
    with ThreadPoolExecutor(1) as traffic:  # the CLI watches while the traffic flows
        responses = traffic.submit(send, admin, images, 600, until=ended(admin))
        watched = main(["rollout", "status", MODEL, "--url", url, "--watch", "--watch-timeout-s", "120"])
        assert watched == 0 and all(r.status_code == 200 for r in responses.result())
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith("running ") and shown[-1].startswith("promoted    step 1/1 at 100%   PASS"), shown
    events = [line["event"] for line in read(audit)]
    assert events == ["start", "step", "step_passed", "promoted"], events
    assert admin.post(f"{ROLLOUT}/flagger").status_code == 200
    assert variants(send(admin, images, 4)) == ["canary"] * 4  # promoted: all traffic on the variant


def test_a_slowed_variant_is_rolled_back_with_no_request_dropped(
    admin: httpx.Client, images: list[bytes], tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    # 100 ms a batch: found within tens of canary requests however busy the machine; 300 needed to pass
    slowed = {"version": "1", "inference_delay_ms": 100}
    start(admin, audit, canary=slowed, steps_percent=[50, 100], gate={**SMALL_GATE, "min_canary_requests": 300})
    responses = send(admin, images, 600, until=ended(admin))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200][:3]
    now = status(admin)
    assert now["state"] == "rolled_back" and now["share"] == 0.0, now
    assert now["verdict"]["check"] == "latency" and now["verdict"]["stage"] == "inference", now["verdict"]
    assert "the stage that slowed: inference" in now["verdict"]["reason"]
    after = send(admin, images, 12)
    assert variants(after) == ["baseline"] * 12 and all(r.status_code == 200 for r in after)
    last = read(audit)[-1]
    assert last["event"] == "rolled_back" and last["share"] == 0.0 and last["verdict"]["outcome"] == "FAIL"
    argo = admin.get(f"{ROLLOUT}/verdict").json()
    assert argo["outcome"] == "FAIL" and argo["stage"] == "inference" and argo["state"] == "rolled_back"
    assert admin.post(f"{ROLLOUT}/flagger").status_code == 412


def test_mirrored_requests_are_shed_first_and_change_no_answer(
    admin: httpx.Client, photos: dict[str, Photo], tmp_path: Path
) -> None:
    start(
        admin,
        tmp_path / "audit.jsonl",
        canary={"version": "1", "inference_delay_ms": 250},
        steps_percent=[1, 100],
        mirror_share=1.0,
        gate=NEVER_DONE,
    )
    responses = send(admin, [photos["coffee"].jpeg], 60, workers=6)
    baseline = [r for r in responses if r.headers["x-variant"] == "baseline"]
    assert all(r.status_code == 200 for r in responses) and len(baseline) >= 50
    assert all(r.json()["predictions"][0]["label"] == "espresso" and r.json()["model"] == MODEL for r in baseline)
    mirror = wait_for(lambda: (m := status(admin)["mirror"])["sent"] >= 1 and m, "a mirrored request answered")
    assert mirror["shed"] >= 1, mirror  # at most 4 mirrors in flight on a canary slowed to 250 ms a batch
    assert mirror["sent"] + mirror["shed"] + mirror["failed"] <= len(baseline)
    metrics = admin.get("/metrics").text
    assert metric_value(metrics, "servoscope_rollout_mirrored_total", model=MODEL, outcome="shed") >= mirror["shed"]


def test_the_int8_variant_needs_sign_off_and_is_judged_on_disagreement(
    admin: httpx.Client, images: list[bytes], tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    body = {
        "canary": {"model": INT8},
        "steps_percent": [50, 100],
        "mirror_share": 1.0,
        "gate": {**SURE, "max_disagreement": 0.25, "min_mirrored_requests": 30},
    }
    refused = admin.post(ROLLOUT, json={"audit_log": str(audit), **body})
    assert refused.status_code == 400 and "sign-off" in refused.json()["error"]
    start(admin, audit, signoff="vision-models team, ticket ML-1234", **body)
    responses = send(admin, images, 600, until=ended(admin))
    assert all(r.status_code == 200 for r in responses)
    lines = read(audit)
    assert lines[0]["signoff"] == "vision-models team, ticket ML-1234" and lines[0]["canary"] == INT8
    final = lines[-1]
    assert final["event"] in ("promoted", "rolled_back"), final
    disagreement = next(e for e in final["verdict"]["evidence"] if e["check"] == "disagreement")
    assert final["verdict"]["mirrored_requests"] >= 1
    if final["event"] == "promoted":
        assert final["verdict"]["mirrored_requests"] >= 30 and disagreement["log_e"] < disagreement["boundary"]


def test_after_a_promotion_the_variant_is_the_next_baseline(
    admin: httpx.Client, images: list[bytes], tmp_path: Path
) -> None:
    first = start(admin, tmp_path / "first.jsonl", canary={"version": "1"}, steps_percent=[50, 100], gate=NEVER_DONE)
    assert admin.post(f"{ROLLOUT}/promote", headers={"X-Operator": "alice"}).json()["state"] == "promoted"
    promoted = read(tmp_path / "first.jsonl")[-1]
    assert (promoted["event"], promoted["by"], promoted["share"]) == ("promoted", "alice", 1.0)
    other_batching = {"overrides": {"max_batch_size": 4}}  # the same weights, another batching config
    after = start(admin, tmp_path / "second.jsonl", canary=other_batching, steps_percent=[50, 100], gate=NEVER_DONE)
    assert after["baseline"] == first["canary"] and after["canary"] not in (first["canary"], MODEL)
    loaded = admin.get(f"/v1/models/{after['canary']}").json()
    assert loaded["config"]["batching"]["max_batch_size"] == 4 and loaded["version"] == "1"
    served = send(admin, images, 4, headers={"X-Variant": "baseline"})
    assert {r.json()["model"] for r in served} == {first["canary"]}

"""The HTTP handlers in process: the real app and pipeline through httpx's ASGI transport, with a
FakeRuntime for the model and a ManualClock for time (see inprocess.py). What needs no real model
is tested here — errors, headers, priorities, deadlines, the stats document — in milliseconds."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

import servoscope
from inprocess import ANSWER, CLASSIFY, INFERENCE_S, MODEL, InProcess, jpeg, run_app
from servoscope.clock import ManualClock
from servoscope.server.app import create_app
from servoscope.settings import Settings
from servoscope.stages import STAGE_NAMES
from servoscope.telemetry import document
from servoscope.telemetry.recorder import Telemetry
from support import wait_until

JPEG = {"Content-Type": "image/jpeg"}


def timing_ms(response: httpx.Response) -> dict[str, float]:
    """The ``Server-Timing`` header as stage → milliseconds."""
    parts = (item.strip().split(";dur=") for item in response.headers["server-timing"].split(","))
    return {name: float(ms) for name, ms in parts}


def post(app: InProcess, headers: dict[str, str] | None = None) -> asyncio.Task[httpx.Response]:
    """A classification sent now, answered later (its task)."""
    return asyncio.create_task(app.client.post(CLASSIFY, content=jpeg(), headers={**JPEG, **(headers or {})}))


def test_an_answer_carries_its_predictions_and_every_stage_in_server_timing(tmp_path: Path) -> None:
    async def scenario(app: InProcess) -> httpx.Response:
        return await app.client.post(CLASSIFY, params={"top_k": 2}, content=jpeg(), headers=JPEG)

    response = run_app(tmp_path, scenario)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == MODEL and next(p["index"] for p in body["predictions"]) == ANSWER
    assert len(body["predictions"]) == 2 and body["predictions"][0]["label"] == f"class {ANSWER}"
    timings = timing_ms(response)
    assert list(timings) == list(STAGE_NAMES)
    # the manual clock moved only while the fake model ran
    assert timings["inference"] == timings["total"] == pytest.approx(INFERENCE_S * 1000)
    assert body["timings_ms"]["inference"] == pytest.approx(INFERENCE_S * 1000)


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "says"),
    [
        ("/v1/models/nope/classify", JPEG, jpeg(), 404, "'nope' is not served"),
        (CLASSIFY, {"Content-Type": "text/plain"}, b"hello", 415, "'text/plain' is not accepted"),
        (f"{CLASSIFY}?top_k=0", JPEG, jpeg(), 400, "top_k must be between 1 and 10, got 0"),
        (f"{CLASSIFY}?top_k=two", JPEG, jpeg(), 400, "top_k must be an integer"),
        (CLASSIFY, JPEG, b"not a jpeg at all", 400, "image"),
        (CLASSIFY, JPEG, b"", 400, "empty"),
        (CLASSIFY, JPEG, bytes(5000), 413, "above the limit of 4096"),
        (CLASSIFY, {**JPEG, "X-Request-Timeout": "-5"}, jpeg(), 400, "X-Request-Timeout"),
        (CLASSIFY, {**JPEG, "grpc-timeout": "10x"}, jpeg(), 400, "grpc-timeout"),
        (CLASSIFY, {**JPEG, "X-Priority": "urgent"}, jpeg(), 400, "priority must be high, normal or low"),
    ],
)
def test_a_bad_request_is_a_json_error_with_its_status(
    tmp_path: Path, path: str, headers: dict[str, str], body: bytes, status: int, says: str
) -> None:
    async def scenario(app: InProcess) -> httpx.Response:
        return await app.client.post(path, content=body, headers=headers)

    response = run_app(tmp_path, scenario, max_body_bytes=4096)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert says.lower() in response.json()["error"].lower()
    assert "total" in timing_ms(response) and "retry-after" not in response.headers


def test_overload_refuses_low_priority_first_and_high_last_each_with_retry_after(tmp_path: Path) -> None:
    """max_pending 4, static admission: low enters below half of it, normal below 90 %, high up to all."""

    Outcome = tuple[list[httpx.Response], dict[str, httpx.Response], document.StatsDocument]

    async def scenario(app: InProcess) -> Outcome:
        app.fake.hold()
        admitted = [post(app)]
        await wait_until(lambda: app.fake.running == 1, "the first batch running")
        admitted.append(post(app))
        await wait_until(lambda: app.service.pending == 2, "a second request admitted")
        refused = {"low": await app.client.post(CLASSIFY, content=jpeg(), headers={**JPEG, "X-Priority": "low"})}
        admitted.append(post(app, {"X-Priority": "normal"}))
        await wait_until(lambda: app.service.pending == 3, "a third request admitted")
        refused["normal"] = await app.client.post(CLASSIFY, content=jpeg(), headers=JPEG)
        admitted.append(post(app, {"X-Priority": "high"}))
        await wait_until(lambda: app.service.pending == 4, "a high-priority request admitted")
        refused["high"] = await app.client.post(CLASSIFY, content=jpeg(), headers={**JPEG, "X-Priority": "high"})
        app.fake.release()
        answered = list(await asyncio.gather(*admitted))
        stats = document.read((await app.client.get("/v1/stats")).json())
        return answered, refused, stats

    answered, refused, stats = run_app(tmp_path, scenario, max_pending=4)
    assert [r.status_code for r in answered] == [200] * 4
    for priority, response in refused.items():
        assert response.status_code == 429, (priority, response.text)
        assert response.headers["retry-after"] == "1"
        assert "at capacity" in response.json()["error"]
    assert "for low priority 2" in refused["low"].json()["error"]
    throughput = stats.models[MODEL].windows["1m"].throughput
    assert throughput.by_code == {"200": 4.0, "429": 3.0} and throughput.refused_by_reason == {"pending_limit": 3.0}


def test_a_request_whose_deadline_passes_in_the_queue_is_answered_504(tmp_path: Path) -> None:
    async def scenario(app: InProcess) -> tuple[httpx.Response, httpx.Response]:
        app.fake.hold()
        first = post(app)
        await wait_until(lambda: app.fake.running == 1, "the first batch running")
        short = post(app, {"X-Request-Timeout": "50"})
        await wait_until(lambda: app.service.batcher.depth == 1, "the short request queued")
        app.clock.advance(0.1)  # past its 50 ms
        app.fake.release()
        return await first, await short

    first, short = run_app(tmp_path, scenario)
    assert first.status_code == 200
    assert short.status_code == 504 and "deadline" in short.json()["error"]
    assert {"preprocess", "total"} <= set(timing_ms(short)) and "inference" not in timing_ms(short)  # never ran


def test_the_stats_document_the_app_answers_reads_as_the_typed_document(tmp_path: Path) -> None:
    async def scenario(app: InProcess) -> dict[str, object]:
        for _ in range(3):
            assert (await app.client.post(CLASSIFY, content=jpeg(), headers=JPEG)).status_code == 200
        return (await app.client.get("/v1/stats")).json()

    wire = run_app(tmp_path, scenario)
    assert wire["schema_version"] == document.SCHEMA_VERSION
    window = document.read(wire).models[MODEL].windows["1m"]
    inference = window.stages["inference"]
    assert inference is not None and inference.count == 3
    assert inference.p50 == pytest.approx(INFERENCE_S, rel=0.02)  # the sketch's 1 % accuracy
    assert window.throughput.by_code == {"200": 3.0} and window.batches.size_counts == {"1": 3.0}
    running = document.read(wire).deployment  # what is running: the doctor's evidence of a deploy or config change
    assert running.servoscope_version == servoscope.__version__ and running.process_id == os.getpid()
    assert running.process_started is not None and running.process_started <= wire["time"]
    assert running.settings["max_pending"] == Settings.model_fields["max_pending"].default
    assert not any(key.startswith("faults") for key in running.settings)  # drill settings stay out
    assert "onnxruntime" in running.packages and "numpy" in running.packages
    served = running.models[MODEL]
    assert served.instances == len(served.instance_pids) >= 1 and served.batching["max_batch_size"] >= 1


def test_before_start_up_the_app_answers_503_with_retry_after(tmp_path: Path) -> None:
    """The lifespan has not run: no pipeline yet (a server still loading its models)."""
    clock = ManualClock()
    settings = Settings(model_repository=tmp_path, models=(MODEL,), default_model=MODEL, prepare_default_model=False)
    app = create_app(settings, clock=clock, telemetry=Telemetry(clock, CollectorRegistry()), env={})

    async def requests() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://servoscope.test") as client:
            return await client.post(CLASSIFY, content=jpeg(), headers=JPEG), await client.get("/v1/stats")

    classify, stats = asyncio.run(requests())
    assert classify.status_code == 503 and classify.headers["retry-after"] == "1"
    assert "still starting" in classify.json()["error"]
    assert stats.status_code == 503 and "still starting" in stats.json()["error"]


def infer_json(images: int, top_k: int = 1) -> dict[str, object]:
    """An Open Inference Protocol request carrying ``images`` JPEGs, base64 in JSON."""
    data = [base64.b64encode(jpeg()).decode()] * images
    return {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [images], "data": data}],
        "parameters": {"top_k": top_k},
    }


def test_open_inference_protocol_answers_every_image_and_refuses_what_is_wrong(tmp_path: Path) -> None:
    infer = f"/v2/models/{MODEL}/infer"

    async def scenario(app: InProcess) -> dict[str, httpx.Response]:
        return {
            "ready": await app.client.get("/v2/health/ready"),
            "three": await app.client.post(infer, json=infer_json(3, top_k=2)),
            "not json": await app.client.post(infer, content=b"{nope", headers={"Content-Type": "application/json"}),
            "too many": await app.client.post(infer, json=infer_json(5)),
            "wrong version": await app.client.post(f"/v2/models/{MODEL}/versions/7/infer", json=infer_json(1)),
        }

    answers = run_app(tmp_path, scenario, max_batch_size=4, max_images_per_request=4)
    assert answers["ready"].status_code == 200
    three = answers["three"]
    assert three.status_code == 200, three.text
    outputs = {o["name"]: o for o in three.json()["outputs"]}
    assert outputs["indices"]["shape"] == [3, 2] and outputs["indices"]["data"][::2] == [ANSWER] * 3
    assert list(timing_ms(three)) == list(STAGE_NAMES)
    assert answers["not json"].status_code == 400 and "not valid JSON" in answers["not json"].json()["error"]
    assert answers["too many"].status_code == 400 and "between 1 and 4 images" in answers["too many"].json()["error"]
    assert answers["wrong version"].status_code == 400 and "not '7'" in answers["wrong version"].json()["error"]


def test_time_admission_queues_what_fits_the_objective_and_refuses_the_rest(tmp_path: Path) -> None:
    """Batches of one take 4 ms (the fake), the objective is 21 ms: a normal request (90 %, 18.9 ms)
    is admitted while it would be answered within it — 4 in progress, the fifth predicted at 20 ms
    is refused — a high one (all 21 ms) takes one more place, a low one (10.5 ms) none; a request
    whose own deadline is sooner is refused by it. Each refusal says when to come back."""

    async def scenario(app: InProcess) -> dict[str, httpx.Response]:
        assert (await post(app)).status_code == 200  # the cost model learns the batch time
        app.fake.hold()
        admitted = []
        for n in range(1, 5):
            admitted.append(post(app))
            await wait_until(lambda n=n: app.service.pending == n, f"{n} admitted")
        refused = {"normal": await app.client.post(CLASSIFY, content=jpeg(), headers=JPEG)}
        refused["low"] = await app.client.post(CLASSIFY, content=jpeg(), headers={**JPEG, "X-Priority": "low"})
        admitted.append(post(app, {"X-Priority": "high"}))
        await wait_until(lambda: app.service.pending == 5, "a high-priority request admitted at 20 ms")
        refused["high"] = await app.client.post(CLASSIFY, content=jpeg(), headers={**JPEG, "X-Priority": "high"})
        app.fake.release()
        assert [r.status_code for r in await asyncio.gather(*admitted)] == [200] * 5
        app.fake.hold()
        admitted = [post(app), post(app)]
        await wait_until(lambda: app.service.pending == 2, "two admitted")
        headers = {**JPEG, "X-Request-Timeout": "10"}  # 10 ms: the third would be answered in 12
        refused["deadline"] = await app.client.post(CLASSIFY, content=jpeg(), headers=headers)
        app.fake.release()
        assert [r.status_code for r in await asyncio.gather(*admitted)] == [200] * 2
        refused["stats"] = await app.client.get("/v1/stats")
        return refused

    refused = run_app(tmp_path, scenario, admission="time", slo_p95_ms=21.0)
    for case, predicted in (("normal", 20), ("low", 20), ("high", 24), ("deadline", 12)):
        response = refused[case]
        assert response.status_code == 429, (case, response.text)
        assert response.headers["retry-after"] == "1"
        assert f"would answer in {predicted} ms" in response.json()["error"], (case, response.text)
    assert "past its deadline" in refused["deadline"].json()["error"]
    stats = document.read(refused["stats"].json())
    assert stats.models[MODEL].windows["1m"].throughput.refused_by_reason == {"objective": 3.0, "deadline": 1.0}

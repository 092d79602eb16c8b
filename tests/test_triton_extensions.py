"""Triton's model configuration and statistics extensions, read with Triton's own HTTP client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from servoscope.clock import ManualClock
from servoscope.stages import BatchRecord, Stage, Timing
from servoscope.telemetry.triton_stats import TritonStats, model_statistics
from support import MODEL, Photo, ServerProcess, assert_error, wait_for


@pytest.fixture(scope="module")
def triton_client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30.0)
    yield client
    client.close()


def test_model_config_in_tritons_shape(triton_client: triton.InferenceServerClient, client: httpx.Client) -> None:
    config = triton_client.get_model_config(MODEL)
    detail = client.get(f"/v1/models/{MODEL}").json()["config"]
    assert config["name"] == MODEL and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == detail["batching"]["max_batch_size"]
    assert config["input"] == [{"name": "image", "data_type": "TYPE_STRING", "format": "FORMAT_NONE", "dims": [1]}]
    assert {o["name"]: (o["data_type"], o["dims"]) for o in config["output"]} == {
        "labels": ("TYPE_STRING", [-1]),
        "scores": ("TYPE_FP32", [-1]),
        "indices": ("TYPE_INT64", [-1]),
    }
    batching = config["dynamic_batching"]
    assert batching["max_queue_delay_microseconds"] == round(detail["batching"]["max_queue_delay_s"] * 1e6)
    assert batching["preferred_batch_size"] == detail["batching"]["preferred_batch_sizes"]
    assert batching["default_queue_policy"]["max_queue_size"] == detail["batching"]["max_queue_size"]
    (group,) = config["instance_group"]
    assert group["kind"] == "KIND_CPU" and group["count"] == len(client.get(f"/v1/models/{MODEL}").json()["instances"])
    assert triton_client.get_model_config(MODEL, model_version="1") == config


def test_config_of_unknown_model_or_version(client: httpx.Client) -> None:
    assert_error(client.get("/v2/models/no_such_model/config"), 404, "no_such_model")
    assert_error(client.get(f"/v2/models/{MODEL}/versions/7/config"), 400, "version")


def test_server_metadata_names_the_extensions(triton_client: triton.InferenceServerClient) -> None:
    extensions = triton_client.get_server_metadata()["extensions"]
    assert {"binary_tensor_data", "model_configuration", "statistics"} <= set(extensions)


def test_statistics_count_what_was_served(
    triton_client: triton.InferenceServerClient, client: httpx.Client, photos: dict[str, Photo]
) -> None:
    before = triton_client.get_inference_statistics(MODEL)["model_stats"][0]
    tensor = triton.InferInput("image", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([photos["coffee"].jpeg, photos["rocket"].jpeg], dtype=object))
    triton_client.infer(MODEL, [tensor])
    with pytest.raises(InferenceServerException):
        triton_client.infer(MODEL, [tensor], parameters={"top_k": 0})
    # recorded once each answer is sent: wait until the failed one shows
    latest = lambda: triton_client.get_inference_statistics(MODEL)["model_stats"][0]  # noqa: E731
    wait_for(lambda: latest()["inference_stats"]["fail"]["count"] > before["inference_stats"]["fail"]["count"])
    after = latest()
    assert after["name"] == MODEL and after["version"] == "1"
    stats, was = after["inference_stats"], before["inference_stats"]
    assert stats["success"]["count"] - was["success"]["count"] >= 2  # the session server is shared
    assert stats["fail"]["count"] - was["fail"]["count"] >= 1
    for name in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert stats[name]["count"] == stats["success"]["count"]
        assert stats[name]["ns"] > was[name]["ns"]
    assert after["inference_count"] >= before["inference_count"] + 2
    assert after["execution_count"] > before["execution_count"]
    assert after["last_inference"] > 0
    assert sum(b["compute_infer"]["count"] for b in after["batch_stats"]) == after["execution_count"]
    every = client.get("/v2/models/stats").json()["model_stats"]
    assert [m["name"] for m in every] == [MODEL]


def test_stages_map_onto_tritons_fields() -> None:
    clock = ManualClock(100.0)
    stats = TritonStats(wall_s=lambda: 1_700_000_000.5)
    timing = Timing(clock.now(), model="m", status=200)
    for stage, seconds in zip(Stage, (0.001, 0.002, 0.010, 0.003, 0.020, 0.001, 0.004)):
        clock.advance(seconds)
        timing.end(stage, clock.now())
    stats.record(timing)
    stats.record(Timing(0.0, [None] * len(Stage), model="m", status=429))
    stats.record_batch(BatchRecord("m", 0, 1.0, 1.020, 1.021, (timing,)))
    document = model_statistics("m", "1", stats.models["m"])
    inference = document["inference_stats"]
    assert inference["success"] == {"count": 1, "ns": 41_000_000}
    assert inference["fail"] == {"count": 1, "ns": 0}
    assert inference["queue"] == {"count": 1, "ns": 5_000_000}  # queue + batch_wait
    assert inference["compute_input"] == {"count": 1, "ns": 10_000_000}
    assert inference["compute_infer"] == {"count": 1, "ns": 20_000_000}
    assert inference["compute_output"] == {"count": 1, "ns": 1_000_000}
    assert document["inference_count"] == document["execution_count"] == 1
    assert document["last_inference"] == 1_700_000_000_500
    (batch,) = document["batch_stats"]
    assert batch["batch_size"] == 1 and batch["compute_infer"] == {"count": 1, "ns": 20_000_000}

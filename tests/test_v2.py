"""The Open Inference Protocol (KServe v2) with Triton's own HTTP client, and in plain JSON."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from support import CLEAR_TOP1, EXPECTED_TOP1, INFER, MODEL, Photo, ServerProcess, assert_error, classify, top1

OUTPUT_NAMES = ("labels", "scores", "indices")


@pytest.fixture(scope="module")
def triton_client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30.0)
    yield client
    client.close()


def image_input(images: list[bytes], binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object), binary_data=binary)
    return tensor


def infer(client: triton.InferenceServerClient, images: list[bytes], top_k: int | None = None) -> triton.InferResult:
    outputs = [triton.InferRequestedOutput(name, binary_data=True) for name in OUTPUT_NAMES]
    parameters = {"top_k": top_k} if top_k is not None else None
    return client.infer(MODEL, [image_input(images)], outputs=outputs, parameters=parameters)


def json_request(images: list[bytes], **extra: Any) -> dict[str, Any]:
    data = [base64.b64encode(image).decode() for image in images]
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)], "data": data}], **extra}


def test_server_live_and_ready(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL)
    assert not triton_client.is_model_ready("no_such_model")


def test_server_metadata(triton_client: triton.InferenceServerClient) -> None:
    metadata = triton_client.get_server_metadata()
    assert metadata["name"] == "servoscope"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata(triton_client: triton.InferenceServerClient) -> None:
    metadata = triton_client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1, 1]}]
    outputs = {o["name"]: o["datatype"] for o in metadata["outputs"]}
    assert outputs == {"labels": "BYTES", "scores": "FP32", "indices": "INT64"}
    assert triton_client.get_model_metadata(MODEL, model_version="1")["name"] == MODEL


def test_unknown_model_metadata(triton_client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        triton_client.get_model_metadata("no_such_model")
    assert info.value.status() == "404"
    assert "no_such_model" in info.value.message()


@pytest.mark.parametrize("name", CLEAR_TOP1)
def test_binary_infer_matches_v1(
    triton_client: triton.InferenceServerClient, client: httpx.Client, photos: dict[str, Photo], name: str
) -> None:
    data = photos[name].jpeg
    result = infer(triton_client, [data], top_k=3)
    labels = result.as_numpy("labels")
    assert labels.shape == (1, 3)
    assert result.as_numpy("scores").shape == (1, 3) and result.as_numpy("scores").dtype == np.float32
    assert result.as_numpy("indices").shape == (1, 3) and result.as_numpy("indices").dtype == np.int64
    assert labels[0, 0].decode() == top1(classify(client, data))


def test_batch_of_three_in_one_request(triton_client: triton.InferenceServerClient, photos: dict[str, Photo]) -> None:
    names = ["chelsea", "coffee", "rocket"]
    result = infer(triton_client, [photos[n].jpeg for n in names])
    labels = result.as_numpy("labels")
    scores = result.as_numpy("scores")
    assert labels.shape == scores.shape == (3, 5)  # the default top_k
    for row, name in enumerate(names):
        assert labels[row, 0].decode() in EXPECTED_TOP1[name]
        assert list(scores[row]) == sorted(scores[row], reverse=True)


def test_json_infer(client: httpx.Client, photos: dict[str, Photo]) -> None:
    images = [photos["coffee"].jpeg, photos["camera"].encode("PNG")]
    response = client.post(INFER, json=json_request(images, id="req-1", parameters={"top_k": 2}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == MODEL and body["model_version"] == "1" and body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == set(OUTPUT_NAMES)
    for output in outputs.values():
        assert output["shape"] == [2, 2]
        assert len(output["data"]) == 4  # row-major
    assert outputs["labels"]["data"][0] == "espresso" and outputs["labels"]["data"][2] == "tripod"
    assert outputs["labels"]["datatype"] == "BYTES" and outputs["scores"]["datatype"] == "FP32"


def test_json_infer_selected_output(client: httpx.Client, photos: dict[str, Photo]) -> None:
    response = client.post(INFER, json=json_request([photos["rocket"].jpeg], outputs=[{"name": "labels"}]))
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["name"] == "labels" and output["data"][0] in EXPECTED_TOP1["rocket"]


def test_triton_client_sees_a_400(triton_client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("image", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException) as info:
        triton_client.infer(MODEL, [tensor])
    assert info.value.status() == "400"
    assert "BYTES" in info.value.message()


# --- bad requests: 400 with a JSON error ------------------------------------------------------


def _one_image(photos: dict[str, Photo]) -> dict[str, Any]:
    return json_request([photos["coffee"].jpeg])


def test_wrong_datatype(client: httpx.Client) -> None:
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    assert_error(client.post(INFER, json=body), 400, "BYTES", "FP32")


def test_element_count_mismatch(client: httpx.Client, photos: dict[str, Photo]) -> None:
    body = _one_image(photos)
    body["inputs"][0]["shape"] = [2]
    assert_error(client.post(INFER, json=body), 400, "shape")


def test_bad_shape(client: httpx.Client, photos: dict[str, Photo]) -> None:
    body = _one_image(photos)
    body["inputs"][0]["shape"] = [-1]
    assert_error(client.post(INFER, json=body), 400, "shape")


def test_bad_base64(client: httpx.Client) -> None:
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["not base64!"]}]}
    assert_error(client.post(INFER, json=body), 400, "base64")


def test_element_not_an_image(client: httpx.Client) -> None:
    assert_error(client.post(INFER, json=json_request([b"plain text, not an image"])), 400, "not an image")


def test_unknown_output_name(client: httpx.Client, photos: dict[str, Photo]) -> None:
    body = _one_image(photos)
    body["outputs"] = [{"name": "probabilities"}]
    assert_error(client.post(INFER, json=body), 400, "probabilities")


def test_no_input(client: httpx.Client) -> None:
    assert_error(client.post(INFER, json={"inputs": []}), 400, "image")


def test_too_many_images(client: httpx.Client, server: ServerProcess, photos: dict[str, Photo]) -> None:
    n = server.effective["max_images_per_request"] + 1
    assert_error(client.post(INFER, json=json_request([photos["coffee"].jpeg] * n)), 400, str(n))


@pytest.mark.parametrize("top_k", [0, 1001, "3", True])
def test_bad_top_k(client: httpx.Client, photos: dict[str, Photo], top_k: Any) -> None:
    body = _one_image(photos)
    body["parameters"] = {"top_k": top_k}
    assert_error(client.post(INFER, json=body), 400, "top_k")


def test_body_not_json(client: httpx.Client) -> None:
    assert_error(client.post(INFER, content=b"{not json"), 400, "JSON")


def test_body_not_an_object(client: httpx.Client) -> None:
    assert_error(client.post(INFER, json=[1, 2]), 400, "object")


def test_binary_header_length_beyond_body(client: httpx.Client) -> None:
    head = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}).encode()
    response = client.post(INFER, content=head, headers={"Inference-Header-Content-Length": str(len(head) + 10)})
    assert_error(response, 400, "Inference-Header-Content-Length")


def test_binary_element_runs_past_the_end(client: httpx.Client) -> None:
    blob = struct.pack("<I", 1000) + b"\xff\xd8 only a few bytes"
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(blob)}}
    head = json.dumps({"inputs": [tensor]}).encode()
    response = client.post(INFER, content=head + blob, headers={"Inference-Header-Content-Length": str(len(head))})
    assert_error(response, 400, "past the end")


# The cases below found service bugs (see the report): a malformed request must be a 400, never a
# 500 (crash) nor a 200 that ignores what the client asked for.


def test_wrong_input_name(client: httpx.Client, photos: dict[str, Photo]) -> None:
    body = _one_image(photos)
    body["inputs"][0]["name"] = "images"
    assert_error(client.post(INFER, json=body), 400, "image")


def test_outputs_not_a_list(client: httpx.Client, photos: dict[str, Photo]) -> None:
    body = _one_image(photos)
    body["outputs"] = "labels"
    assert_error(client.post(INFER, json=body), 400, "outputs")


@pytest.mark.parametrize("where", ["request", "input", "output"])
def test_parameters_not_an_object(client: httpx.Client, photos: dict[str, Photo], where: str) -> None:
    body = _one_image(photos)
    if where == "request":
        body["parameters"] = [1]
    elif where == "input":
        body["inputs"][0]["parameters"] = [1]
    else:
        body["outputs"] = [{"name": "labels", "parameters": "binary"}]
    assert_error(client.post(INFER, json=body), 400, "parameters")

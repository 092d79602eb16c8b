"""The JSON API over real HTTP: classes of real photos, response shape, Server-Timing, config, OpenAPI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from servoscope.stages import STAGE_NAMES, TOTAL
from support import CLASSIFY, EXPECTED_TOP1, MODEL, Photo, ServerProcess, assert_error, classify, top1

_SERVER_TIMING_ENTRY = re.compile(r"^([a-z_]+);dur=(\d+(?:\.\d+)?)$")


def parse_server_timing(header: str) -> dict[str, float]:
    """Milliseconds per name, each entry strictly ``name;dur=<ms>``."""
    out = {}
    for entry in header.split(","):
        match = _SERVER_TIMING_ENTRY.match(entry.strip())
        assert match, f"malformed Server-Timing entry {entry!r} in {header!r}"
        out[match[1]] = float(match[2])
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED_TOP1))
def test_top1_of_real_photos(client: httpx.Client, photos: dict[str, Photo], name: str) -> None:
    photo = photos[name]
    assert top1(classify(client, photo.jpeg)) in photo.accepted


@pytest.mark.parametrize(("fmt", "content_type"), [("PNG", "image/png"), ("WEBP", "image/webp"), ("JPEG", "image/jpg")])
def test_other_formats_accepted(client: httpx.Client, photos: dict[str, Photo], fmt: str, content_type: str) -> None:
    photo = photos["coffee"]
    assert top1(classify(client, photo.encode(fmt), content_type)) in photo.accepted


def test_content_type_parameters_ignored(client: httpx.Client, photos: dict[str, Photo]) -> None:
    assert top1(classify(client, photos["coffee"].jpeg, "Image/JPEG; charset=binary")) == "espresso"


def test_response_shape(client: httpx.Client, photos: dict[str, Photo], model_repository: Path) -> None:
    response = classify(client, photos["rocket"].jpeg)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"model", "version", "predictions", "batch_size", "timings_ms"}
    assert body["model"] == MODEL and body["version"] == "1"
    assert isinstance(body["batch_size"], int) and body["batch_size"] >= 1
    assert set(body["timings_ms"]) == set(STAGE_NAMES)
    predictions = body["predictions"]
    assert len(predictions) == 5  # the default top_k
    labels = (model_repository / MODEL / "1" / "labels.txt").read_text().splitlines()
    for p in predictions:
        assert set(p) == {"label", "index", "score"}
        assert labels[p["index"]] == p["label"]
        assert 0.0 <= p["score"] <= 1.0
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)


def test_server_timing_header(client: httpx.Client, photos: dict[str, Photo]) -> None:
    response = classify(client, photos["chelsea"].jpeg)
    assert response.status_code == 200
    header = parse_server_timing(response.headers["server-timing"])
    assert list(header) == list(STAGE_NAMES)  # every stage, in pipeline order, then total
    stages = [ms for name, ms in header.items() if name != TOTAL]
    assert header[TOTAL] == pytest.approx(sum(stages), abs=0.01)  # contiguous stages; 3-decimal rounding
    assert header == pytest.approx(response.json()["timings_ms"], abs=0.002)  # one record, two views


@pytest.mark.parametrize("k", [1, 3, 1000])
def test_top_k_honoured(client: httpx.Client, photos: dict[str, Photo], k: int) -> None:
    response = classify(client, photos["coffee"].jpeg, top_k=k)
    predictions = response.json()["predictions"]
    assert len(predictions) == k
    assert len({p["index"] for p in predictions}) == k
    if k == 1000:
        assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-3)


def test_chunked_upload_classified(client: httpx.Client, photos: dict[str, Photo]) -> None:
    data = photos["camera"].encode("PNG")

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 16 * 1024):
            yield data[i : i + 16 * 1024]

    response = client.post(CLASSIFY, content=chunks(), headers={"Content-Type": "image/png"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert top1(response) == "tripod"


def test_list_models(client: httpx.Client) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    (model,) = response.json()["models"]
    assert model["name"] == MODEL and model["version"] == "1" and model["classes"] == 1000
    assert model["input"]["size"] == 224


def test_model_detail_shows_its_instances(client: httpx.Client, server: ServerProcess) -> None:
    body = client.get(f"/v1/models/{MODEL}").json()
    assert body["name"] == MODEL and body["config"]["instances"]["isolation"] == "thread"
    assert body["instances"] and all(
        i == {"index": n, "isolation": "thread", "pid": server.process.pid, "restarts": 0}
        for n, i in enumerate(body["instances"])
    )
    assert_error(client.get("/v1/models/no_such_model"), 404, "no_such_model")


def test_config_shows_toml_env_and_flag(client: httpx.Client, server: ServerProcess) -> None:
    """The session server got max_images_per_request from TOML, max_body_bytes from the environment
    over TOML, preprocess_workers from a flag over the environment and TOML."""
    body = client.get("/v1/config").json()
    service: dict[str, Any] = body["service"]
    for key, value in server.effective.items():
        assert service[key] == value, key
    assert service["default_top_k"] == 5  # untouched: the default
    model = body["models"][MODEL]
    assert model["version"] == "1"
    assert model["batching"]["max_batch_size"] >= 1
    assert model["input"]["size"] == 224


def test_openapi_describes_classify(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    for path, operations in spec["paths"].items():
        assert path.startswith("/")
        for method, operation in operations.items():
            assert method in {"get", "post", "put", "delete", "patch"}
            assert operation["responses"], f"{method} {path} has no responses"
    post = spec["paths"]["/v1/models/{name}/classify"]["post"]
    path_params = [p["name"] for p in post["parameters"] if p["in"] == "path"]
    assert path_params == ["name"]
    assert {"image/jpeg", "image/png", "image/webp"} <= set(post["requestBody"]["content"])
    assert {"200", "400", "404", "413", "415"} <= set(post["responses"])
    for ref in _refs(spec):
        assert ref.startswith("#/"), ref
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part]  # a dangling $ref raises KeyError
    schema = spec["components"]["schemas"]["Classification"]
    assert set(schema["properties"]["timings_ms"]["properties"]) == set(STAGE_NAMES)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)

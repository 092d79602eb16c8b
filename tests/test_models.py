"""The model repository: the default model's labels, an INT8 variant served beside FP32."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servoscope.models import repository
from servoscope.models.config import ModelConfigError
from servoscope.models.labels import imagenet_labels
from servoscope.variants.quantize import REPORT_FILE, quantize
from support import MODEL, REPO_ROOT, Photo, ServerProcess, start_server, top1

INT8 = f"{MODEL}_int8"


def test_labels_are_unique_and_disambiguated() -> None:
    labels = imagenet_labels()
    assert len(labels) == 1000 == len(set(labels))
    assert labels[134] == "crane (crane bird)" and labels[517] == "crane (construction crane)"
    assert labels[967] == "espresso" and labels[285] == "Egyptian cat"


def test_repository_finds_the_newest_version(model_repository: Path, tmp_path: Path) -> None:
    for version in ("1", "3", "2"):
        shutil.copytree(model_repository / MODEL / "1", tmp_path / MODEL / version, dirs_exist_ok=True)
    assert repository.versions(tmp_path, MODEL) == ["1", "2", "3"]
    assert repository.find(tmp_path, MODEL).version == "3"
    with pytest.raises(ModelConfigError, match="no version '7'"):
        repository.find(tmp_path, MODEL, "7")
    with pytest.raises(ModelConfigError, match="no model 'absent'"):
        repository.find(tmp_path, "absent")


@pytest.fixture(scope="module")
def two_models(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    report = quantize(model_repository, MODEL, INT8, force=False)  # made once, kept while current
    root = tmp_path_factory.mktemp("repo")
    for name in (MODEL, INT8):
        shutil.copytree(model_repository / name, root / name)
    return root, report


@pytest.fixture(scope="module")
def two_model_server(
    two_models: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    srv = start_server(two_models[0], tmp_path_factory.mktemp("two-models"))
    yield srv
    srv.stop()


def test_quantize_reports_top1_agreement(two_models: tuple[Path, dict]) -> None:
    root, report = two_models
    saved = json.loads((root / INT8 / "1" / REPORT_FILE).read_text())
    assert saved == report
    assert report["inputs"] >= 300
    assert 0.0 <= report["top1_agreement"] <= 1.0
    assert "coffee#0" not in {d["input"] for d in report["disagreements"]}  # espresso has a wide margin in both
    entry = repository.find(root, INT8)
    assert "INT8" in entry.config.description and entry.labels() == repository.find(root, MODEL).labels()


def test_both_models_served_side_by_side(two_model_server: ServerProcess, photos: dict[str, Photo]) -> None:
    with httpx.Client(base_url=two_model_server.url, timeout=30) as client:
        listed = {m["name"] for m in client.get("/v1/models").json()["models"]}
        assert listed == {MODEL, INT8}
        config = client.get("/v1/config").json()["models"]
        assert set(config) == {MODEL, INT8} and all("batching" in c for c in config.values())
        for name in (MODEL, INT8):
            response = client.post(
                f"/v1/models/{name}/classify", content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg"}
            )
            assert response.json()["model"] == name
            assert top1(response) == "espresso"
        assert client.get(f"/v2/models/{INT8}/ready").json()["ready"] is True


def test_model_list_command(two_models: tuple[Path, dict]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "servoscope", "model", "list", "--repository", str(two_models[0])],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    names = [line.split("\t")[0] for line in out.splitlines()]
    assert names == [MODEL, INT8]


def test_serve_prepares_the_default_model_when_missing(tmp_path: Path, photos: dict[str, Photo]) -> None:
    empty = tmp_path / "repo"
    srv = start_server(empty, tmp_path)
    try:
        assert (empty / MODEL / "1" / "model.onnx").is_file()
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            response = client.post(
                f"/v1/models/{MODEL}/classify", content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg"}
            )
            assert top1(response) == "espresso"
    finally:
        assert srv.stop() == 0


def test_serve_flags_override_model_configs(spawn_server, photos: dict[str, Photo]) -> None:
    srv = spawn_server("--models", MODEL, "--max-batch-size", "4", "--max-queue-delay-ms", "1", "--instances", "2")
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        config = client.get("/v1/config").json()
        assert config["service"]["model_overrides"]["max_batch_size"] == 4
        model = config["models"][MODEL]
        assert model["batching"]["max_batch_size"] == 4
        assert model["batching"]["max_queue_delay_s"] == 0.001
        assert model["instances"]["count"] == 2
        response = client.post(
            f"/v1/models/{MODEL}/classify", content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg"}
        )
        assert top1(response) == "espresso"

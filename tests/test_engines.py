"""The engine boundary: the torch engine serving the real model through the real server, its config
rules, ONNX Runtime's I/O binding, and the warm-up of every batch bucket before ready."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import tomli_w

from servoscope.models import repository
from servoscope.models.config import CONFIG_FILE, EngineConfig, ModelConfig, ModelConfigError, load_config, save_config
from servoscope.models.repository import ModelEntry
from servoscope.pipeline.admission import AdmissionPolicy
from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.engines.torch_engine import TorchModel
from servoscope.pipeline.runtime import Instance, OnnxModel
from servoscope.pipeline.service import ModelService, warm_up
from servoscope.pipeline.workers import PreprocessPool
from servoscope.variants.compare import Budget, compare, table
from support import MODEL, Photo, ServerProcess, start_server

TORCH = f"{MODEL}_torch"
BUCKETS = [1, 2, 4]  # batch 1, the preferred size, the largest
POLICY = AdmissionPolicy("static", 64, 60.0)


def torch_variant(source: ModelEntry, root: Path, name: str, **engine: object) -> ModelEntry:
    """A copy of ``source`` in ``root`` whose config runs it on the torch engine."""
    shutil.copytree(source.path, root / name / "1")
    raw = source.config.model_dump()
    raw.update(name=name, description=f"{source.config.description}, torch engine")
    raw["batching"].update(max_batch_size=4, preferred_batch_sizes=(2,))
    raw["instances"].update(count=1)
    raw["engine"] = {"name": "torch", **engine}
    save_config(ModelConfig.model_validate(raw), root / name / "1" / CONFIG_FILE)
    return repository.find(root, name)


@pytest.fixture(scope="module")
def torch_repository(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("torch-repository")
    torch_variant(repository.find(model_repository, MODEL), root, TORCH, channels_last=True)
    return root


@pytest.fixture(scope="module")
def torch_server(torch_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    server = start_server(torch_repository, tmp_path_factory.mktemp("torch-server"), ("--preprocess-workers", "1"))
    yield server
    server.stop()


def test_the_torch_engine_serves_chelsea_as_a_cat_through_the_real_server(
    torch_server: ServerProcess, photos: dict[str, Photo]
) -> None:
    with httpx.Client(base_url=torch_server.url, timeout=30.0) as client:
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get(f"/v2/models/{TORCH}").json()["platform"] == "pytorch_libtorch"
        for name in ("chelsea", "coffee"):
            response = client.post(
                f"/v1/models/{TORCH}/classify", content=photos[name].jpeg, headers={"Content-Type": "image/jpeg"}
            )
            assert response.status_code == 200, response.text
            assert response.json()["predictions"][0]["label"] in photos[name].accepted
    assert "engine torch/cpu/fp32/channels_last" in torch_server.log.read_text()


def test_a_batch_runs_in_the_smallest_compiled_bucket_that_holds_it() -> None:
    import torch

    engine = EngineConfig(name="torch", compile_by_batch={2: "torch_compile", 4: "torch_compile"})
    model = TorchModel(torch.nn.Flatten(), engine, BUCKETS, 1)  # a real (tiny) module: nothing is compiled here
    assert [model.bucket_for(rows) for rows in (1, 2, 3, 4, 5)] == [2, 2, 4, 4, 5]  # beyond every bucket: eager
    assert model.providers == ["torch/cpu/fp32"] and model.warmed == []


class RecordingRuntime:
    """A real ONNX Runtime session that records the batch sizes it ran (a spy, not a fake)."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.providers = model.providers
        self.sizes: list[int] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        return self.model.run(batch)


def test_warm_up_runs_every_bucket_on_every_instance_and_teaches_the_cost_model(torch_repository: Path) -> None:
    entry = repository.find(torch_repository, TORCH)
    entry = ModelEntry(
        entry.name, entry.version, entry.path, entry.config.model_copy(update={"engine": EngineConfig()})
    )
    spies = [RecordingRuntime(OnnxModel(entry.model_file, "cpu", 1, "input", "logits")) for _ in range(2)]
    pool = PreprocessPool(1)
    try:
        service = ModelService(
            entry, pool, [Instance(TORCH, i, spy) for i, spy in enumerate(spies)], DecodeLimits(), POLICY
        )
        warm_up(service)
    finally:
        pool.close()
    assert spies[0].sizes == BUCKETS and spies[1].sizes == BUCKETS * 2  # the last once more, timed
    assert all(service.cost.batch_time(size) for size in BUCKETS)


def test_io_binding_gives_the_plain_run_s_outputs(model_repository: Path) -> None:
    path = repository.find(model_repository, MODEL).model_file
    batch = np.random.default_rng(21).standard_normal((3, 3, 224, 224)).astype(np.float32)
    plain = OnnxModel(path, "cpu", 1, "input", "logits")
    bound = OnnxModel(path, "cpu", 1, "input", "logits", io_binding=True)
    assert not plain.io_binding and bound.io_binding
    np.testing.assert_array_equal(bound.run(batch), plain.run(batch))


@pytest.mark.parametrize(
    ("engine", "words"),
    [
        ({"name": "onnxruntime", "precision": "bf16"}, ["precision", "torch only"]),
        ({"name": "torch", "precision": "fp16"}, ["fp16 needs device cuda", "bf16"]),
        ({"name": "torch", "compile": "cuda_graphs"}, ["cuda_graphs needs device cuda"]),
        ({"name": "torch", "device": "cuda", "compile_by_batch": {"3": "cuda_graphs"}}, ["[3]", "no batch bucket"]),
        ({"name": "tensorflow"}, ["engine.name", "tensorflow"]),
        ({"name": "torch", "dtype": "fp32"}, ["dtype", "extra"]),
    ],
)
def test_engine_config_errors_say_what_was_received(tmp_path: Path, engine: dict, words: list[str]) -> None:
    raw = ModelConfig(name="m").model_dump(mode="json")
    raw["engine"] = engine
    raw["batching"]["preferred_batch_sizes"] = [2]
    raw["batching"]["max_batch_size"] = 4
    path = tmp_path / CONFIG_FILE
    path.write_text(tomli_w.dumps(raw))
    with pytest.raises(ModelConfigError) as error:
        load_config(path)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize(
    ("instances", "word"), [({"provider": "cuda"}, "engine.device"), ({"isolation": "process"}, "thread")]
)
def test_the_torch_engine_refuses_onnx_runtime_s_instance_settings(instances: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        ModelConfig(name="m", instances=instances, engine=EngineConfig(name="torch"))


def test_the_default_config_is_onnx_runtime_as_before() -> None:
    config = ModelConfig(name="m")
    assert config.engine.describe() == "onnxruntime" and config.accelerator == "cpu"
    assert EngineConfig(name="torch", device="cuda", precision="fp16").describe() == "torch/cuda/fp16"


def test_compare_gives_each_engine_its_agreement_with_onnx_runtime_fp32(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("engines-compare")
    source = repository.find(model_repository, MODEL)
    shutil.copytree(source.path, root / MODEL / "1")
    torch_variant(source, root, TORCH)
    torch_variant(source, root, f"{TORCH}_bf16", precision="bf16", channels_last=True)
    report = compare(root, MODEL, budget=Budget(0.2, 3, per_photo=2, noise_draws=1), progress=lambda line: None)
    rows = {row["engine"]: row for row in report["models"]}
    assert list(rows) == ["onnxruntime/cpu", "torch/cpu/fp32", "torch/cpu/bf16/channels_last"]
    assert rows["torch/cpu/fp32"]["threshold"] == 0.995 and rows["torch/cpu/bf16/channels_last"]["threshold"] == 0.99
    assert rows["torch/cpu/fp32"]["inputs"] >= 40
    fp32, bf16 = rows["torch/cpu/fp32"], rows["torch/cpu/bf16/channels_last"]
    assert fp32["top1_agreement"] >= 0.995 and not fp32["sign_off_needed"]
    # BF16 (7 mantissa bits) flips only inputs whose reference label is itself a toss (±1 grey level of
    # noise flips it): on the stable ones it agrees; the overall figure decides its sign-off
    assert bf16["top1_agreement_stable"] >= 0.99 and bf16["top5_containment"] >= 0.99
    assert bf16["sign_off_needed"] is (bf16["top1_agreement"] < 0.99)
    assert all(row["p50_ms"] > 0 for row in rows.values())  # measured on its own engine
    assert "torch/cpu/bf16/channels_last" in table(report).splitlines()[4]

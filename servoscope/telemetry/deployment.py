"""What is running, for the ``/v1/stats`` document's ``deployment``: versions, effective settings,
each model's version, file, instances and batching, and the processes. Read once at start (and the
instances' processes at each document, since a process-isolated instance may be restarted).

Drill fault settings are left out: the doctor diagnoses from what production would show.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

import psutil  # type: ignore[import-untyped]

from servoscope import __version__
from servoscope.resources import plan_threads
from servoscope.settings import Settings
from servoscope.telemetry.document import Deployment, ModelDeployment, SettingValue

if TYPE_CHECKING:  # telemetry reads the pipeline, never imports its request path (and ONNX Runtime)
    from servoscope.pipeline.service import ModelService, Pipeline

# The distributions whose versions set the service's speed or behaviour.
PACKAGES = ("onnxruntime", "onnxruntime-gpu", "numpy", "pillow", "pillow-simd", "starlette", "uvicorn", "pydantic")
NOT_SETTINGS = ("faults",)  # drill-only: left out of the document


def describe(settings: Settings, pipeline: Pipeline) -> Deployment:
    return Deployment(
        servoscope_version=__version__,
        packages=package_versions(),
        process_id=os.getpid(),
        process_started=psutil.Process().create_time(),
        settings=flat(settings.model_dump(mode="json", exclude=set(NOT_SETTINGS))),
        models={name: _model(s, settings.preprocess_workers) for name, s in pipeline.services.items()},
    )


def refreshed(deployment: Deployment, pipeline: Pipeline) -> Deployment:
    """The same deployment with each instance's process as it is now."""
    models = {
        name: m.model_copy(update={"instance_pids": _pids(pipeline.services[name])}) if name in pipeline.services else m
        for name, m in deployment.models.items()
    }
    return deployment.model_copy(update={"models": models})


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, SettingValue]:
    """Nested settings as dotted keys; lists as their JSON-ish text (``[1, 2]``)."""
    out: dict[str, SettingValue] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = str(list(value))
        else:
            out[name] = value
    return out


def _model(service: ModelService, preprocess_workers: int) -> ModelDeployment:
    cfg = service.entry.config.instances
    plan = plan_threads(preprocess_workers, cfg.count, cfg.intra_op_threads, cfg.provider)
    try:
        size: int | None = service.entry.model_file.stat().st_size
    except OSError:
        size = None
    return ModelDeployment(
        version=service.version,
        file_bytes=size,
        instances=len(service.batcher.instances),
        intra_op_threads=plan.intra_op_threads,
        provider=cfg.provider,
        isolation=cfg.isolation,
        instance_pids=_pids(service),
        batching=flat(service.entry.config.batching.model_dump(mode="json")),
    )


def _pids(service: ModelService) -> tuple[int | None, ...]:
    return tuple(info.pid for info in service.instances())

"""The service's configuration: one typed object, loaded once at start and passed down.

Sources, lowest precedence first: built-in defaults, a TOML file (``--config`` or
``SERVOSCOPE_CONFIG``), environment variables ``SERVOSCOPE_<FIELD>``, then command-line flags.
Unknown keys are errors.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from servoscope.models.config import ModelOverrides

CONFIG_ENV = "SERVOSCOPE_CONFIG"
PILLOW_MAX_PIXELS = 178_956_970  # Pillow refuses larger images outright (2 × Image.MAX_IMAGE_PIXELS)


class Faults(BaseModel):
    """Injected faults (all zero: none). Only drills and explicit serve flags set these; they take effect
    through the pipeline's runtime seam, wired by ``servoscope serve`` (see servoscope.drills.faults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inference_delay_s: float = Field(
        0.0, ge=0.0, le=10.0, description="INJECTED: extra seconds per inference batch, slept in the instance's thread"
    )

    def active(self) -> dict[str, float]:
        """The faults switched on, by name, with their settings."""
        return {name: float(value) for name, value in self.model_dump().items() if value}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVOSCOPE_", env_nested_delimiter="__", extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on (0: any free port)")
    grpc_port: int = Field(
        8001, ge=0, le=65535, description="port of the gRPC Open Inference Protocol, on the same host (0: no gRPC)"
    )
    model_repository: Path = Field(Path("models"), description="folder of <name>/<version>/model.onnx")
    models: tuple[str, ...] = Field((), description="models to serve (empty: every model in the repository)")
    default_model: str = Field("efficientnet_lite0", description="prepared automatically when missing")
    prepare_default_model: bool = Field(True, description="prepare the default model at start if it is missing")
    model_overrides: ModelOverrides = Field(
        ModelOverrides(),
        description="batching and instance settings applied over every model's config.toml "
        "(among them instances, intra_op_threads, provider, and isolation: thread or process)",
    )
    preprocess_workers: int = Field(0, ge=0, le=256, description="decode/preprocess threads (0: one per core)")
    preprocess_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="how much lower the decode threads' priority is than inference's (see resources.py)",
    )
    max_pending: int = Field(512, ge=1, description="requests admitted but not yet answered, per model, before 429")
    admission: Literal["time", "adaptive", "static"] = Field(
        "time",
        description="time: refuse only what cannot be answered within slo_p95_ms or its deadline; adaptive: a "
        "concurrency limit that follows latency; static: max_pending alone (every mode is bounded by max_pending)",
    )
    slo_p95_ms: float = Field(
        200.0,
        gt=0,
        le=3_600_000,
        description="the service's latency objective: time admission refuses what it predicts past it",
    )
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1, description="largest accepted request body, bytes")
    body_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="longest wait for a request's headers, then again for its whole body (then 408; nginx's defaults)",
    )
    min_body_rate_bytes_s: float = Field(
        240.0, ge=0, description="after body_grace_s, a body arriving slower than this on average is answered 408"
    )
    body_grace_s: float = Field(
        5.0, ge=0, description="how long a body may arrive at any rate before min_body_rate_bytes_s"
    )
    max_ingest: int = Field(
        512,
        ge=1,
        description="requests whose bodies are still arriving, all models; beyond it 503 (they hold no model's place)",
    )
    max_image_pixels: int = Field(
        50_000_000, ge=1, le=PILLOW_MAX_PIXELS, description="largest accepted image, width × height"
    )
    max_image_scans: int = Field(64, ge=1, description="most scans in a progressive JPEG (libjpeg's script has 10)")
    max_image_chunks: int = Field(4096, ge=16, description="most JPEG marker segments, PNG or WebP chunks in an image")
    max_image_frames: int = Field(
        1000, ge=1, description="most frames in an animated PNG or WebP (the first is classified)"
    )
    max_image_metadata_bytes: int = Field(
        8 * 1024 * 1024, ge=0, description="most bytes of EXIF, XMP, ICC profile and comments in an image"
    )
    max_images_per_request: int = Field(64, ge=1, description="images in one Open Inference Protocol request")
    default_top_k: int = Field(5, ge=1, description="predictions per image when top_k is not given")
    request_timeout_s: float = Field(30.0, gt=0, description="deadline of a request that sets none")
    shutdown_timeout_s: float = Field(30.0, gt=0, description="longest wait for open requests on SIGTERM")
    telemetry: bool = Field(True, description="metrics, /v1/stats and tracing (tracing also needs OTEL_* variables)")
    log_level: str = Field("info", description="debug, info, warning or error")
    faults: Faults = Field(
        Faults(), description="INJECTED faults for drills (servoscope.drills.faults); all zero: none"
    )

    def models_to_prepare(self) -> tuple[str, ...]:
        """The models start-up may prepare when the repository lacks them (only the default one is
        preparable): those served, none when ``prepare_default_model`` is off."""
        if not self.prepare_default_model:
            return ()
        return self.models or (self.default_model,)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_FILE.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


class SettingsError(ValueError):
    pass


# The file being loaded, handed to ``settings_customise_sources`` (a classmethod pydantic calls).
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("servoscope_config_file", default=None)


def load_settings(config_file: Path | None = None, **flags: Any) -> Settings:
    """Defaults < TOML file < environment < ``flags`` (flags that are None are not given)."""
    path = config_file or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if path is not None and not path.is_file():
        raise SettingsError(f"config file {path} does not exist")
    token = _CONFIG_FILE.set(path)
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        raise SettingsError(f"invalid configuration:\n{exc}") from None
    finally:
        _CONFIG_FILE.reset(token)


def effective(settings: Settings) -> dict[str, Any]:
    return settings.model_dump(mode="json")

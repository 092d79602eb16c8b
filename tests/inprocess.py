"""In-process app tests: the real app (``create_app``) and the real pipeline (admission, the
preprocess pool, the batcher, postprocessing, telemetry), driven through httpx's ASGI transport —
no socket, no subprocess, no model file. Two parts stand in for what would make these tests slow
or timing-dependent: the model is a ``FakeRuntime`` (logits from a rule, no ONNX session) and time
is a ``ManualClock`` that moves only when a test (or the fake's inference) advances it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import numpy as np
from PIL import Image
from prometheus_client import CollectorRegistry

from servoscope.clock import ManualClock
from servoscope.models.config import BatchingConfig, InputConfig, ModelConfig
from servoscope.models.repository import ModelEntry
from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.runtime import Instance
from servoscope.pipeline.service import ModelService, Pipeline
from servoscope.pipeline.workers import PreprocessPool
from servoscope.server.app import admission_policy, create_app
from servoscope.settings import Settings
from servoscope.telemetry.recorder import Telemetry

MODEL = "fake"
CLASSES = 10
ANSWER = 3  # the class the fake model always picks
INFERENCE_S = 0.004  # each fake batch advances the manual clock by this much
RUN_DEADLINE_S = 30.0  # a whole in-process scenario, and the longest a held batch waits
CLASSIFY = f"/v1/models/{MODEL}/classify"


class FakeRuntime:
    """A FAKE model runtime: no ONNX session. Each batch row's logits pick class ``ANSWER``; each
    run advances the manual clock by ``INFERENCE_S`` (so the inference stage lasts exactly that).
    :meth:`hold` keeps the next batches running until :meth:`release` (bounded by the run deadline)."""

    providers: ClassVar[list[str]] = ["FakeRuntime"]

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.batch_sizes: list[int] = []
        self.running = 0
        self._open = threading.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.running += 1
        try:
            if not self._open.wait(RUN_DEADLINE_S):
                raise TimeoutError("FakeRuntime held past the run deadline: the test never released it")
            self.clock.advance(INFERENCE_S)
            self.batch_sizes.append(len(batch))
            logits = np.zeros((len(batch), CLASSES), dtype=np.float32)
            logits[:, ANSWER] = 10.0
            return logits
        finally:
            self.running -= 1


@dataclass
class InProcess:
    client: httpx.AsyncClient
    clock: ManualClock
    fake: FakeRuntime
    service: ModelService
    telemetry: Telemetry


def fake_entry(root: Path, max_batch_size: int) -> ModelEntry:
    """A model folder with labels only (the runtime is the fake): 8×8 inputs, no wait for company."""
    folder = root / MODEL / "1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("".join(f"class {i}\n" for i in range(CLASSES)))
    config = ModelConfig(
        name=MODEL,
        input=InputConfig(size=8, resize=8),
        batching=BatchingConfig(max_batch_size=max_batch_size, max_queue_delay_s=0.0),
    )
    return ModelEntry(MODEL, "1", folder, config)


def jpeg(width: int = 32, height: int = 24) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


T = TypeVar("T")


def run_app(root: Path, scenario: Callable[[InProcess], Awaitable[T]], max_batch_size: int = 1, **settings: Any) -> T:
    """Start the app (lifespan included) on the fake pipeline, run ``scenario``, stop it all."""
    return asyncio.run(asyncio.wait_for(_run(root, scenario, max_batch_size, settings), RUN_DEADLINE_S))


async def _run(
    root: Path, scenario: Callable[[InProcess], Awaitable[T]], max_batch_size: int, given: dict[str, Any]
) -> T:
    settings = Settings(
        model_repository=root,
        models=(MODEL,),
        default_model=MODEL,
        prepare_default_model=False,
        **{"admission": "static", **given},
    )
    clock = ManualClock(1000.0)
    fake = FakeRuntime(clock)
    pool = PreprocessPool(1, clock)
    service = ModelService(
        fake_entry(root, max_batch_size),
        pool,
        [Instance(MODEL, 0, fake)],
        DecodeLimits(settings.max_body_bytes, settings.max_image_pixels),
        admission_policy(settings),
        clock,
    )
    telemetry = Telemetry(clock, CollectorRegistry())
    app = create_app(settings, Pipeline({MODEL: service}, pool), clock, telemetry, env={})
    async with _serving(app) as client:
        return await scenario(InProcess(client, clock, fake, service, telemetry))


@contextlib.asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://servoscope.test") as client:
            yield client

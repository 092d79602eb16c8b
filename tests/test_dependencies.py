"""What `make serve` installs is enough to run every servoscope command.

`make test` installs the test extras too, so a module that imports a test-only package at import
time passes every other test and still breaks `make serve` on a fresh machine (it did: the
doctor's httpx). Imports inside functions are lazy by design (the model tools' onnx, scikit-image)
and are not checked; a module-level import must come from a base dependency.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# Packages that only work with an optional extra installed, and that extra: their module-level
# imports may come from it too. Nothing outside them imports them at module level (the CLI's
# command modules import them inside the command).
EXTRA_PACKAGES: dict[str, str] = {"servoscope/fleet/ray": "fleet"}


def dependencies(extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return {normalized(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in specs}


def base_dependencies() -> set[str]:
    return dependencies()


def allowed_dependencies(path: Path, base: set[str]) -> set[str]:
    relative = path.relative_to(ROOT).as_posix()
    extras = [extra for package, extra in EXTRA_PACKAGES.items() if relative.startswith(package + "/")]
    return base.union(*(dependencies(extra) for extra in extras))


def module_level_imports(source: str) -> list[str]:
    """Top-level package names imported by a module's own top-level statements."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    return names


def test_every_module_level_import_is_a_base_dependency() -> None:
    base = base_dependencies()
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for path in sorted((ROOT / "servoscope").rglob("*.py")):
        for name in module_level_imports(path.read_text()):
            if name in sys.stdlib_module_names or name in ("servoscope", "__future__"):
                continue
            provided_by = {normalized(d) for d in distributions.get(name, [])}
            if not provided_by & allowed_dependencies(path, base):
                missing.append(
                    f"{path.relative_to(ROOT)} imports {name} ({', '.join(sorted(provided_by)) or 'not installed'})"
                )
    assert not missing, "not in [project].dependencies, so `make serve` cannot import them:\n" + "\n".join(missing)


def test_the_check_sees_a_test_only_import() -> None:
    assert module_level_imports("import httpx\nfrom hypothesis import given\ndef f():\n    import onnx\n") == [
        "httpx",
        "hypothesis",
    ]
    assert "hypothesis" not in base_dependencies()


def test_an_extra_package_may_import_its_extra_and_no_other_module_imports_it_at_module_level() -> None:
    assert "ray" in allowed_dependencies(ROOT / "servoscope/fleet/ray/fleet.py", base_dependencies())
    assert "ray" not in allowed_dependencies(ROOT / "servoscope/fleet/k8s/write.py", base_dependencies())
    for path in sorted((ROOT / "servoscope").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if any(relative.startswith(package + "/") for package in EXTRA_PACKAGES):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module.replace(".", "/")
                assert not any(module.startswith(package) for package in EXTRA_PACKAGES), (
                    f"{relative} imports {node.module} at module level: it needs an optional extra"
                )

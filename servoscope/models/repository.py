"""Discover the models of a repository: ``<root>/<name>/<version>/``, the highest version served."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from servoscope.models.config import CONFIG_FILE, MODEL_FILE, ModelConfig, ModelConfigError, load_config


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    version: str
    path: Path  # the version folder
    config: ModelConfig

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    def labels(self) -> list[str]:
        labels_path = self.path / self.config.output.labels
        try:
            return [line.rstrip("\n") for line in labels_path.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise ModelConfigError(f"model {self.name!r}: cannot read labels {labels_path}: {exc}") from None


def versions(root: Path, name: str) -> list[str]:
    folder = root / name
    if not folder.is_dir():
        return []
    found = [p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and (p / MODEL_FILE).is_file()]
    return sorted(found, key=int)


def find(root: Path, name: str, version: str | None = None) -> ModelEntry:
    available = versions(root, name)
    if not available:
        raise ModelConfigError(
            f"no model {name!r} in repository {root} (expected {root}/{name}/<version>/{MODEL_FILE})"
        )
    chosen = version or available[-1]
    if chosen not in available:
        raise ModelConfigError(f"model {name!r} has no version {chosen!r}; versions: {available}")
    path = root / name / chosen
    config = load_config(path / CONFIG_FILE)
    if config.name != name:
        raise ModelConfigError(f"{path / CONFIG_FILE} names model {config.name!r}, but it lies in folder {name!r}")
    return ModelEntry(name, chosen, path, config)


def discover(root: Path) -> list[ModelEntry]:
    """The newest version of every model in the repository, by name."""
    if not root.is_dir():
        return []
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and versions(root, p.name))
    return [find(root, name) for name in names]

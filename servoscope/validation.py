"""Reading typed input files the same way everywhere: a JSON object from a file, and a pydantic
validation error as one line per fault, naming the field by its path and saying what was received."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError


def read_json(path: Path, what: str, error: type[Exception]) -> Any:
    """The JSON in ``path``; ``error`` says what was wrong, naming the file as ``what``."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path} is not JSON: {exc}") from None


def fault_lines(exc: ValidationError, top: str) -> list[str]:
    """One line per fault: the field's path (``top`` for the object itself), what is wrong, and —
    unless it is missing or a whole object — what was received."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or top
        shown = error["type"] != "missing" and not isinstance(error["input"], (dict, list))
        lines.append(f"{where}: {error['msg']}" + (f" (got {error['input']!r})" if shown else ""))
    return lines

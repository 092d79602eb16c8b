"""Read one telemetry field without ever raising: a failure makes the field ``None``, logged once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class FieldGuard:
    """Runs field readers for a collector; a reader that fails yields ``None``.

    A collector is a telemetry boundary (telemetry never breaks the caller), so any
    ``Exception`` is caught here and logged: a field's first failure at WARNING, later ones
    of the same field at DEBUG, so a field a platform never supports does not flood the log.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def read(self, field: str, reader: Callable[[], T]) -> T | None:
        try:
            return reader()
        except Exception as exc:
            self.report(field, exc)
            return None

    def report(self, field: str, exc: BaseException) -> None:
        with self._lock:
            first = field not in self._reported
            self._reported.add(field)
        level = logging.WARNING if first else logging.DEBUG
        self._logger.log(level, "%s unavailable: %s: %s", field, type(exc).__name__, exc)

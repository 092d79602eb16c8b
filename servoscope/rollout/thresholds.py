"""The baseline's running quantiles: the thresholds each new answer is compared with.

The last ``window`` baseline answers are kept; every ``refresh_every`` of them the quantiles are
recomputed. A threshold only ever comes from answers already seen, so it is fixed before the
answer it judges arrives — which is all the gate's proof asks of it. The window follows the
load: a busier minute moves both arms and the thresholds with them.

:func:`threshold_path` computes the same thresholds for a whole recorded sequence at once
(what :mod:`servoscope.rollout.replay` uses); a test holds the two to the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


class RunningQuantiles:
    """Quantiles of the last ``window`` rows of ``width`` values each, refreshed every ``refresh_every`` rows."""

    def __init__(self, quantiles: Sequence[float], width: int, window: int, refresh_every: int) -> None:
        self._quantiles = np.asarray(quantiles, dtype=np.float64)
        self._buffer = np.zeros((window, width), dtype=np.float64)
        self._refresh_every = refresh_every
        self._seen = 0
        self._current: Array | None = None

    @property
    def seen(self) -> int:
        return self._seen

    @property
    def current(self) -> Array | None:
        """Shape ``(len(quantiles), width)``; None until the first refresh."""
        return self._current

    def add(self, row: Array) -> None:
        window = len(self._buffer)
        self._buffer[self._seen % window] = row
        self._seen += 1
        if self._seen % self._refresh_every == 0:
            filled = self._buffer[: min(self._seen, window)]
            self._current = np.quantile(filled, self._quantiles, axis=0)


def threshold_path(baseline_rows: Array, quantiles: Sequence[float], window: int, refresh_every: int) -> Array:
    """Thresholds after each refresh, shape ``(refreshes, len(quantiles), width)``: refresh ``j`` (from
    0) happens after baseline row ``(j + 1) * refresh_every - 1`` and uses the ``window`` rows before it."""
    rows = np.asarray(baseline_rows, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[:, None]
    q = np.asarray(quantiles, dtype=np.float64)
    refreshes = len(rows) // refresh_every
    out = np.empty((refreshes, len(q), rows.shape[1]), dtype=np.float64)
    for j in range(refreshes):
        end = (j + 1) * refresh_every
        out[j] = np.quantile(rows[max(0, end - window) : end], q, axis=0)
    return out

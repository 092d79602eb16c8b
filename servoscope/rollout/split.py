"""The traffic split: which variant serves a request — by the ``X-Variant`` header, by a sticky
hash of a client key, or by weight. Pure: the caller hands in the header, the key and a uniform
random draw, so a test (or a simulation) decides exactly as the server does.

Only a weighted draw is independent of the request itself, and that independence is what makes
the gate's test exact (:mod:`servoscope.rollout.evidence`). A pinned request (the header) says
nothing about the variants; a sticky one is randomized per client, not per request, so one heavy
client moves every one of its requests to the same arm. :attr:`Assignment.randomized` says which.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from servoscope.errors import InvalidParameter

HEADER = "X-Variant"
MAX_KEY_BYTES = 256


class How(str, enum.Enum):
    HEADER = "header"
    STICKY = "sticky"
    WEIGHT = "weight"


@dataclass(frozen=True, slots=True)
class Assignment:
    variant: str
    how: How

    @property
    def randomized(self) -> bool:
        """Drawn per request, independently of it: the only kind the gate may count."""
        return self.how is How.WEIGHT


@dataclass(frozen=True, slots=True)
class Split:
    """Variants and their weights (any non-negative numbers, at least one positive), in a fixed order;
    ``salt`` keeps one rollout's sticky hash apart from the next one's."""

    weights: tuple[tuple[str, float], ...]
    salt: bytes = b""

    def __post_init__(self) -> None:
        names = [name for name, _ in self.weights]
        if not names or len(set(names)) != len(names) or not all(names):
            raise ValueError(f"a split needs distinct, non-empty variant names, got {names!r}")
        values = [w for _, w in self.weights]
        if any(isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0 for w in values):
            raise ValueError(f"weights must be finite numbers >= 0, got {dict(self.weights)!r}")
        if sum(values) <= 0:
            raise ValueError(f"at least one weight must be positive, got {dict(self.weights)!r}")

    @classmethod
    def of(cls, weights: Mapping[str, float], salt: bytes = b"") -> Split:
        return cls(tuple(weights.items()), salt)

    def share(self, variant: str) -> float:
        """The probability that a weighted draw picks ``variant`` (the gate's ``canary_share``)."""
        return dict(self.weights).get(variant, 0.0) / sum(w for _, w in self.weights)

    def by_draw(self, draw: float) -> str:
        """The variant a uniform ``draw`` in [0, 1) falls on."""
        if not 0.0 <= draw < 1.0:
            raise ValueError(f"draw must be in [0, 1), got {draw!r}")
        edges = list(itertools.accumulate(w for _, w in self.weights))
        index = bisect.bisect_right(edges, draw * edges[-1])
        return self.weights[min(index, len(self.weights) - 1)][0]

    def by_key(self, key: str) -> str:
        """The variant a client key always gets (for this salt and these weights)."""
        raw = key.encode("utf-8", "replace")[:MAX_KEY_BYTES]
        digest = hashlib.blake2b(raw, digest_size=8, key=self.salt[:64]).digest()
        return self.by_draw(int.from_bytes(digest, "big") / 2.0**64)


def assign(split: Split, draw: float, header: str | None = None, client_key: str | None = None) -> Assignment:
    """The header pins a variant; else a client key sticks to one; else the weighted ``draw`` decides."""
    if header:
        wanted = header.strip()
        names = [name for name, _ in split.weights]
        if wanted not in names:
            raise InvalidParameter(f"{HEADER} must be one of {', '.join(names)}, got {wanted[:64]!r}")
        return Assignment(wanted, How.HEADER)
    if client_key:
        return Assignment(split.by_key(client_key), How.STICKY)
    return Assignment(split.by_draw(draw), How.WEIGHT)

"""The pure dispatch rule: how many queued requests an idle instance takes now (0: wait).

Semantics follow Triton's dynamic batcher: a full batch goes at once; the largest preferred
size that the queue can fill goes at once; otherwise wait until the oldest request has waited
``max_queue_delay_s``, then take everything (up to ``max_batch_size``).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servoscope.models.config import BatchingConfig
from servoscope.pipeline.batcher import dispatch_size

PLAIN = BatchingConfig(max_batch_size=8, max_queue_delay_s=0.01)
NO_DELAY = BatchingConfig(max_batch_size=8, max_queue_delay_s=0.0)
PREFERRED = BatchingConfig(max_batch_size=16, max_queue_delay_s=0.01, preferred_batch_sizes=(8, 4))

CASES = [
    # policy, queued, oldest_wait_s, expected, why
    (PLAIN, 0, 0.0, 0, "empty queue"),
    (PLAIN, 0, 5.0, 0, "empty queue, however long ago"),
    (PLAIN, 1, 0.0, 0, "one request, window open: wait"),
    (PLAIN, 7, 0.0099, 0, "almost full, window open: wait"),
    (PLAIN, 8, 0.0, 8, "full batch: go"),
    (PLAIN, 30, 0.0, 8, "more than a batch: a full batch"),
    (PLAIN, 3, 0.01, 3, "window closed exactly: all"),
    (PLAIN, 3, 2.0, 3, "window long closed: all"),
    (PLAIN, 12, 2.0, 8, "window closed: all, capped at max"),
    (NO_DELAY, 1, 0.0, 1, "no delay: go at once"),
    (NO_DELAY, 5, 0.0, 5, "no delay: all at once"),
    (NO_DELAY, 12, 0.0, 8, "no delay: capped at max"),
    (PREFERRED, 3, 0.0, 0, "below every preferred size: wait"),
    (PREFERRED, 4, 0.0, 4, "exactly a preferred size: go"),
    (PREFERRED, 8, 0.0, 8, "exactly the largest preferred size: go"),
    (PREFERRED, 5, 0.0, 4, "preferred 4 reachable: go with 4, the 5th waits"),
    (PREFERRED, 7, 0.0, 4, "preferred 4 reachable, 8 not yet: go with 4"),
    (PREFERRED, 9, 0.0, 8, "largest reachable preferred size: 8"),
    (PREFERRED, 15, 0.0, 8, "largest reachable preferred size: 8"),
    (PREFERRED, 16, 0.0, 16, "full batch beats preferred sizes"),
    (PREFERRED, 40, 0.0, 16, "full batch, capped at max"),
    (PREFERRED, 3, 0.01, 3, "window closed below every preferred size: all"),
    (PREFERRED, 5, 0.01, 5, "window closed: all that is queued"),
]


@pytest.mark.parametrize(
    ("policy", "queued", "oldest_wait_s", "expected"),
    [case[:4] for case in CASES],
    ids=[f"{case[1]}q-{case[2]}s-{case[4]}" for case in CASES],
)
def test_dispatch_table(policy: BatchingConfig, queued: int, oldest_wait_s: float, expected: int) -> None:
    assert dispatch_size(queued, oldest_wait_s, policy) == expected


def test_preferred_sizes_are_sorted_by_the_config() -> None:
    # The rule relies on sorted, unique preferred sizes; the config guarantees them.
    assert PREFERRED.preferred_batch_sizes == (4, 8)
    assert BatchingConfig(max_batch_size=8, preferred_batch_sizes=(2, 2, 1)).preferred_batch_sizes == (1, 2)


@st.composite
def policies(draw: st.DrawFn) -> BatchingConfig:
    max_batch_size = draw(st.integers(1, 64))
    preferred = draw(st.lists(st.integers(1, max_batch_size), max_size=4))
    delay = draw(st.sampled_from([0.0, 0.001, 0.002, 0.01, 0.5]))
    return BatchingConfig(
        max_batch_size=max_batch_size, max_queue_delay_s=delay, preferred_batch_sizes=tuple(preferred)
    )


@given(
    policy=policies(),
    queued=st.integers(0, 200),
    oldest_wait_s=st.floats(0.0, 5.0, allow_nan=False, allow_infinity=False),
)
def test_dispatch_properties(policy: BatchingConfig, queued: int, oldest_wait_s: float) -> None:
    size = dispatch_size(queued, oldest_wait_s, policy)
    assert size == 0 or 1 <= size <= min(queued, policy.max_batch_size)
    if queued == 0:
        assert size == 0
    if queued >= policy.max_batch_size:
        assert size == policy.max_batch_size
    if queued > 0 and oldest_wait_s >= policy.max_queue_delay_s:
        assert size == min(queued, policy.max_batch_size)
    if size and size < min(queued, policy.max_batch_size):
        # Taking fewer than there are is only ever done to send exactly a preferred size.
        assert size in policy.preferred_batch_sizes
    reachable = [s for s in policy.preferred_batch_sizes if s <= queued]
    if reachable:
        # A reachable preferred size never waits, and nothing smaller than it is sent.
        assert size >= max(reachable)

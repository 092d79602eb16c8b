"""DDSketches on the wire: a sketch as text (base64 of DDSketch's own protobuf message, with the
bins sparse: only those that hold values), so a
``/v1/stats`` document can carry its distributions and a fleet can merge them exactly (a merged
sketch answers every quantile within the same 1% relative accuracy as one replica's; averaged
percentiles answer nothing).

The protobuf keeps the bins and the zero count; it drops min, max and sum (ddsketch's own
note), so a decoded sketch's mean and extremes come from its bins, within the same accuracy.
"""

from __future__ import annotations

import base64
import binascii

from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.pb.proto import KeyMappingProto, pb
from ddsketch.store import DenseStore
from google.protobuf.message import DecodeError

from servoscope.telemetry.windows import RELATIVE_ACCURACY

MAX_TEXT_CHARS = 256 * 1024  # a 1% sketch from 1 µs to 1 h holds < 2,000 bins: well under this
MAX_BINS = 20_000


class SketchError(ValueError):
    """Text that is not a sketch this servoscope writes (or merges)."""


def encode(sketch: BaseDDSketch) -> str:
    message = pb.DDSketch(
        mapping=KeyMappingProto.to_proto(sketch._mapping),
        positiveValues=_sparse(sketch._store),
        negativeValues=_sparse(sketch._negative_store),
        zeroCount=sketch._zero_count,
    )
    return base64.b64encode(message.SerializeToString()).decode("ascii")


def _sparse(store: DenseStore) -> pb.Store:
    return pb.Store(binCounts={store.offset + i: c for i, c in enumerate(store.bins) if c})


def _store(message: pb.Store) -> DenseStore:
    store = DenseStore()
    for key, count in sorted(message.binCounts.items()):
        store.add(key, count)
    index = message.contiguousBinIndexOffset
    for count in message.contiguousBinCounts:
        if count:
            store.add(index, count)
        index += 1
    return store


def decode(text: str) -> BaseDDSketch:
    """The sketch ``text`` holds; SketchError for anything else (too long, not base64, not the
    message, another accuracy, negative counts)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
        raise SketchError(f"a sketch is base64 text of at most {MAX_TEXT_CHARS} characters")
    message = pb.DDSketch()
    try:
        message.ParseFromString(base64.b64decode(text, validate=True))
    except (binascii.Error, DecodeError) as exc:
        raise SketchError(f"not a serialized DDSketch: {exc}") from None
    stores = (message.positiveValues, message.negativeValues)
    counts = [c for s in stores for c in (*s.binCounts.values(), *s.contiguousBinCounts)]
    if len(counts) > MAX_BINS:
        raise SketchError(f"a sketch of {len(counts)} bins is more than {MAX_BINS}")
    keys = [k for s in stores for k in s.binCounts] + [s.contiguousBinIndexOffset for s in stores]
    if keys and (max(keys) - min(keys) > MAX_BINS):
        raise SketchError(f"a sketch's bins span more than {MAX_BINS} keys")
    if message.zeroCount < 0 or any(not c >= 0 for c in counts):
        raise SketchError("a sketch's counts must be >= 0")
    expected = DDSketch(RELATIVE_ACCURACY)._mapping
    if message.mapping.gamma != expected.gamma or message.mapping.interpolation != pb.IndexMapping.NONE:
        raise SketchError(
            f"a sketch of gamma {message.mapping.gamma} does not merge with this one's ({expected.gamma})"
        )
    return BaseDDSketch(
        mapping=KeyMappingProto.from_proto(message.mapping),
        store=_store(message.positiveValues),
        negative_store=_store(message.negativeValues),
        zero_count=message.zeroCount,
    )


def merged(texts: list[str]) -> BaseDDSketch | None:
    """One sketch of everything the encoded sketches hold (None for none)."""
    out: BaseDDSketch | None = None
    for text in texts:
        sketch = decode(text)
        if out is None:
            out = sketch
        else:
            out.merge(sketch)
    return out


def count_above(sketch: BaseDDSketch, value: float) -> float:
    """How many of the sketch's values lie in bins above ``value``'s bin (the bin holding
    ``value`` counts as not above: the test it serves errs toward fewer flags)."""
    if value <= 0:
        return sketch.count - sketch._zero_count
    key = sketch._mapping.key(value)
    store = sketch._store
    return float(sum(c for i, c in enumerate(store.bins) if store.offset + i > key))


def subtract(later: BaseDDSketch, earlier: BaseDDSketch) -> BaseDDSketch:
    """The values ``later`` holds that ``earlier`` did not, when ``later`` grew from ``earlier``
    (two reads of one cumulative sketch): bin by bin. SketchError if a bin shrank (the sketch
    was restarted in between)."""
    out = DDSketch(RELATIVE_ACCURACY)
    for attr in ("_store", "_negative_store"):
        counts = _bin_counts(getattr(later, attr))
        for key, count in _bin_counts(getattr(earlier, attr)).items():
            counts[key] = counts.get(key, 0.0) - count
        if any(c < 0 for c in counts.values()):
            raise SketchError("the later sketch holds fewer values in a bin than the earlier: not one sketch grown")
        store = getattr(out, attr)
        for key, count in sorted(counts.items()):
            if count:
                store.add(key, count)
    zero = later._zero_count - earlier._zero_count
    if zero < 0:
        raise SketchError("the later sketch holds fewer zeros than the earlier: not one sketch grown")
    out._zero_count = zero
    out._count = out._store.count + out._negative_store.count + zero
    return out


def _bin_counts(store: DenseStore) -> dict[int, float]:
    return {store.offset + i: c for i, c in enumerate(store.bins) if c}

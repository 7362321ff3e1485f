"""The contract's limits and the base of every record: each number's range, the session id's form, and the
``Record`` fields every line carries. Its own module so that record types defined beside ``events`` (e.g.
``gpufl.contract.capture``) share them; ``events`` re-exports every name here, where readers look."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

# ---- Limits: every number's range and the session id's form --------------------------------------
# The ranges are msgspec constraints, so the decoder enforces them (in C, also in the backend's whole-batch
# decode) and the JSON Schema states them. They are chosen so that the store can compute with any accepted
# value: its columns are 64-bit, and the differences and sums of two values it takes (end - start,
# start - api lead, a bucket's start) must fit in one; sums over many records go to wide columns
# (HUGEINT / NUMERIC). Timestamps and spans stay below 2^62, so any such pair fits. The window is fixed,
# not "now + a day": a record's validity must not depend on when or where it is checked (a batch retried
# tomorrow, a host with a skewed clock, a capture replayed years later), the schema is a constant, and
# arithmetic needs only a fixed bound.

I64_MAX = 2**63 - 1
TIME_MIN_NS = 946_684_800 * 10**9
"""2000-01-01T00:00:00Z: earlier times come from an unset clock (a board booted without NTP starts at 1970)
or an unmapped GPU clock (nanoseconds since boot); a session there would sort last and age out at once."""
TIME_MAX_NS = 4_102_444_800 * 10**9
"""2100-01-01T00:00:00Z (< 2^62): far enough for any real clock, low enough that a timestamp plus any span
fits in int64."""
SPAN_MAX_NS = TIME_MAX_NS - TIME_MIN_NS
"""The longest duration: the whole window (~100 years)."""
FLOAT_MAX = 1e18
"""Bound of every measurement (float): a sum of any number of them stays finite. PostgreSQL raises on a
float overflow in ``sum``/``avg`` and DuckDB returns infinity, which JSON can't carry."""
DEVICE_ID_MAX = 2**31 - 1
"""A CUDA ordinal / NVML index: the API's device filter is a 32-bit integer, and the store gives the host's
metrics device -1, so GPU ids are non-negative."""
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""What every route carries as one path segment, as is (no percent-encoding, no dot-segments that URL
normalisation removes: no ``.``), and what segment file names (``host.app.session.stream.index.log``,
split on ``.``) and every file system hold. The client's ids are 16 lower-case base32 characters."""
_SESSION_ID = re.compile(SESSION_ID_PATTERN)

Ns = Annotated[
    int,
    Meta(
        ge=TIME_MIN_NS,
        le=TIME_MAX_NS,
        description="CLOCK_REALTIME nanoseconds, 2000-01-01T00:00:00Z to 2100-01-01T00:00:00Z.",
    ),
]
Span = Annotated[int, Meta(ge=0, le=SPAN_MAX_NS, description="Nanoseconds, at most the timestamps' window.")]
Lead = Annotated[
    int,
    Meta(
        ge=-SPAN_MAX_NS,
        le=SPAN_MAX_NS,
        description="Nanoseconds between a CPU and a GPU time, within the timestamps' window either way.",
    ),
]
"""Signed: the difference of a GPU time (mapped with the offset measured at start) and a CPU time. A realtime
clock step (NTP) after the offset was measured makes it negative on real hosts, and the writer has no truer
value to give; ``start_ns - lead`` fits in int64 either way."""
Count = Annotated[int, Meta(ge=0, le=I64_MAX)]
"""Counts, sizes, device limits, line numbers: non-negative, 64-bit."""
Id = Annotated[int, Meta(ge=0, le=I64_MAX)]
"""Ids (dict, correlation, stream, context, graph, thread, scope instance): non-negative, 64-bit."""
DeviceId = Annotated[int, Meta(ge=0, le=DEVICE_ID_MAX)]
Offset = Annotated[int, Meta(ge=-I64_MAX, le=I64_MAX)]
"""A clock offset: any 64-bit value that can be negated (informational: the store computes nothing with it)."""
U32 = Annotated[int, Meta(ge=0, le=2**32 - 1)]
"""A memset's fill value (CUPTI's is 32-bit)."""
Version = Annotated[int, Meta(ge=1, le=I64_MAX)]
Fraction = Annotated[float, Meta(ge=0.0, le=1.0)]
Measure = Annotated[float, Meta(ge=0.0, le=FLOAT_MAX)]
Real = Annotated[float, Meta(ge=-FLOAT_MAX, le=FLOAT_MAX)]
SessionId = Annotated[
    str, Meta(min_length=1, max_length=64, extra_json_schema={"pattern": SESSION_ID_PATTERN})
]
"""The pattern is checked by ``check`` (one regex per distinct id in the backend's batches) rather than by
the decoder, where a pattern costs every record ~50 % more decode time (measured on the H100 capture's
kernels): a batch repeats one session id thousands of times."""


def valid_session_id(sid: str) -> bool:
    return _SESSION_ID.fullmatch(sid) is not None


STEP_SCOPE = "step"
"""A top-level scope of this name is one step of the program (``gpufl.step()``): the diff compares per step."""
Stream = Literal["device", "scope", "system"]

# Kinds of interned strings, and which stream carries each.
DictKind = Literal["launch", "kernel", "stack", "scope", "thread", "source_file"]


class Record(msgspec.Struct, tag_field="type", omit_defaults=True, kw_only=True):
    """Fields common to every record. ``seq`` is -1 until the stream's writer stamps it."""

    session_id: SessionId
    stream: Stream
    seq: Count = -1
    """Stamped by the writer, so never absent from a log: the default -1 (outside the range) marks a record
    not stamped yet, and readers reject it."""

"""The ingest protocol (docs/ingest-protocol.md): the answer to a posted batch, as the backend builds and
sends it and as the agent reads it.

Plain dataclasses: FastAPI documents them as the response model (the UI's types are generated from that),
the backend builds them, and the agent decodes an answer into them with msgspec. Every field is required
but ``code``, which backends from before it existed did not send (every rejection was ``invalid`` then).
"""

from __future__ import annotations

from dataclasses import dataclass

INVALID = "invalid"
"""The record breaks the event contract: the sender keeps it aside (the agent dead-letters it)."""
PRUNED = "pruned"
"""The record's session was deleted by retention, so it is refused for good: the sender counts it and moves
on."""
REDELIVER_HEADER = "X-Gpufl-Redeliver"
"""``1`` marks a deliberate re-delivery of whole sessions: a batch holding a deleted session's session_start
re-creates it."""


@dataclass(slots=True)
class Rejection:
    # Which record of the batch (0-based) and its seq where it had one, why, and what the sender should do
    # with it (INVALID or PRUNED).
    index: int
    seq: int | None
    reason: str
    code: str = INVALID


@dataclass(slots=True)
class IngestResult:
    # Records stored, records the store held already (a retry), and those refused, in batch order.
    stored: int
    duplicates: int
    rejected: list[Rejection]

    def as_dict(self) -> dict[str, object]:
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": [
                {"index": r.index, "seq": r.seq, "reason": r.reason, "code": r.code} for r in self.rejected
            ],
        }

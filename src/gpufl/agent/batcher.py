"""Batches: runs of complete lines from one or more segments of one stream, with the cursor positions
they complete.

A batch is the unit of delivery and of acknowledgement: once the target acknowledged it (and every
batch before it), the cursor may move each of its segments to the batch's end offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Piece:
    segment: str
    session_id: str
    start: int
    """File offset of ``data`` in the segment."""
    end: int
    """Cursor position once this piece is delivered (may lie past ``data`` when malformed lines or a
    final partial line were dead-lettered)."""
    data: bytes
    """Good lines, each ending in a newline."""
    count: int
    offsets: list[int] | None = None
    """Segment offset of each line of ``data``, only when lines were removed (else derived)."""


@dataclass(slots=True)
class Batch:
    stream: str
    pieces: list[Piece] = field(default_factory=list)
    count: int = 0
    nbytes: int = 0
    id: int = -1

    def body(self) -> bytes:
        if len(self.pieces) == 1:
            return self.pieces[0].data
        return b"".join(p.data for p in self.pieces)

    def positions(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pieces:
            out[p.segment] = max(out.get(p.segment, 0), p.end)
        return out

    def locate(self, index: int) -> tuple[Piece, int | None, bytes]:
        """The piece, segment offset and bytes of the ``index``-th record of the batch."""
        for p in self.pieces:
            if index < p.count:
                lines = p.data[:-1].split(b"\n")
                if p.offsets is not None:
                    return p, p.offsets[index], lines[index]
                return p, p.start + sum(len(x) + 1 for x in lines[:index]), lines[index]
            index -= p.count
        raise IndexError(index)

    def split(self) -> tuple[Batch, Batch]:
        """Two batches holding the first and second half of the records (after a 413). They are a
        delivery detail: the cursor moves with the original batch once both halves are delivered."""
        half = self.count // 2
        first = Batch(self.stream, id=self.id)
        second = Batch(self.stream, id=self.id)
        for p in self.pieces:
            room = half - first.count
            if room >= p.count:
                first._add(p)
            elif room <= 0:
                second._add(p)
            else:
                cut = -1
                for _ in range(room):
                    cut = p.data.find(b"\n", cut + 1)
                a, b = p.data[: cut + 1], p.data[cut + 1 :]
                oa = p.offsets[:room] if p.offsets is not None else None
                ob = p.offsets[room:] if p.offsets is not None else None
                first._add(Piece(p.segment, p.session_id, p.start, p.start + len(a), a, room, oa))
                second._add(Piece(p.segment, p.session_id, p.start + len(a), p.end, b, p.count - room, ob))
        return first, second

    def _add(self, p: Piece) -> None:
        self.pieces.append(p)
        self.count += p.count
        self.nbytes += len(p.data)


class BatchBuilder:
    """Collects pieces of one stream into batches of at most ``max_records`` and ``max_bytes``."""

    def __init__(self, stream: str, max_records: int, max_bytes: int) -> None:
        self.stream = stream
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._cur = Batch(stream)

    def room(self) -> tuple[int, int]:
        """(records, bytes) that still fit in the open batch (at least 1 record / 1 byte)."""
        return (
            max(1, self.max_records - self._cur.count),
            max(1, self.max_bytes - self._cur.nbytes),
        )

    def add(self, piece: Piece) -> Batch | None:
        """Add a piece; returns the batch when it became full."""
        self._cur._add(piece)
        if self._cur.count >= self.max_records or self._cur.nbytes >= self.max_bytes:
            return self.flush()
        return None

    def flush(self) -> Batch | None:
        if not self._cur.pieces:
            return None
        b, self._cur = self._cur, Batch(self.stream)
        return b

"""Reading complete lines from a segment at an offset, and telling good lines from malformed ones.

The agent ships lines as bytes: it never decodes a whole record. A block of complete lines is checked
in one msgspec call (the lines joined into a JSON array of field-less structs, so the parser only has
to confirm each line is one JSON object); only when that fails are the lines checked one by one to find
the malformed ones. This keeps per-line Python work off the hot path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgspec


class _AnyObject(msgspec.Struct):
    """Matches any JSON object and keeps none of its fields: validation without building dicts."""


_block_decoder = msgspec.json.Decoder(list[_AnyObject])
_line_decoder = msgspec.json.Decoder(_AnyObject)


@dataclass(slots=True)
class Chunk:
    data: bytes
    """Complete lines (each ending in a newline), possibly empty."""
    lines: int
    end: int
    """File offset just after ``data``."""
    partial: bytes
    """Bytes after the last newline when the read reached end of file (a line still being written)."""
    eof: bool
    """True when the read reached the end of the file."""


def read_lines(path: str, offset: int, max_bytes: int, max_lines: int) -> Chunk | None:
    """Complete lines of ``path`` from ``offset``: at most ``max_bytes`` (unless one line is longer, in
    which case that whole line) and at most ``max_lines`` lines. None when the file no longer exists
    (the session byte cap deletes closed segments; that is not an error)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        want = max_bytes
        while True:
            data = os.pread(fd, want, offset)
            eof = len(data) < want
            cut = data.rfind(b"\n")
            if cut >= 0 or eof:
                break
            # One line longer than the block: read a bigger block (lines are bounded by the writer).
            want *= 2
    finally:
        os.close(fd)
    if cut < 0:
        return Chunk(b"", 0, offset, data, True)
    complete = data[: cut + 1]
    partial = data[cut + 1 :] if eof else b""
    n = complete.count(b"\n")
    if n > max_lines:
        pos = -1
        for _ in range(max_lines):
            pos = complete.find(b"\n", pos + 1)
        complete = complete[: pos + 1]
        n = max_lines
        partial = b""
        eof = False
    return Chunk(complete, n, offset + len(complete), partial, eof)


@dataclass(slots=True)
class BadLine:
    offset: int
    """Offset of the line within the block."""
    line: bytes
    reason: str


def validate(data: bytes, lines: int) -> tuple[bytes, int, list[BadLine]]:
    """Split a block of complete lines into (good lines as one block, their count, malformed lines).

    A line is well-formed when it is exactly one JSON object; the backend validates the contract.
    """
    if not data:
        return data, 0, []
    try:
        objs = _block_decoder.decode(b"[" + data[:-1].replace(b"\n", b",") + b"]")
        # A line like `{},{}` parses as two array items: the count check catches that.
        if len(objs) == lines:
            return data, lines, []
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    good: list[bytes] = []
    bad: list[BadLine] = []
    pos = 0
    for line in data[:-1].split(b"\n"):
        try:
            _line_decoder.decode(line)
            good.append(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            bad.append(BadLine(pos, line, f"malformed line: {e}" if line.strip() else "empty line"))
        pos += len(line) + 1
    body = b"\n".join(good) + b"\n" if good else b""
    return body, len(good), bad

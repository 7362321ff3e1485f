"""Discovery, tailing, validation, batching and the cursor, on real files."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from gpufl.agent import discovery, tailer
from gpufl.agent.batcher import Batch, BatchBuilder, Piece
from gpufl.agent.cursor import Cursor, CursorError, WriterInfo, load_raw

from .producer import StreamWriter, write_session


def test_scan_groups_and_orders_segments(folder: str) -> None:
    write_session(folder, "s1", 25, per_segment=10)
    write_session(folder, "s2", 5, per_segment=10, streams=("system",))
    open(os.path.join(folder, "notes.txt"), "w").close()
    open(os.path.join(folder, "h.a.s3.bogus.000000.log"), "w").close()
    found = discovery.scan(folder)
    assert sorted(found) == [("s1", "device"), ("s1", "scope"), ("s1", "system"), ("s2", "system")]
    assert [s.index for s in found[("s1", "device")]] == [0, 1, 2]
    assert [s.index for s in found[("s2", "system")]] == [0]


def test_read_lines_stops_at_partial_line_and_resumes(folder: str) -> None:
    w = StreamWriter(folder, "s1", "device", per_segment=100)
    w.write(3)
    w.write_raw(b'{"type":"kernel","sess')
    chunk = tailer.read_lines(w.path(), 0, 1 << 20, 1000)
    assert chunk is not None and chunk.lines == 3 and chunk.eof
    assert chunk.partial == b'{"type":"kernel","sess'
    assert chunk.end == os.path.getsize(w.path()) - len(chunk.partial)
    again = tailer.read_lines(w.path(), chunk.end, 1 << 20, 1000)
    assert again is not None and again.lines == 0 and again.partial == chunk.partial


def test_read_lines_honours_line_and_byte_limits(folder: str) -> None:
    w = StreamWriter(folder, "s1", "device", per_segment=1000)
    w.write(100)
    data = Path(w.path()).read_bytes()
    c = tailer.read_lines(w.path(), 0, 1 << 20, 7)
    assert c is not None and c.lines == 7 and not c.eof
    assert c.data == b"".join(data.splitlines(keepends=True)[:7])
    small = tailer.read_lines(w.path(), 0, 300, 1000)
    assert small is not None and 0 < small.lines < 100 and small.data.endswith(b"\n") and not small.eof
    assert small.end == len(small.data) <= 300
    # A line longer than the block is still returned whole.
    big = tailer.read_lines(w.path(), 0, 10, 1000)
    assert big is not None and big.lines == 1 and big.data == data.splitlines(keepends=True)[0]
    assert tailer.read_lines(os.path.join(folder, "gone.log"), 0, 10, 10) is None


def test_validate_separates_malformed_lines() -> None:
    good = b'{"a":1}\n{"b":[1,2]}\n'
    assert tailer.validate(good, 2) == (good, 2, [])
    data = b'{"a":1}\nnot json\n{"b":2},{"c":3}\n\n[1]\n{"d":4}\n'
    body, n, bad = tailer.validate(data, 6)
    assert body == b'{"a":1}\n{"d":4}\n' and n == 2
    assert [b.line for b in bad] == [b"not json", b'{"b":2},{"c":3}', b"", b"[1]"]
    assert [b.offset for b in bad] == [8, 17, 33, 34]
    assert bad[2].reason == "empty line"


def _piece(seg: str, start: int, lines: list[bytes]) -> Piece:
    data = b"".join(x + b"\n" for x in lines)
    return Piece(seg, "s", start, start + len(data), data, len(lines))


def test_batch_split_and_locate_keep_line_positions() -> None:
    b = Batch("device")
    b._add(_piece("a", 100, [b"{1}", b"{22}", b"{333}"]))
    b._add(_piece("b", 0, [b"{4}", b"{55}"]))
    assert b.locate(1) == (b.pieces[0], 104, b"{22}")
    assert b.locate(4)[1:] == (4, b"{55}")
    first, second = b.split()
    assert (first.count, second.count) == (2, 3)
    assert first.body() + second.body() == b.body()
    assert second.locate(0)[1:] == (109, b"{333}")
    assert second.locate(2)[1:] == (4, b"{55}")
    assert b.positions() == {"a": 115, "b": 9}
    with pytest.raises(IndexError):
        b.locate(5)


def test_builder_flushes_at_limits() -> None:
    bb = BatchBuilder("device", max_records=3, max_bytes=1 << 20)
    assert bb.add(_piece("a", 0, [b"{1}", b"{2}"])) is None
    assert bb.room() == (1, (1 << 20) - 8)
    full = bb.add(_piece("a", 8, [b"{3}"]))
    assert full is not None and full.count == 3 and bb.flush() is None


def test_cursor_roundtrip_is_atomic_and_monotonic(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "cursor")
    c = Cursor(path)
    c.advance({"a.log": 10, "b.log": 5})
    c.advance({"a.log": 3})  # never moves back
    c.set_writer("s1", WriterInfo("h", 42, 7))
    c.save()
    assert not os.path.exists(path + ".tmp")
    raw = load_raw(path)
    assert raw["segments"] == {"a.log": 10, "b.log": 5}
    c2 = Cursor(path)
    assert c2.get("a.log") == 10 and c2.get("new.log") == 0 and c2.writer("s1") == WriterInfo("h", 42, 7)
    c2.forget({"a.log"}, set())
    c2.save()
    assert load_raw(path)["segments"] == {"a.log": 10} and load_raw(path)["writers"] == {}


def test_corrupt_cursor_is_refused(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "cursor")
    with open(path, "wb") as f:
        f.write(b'{"segments": {"a": "x"}}')
    with pytest.raises(CursorError, match="unreadable"):
        Cursor(path)
    with open(path, "wb") as f:
        f.write(msgspec.json.encode({"segments": {"a": 1}}))
    assert Cursor(path).get("a") == 1


def test_lag_reads_unknown_before_any_scan() -> None:
    """What a scrape sees between the metrics endpoint opening and the first scan: not 0 (which means
    "everything shipped") but NaN with gpufl_agent_lag_known 0, and the status line says unknown."""
    from prometheus_client import generate_latest

    from gpufl.agent.metrics import Metrics

    m = Metrics()
    text = generate_latest(m.registry).decode()
    assert "gpufl_agent_lag_bytes NaN" in text and "gpufl_agent_lag_seconds NaN" in text
    assert "gpufl_agent_lag_known 0.0" in text
    assert " lag=unknown " in m.status_line()
    m.lag_bytes.set(5)
    m.lag_seconds.set(1.5)
    m.lag_known.set(1)
    assert " lag=5B/1.5s " in m.status_line()

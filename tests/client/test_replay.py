from __future__ import annotations

import time
from pathlib import Path

from gpufl.client.replay import read_capture, replay
from gpufl.contract import events

CAPTURES = Path(__file__).resolve().parents[2] / "examples/captures"


def test_replay_keeps_every_value_but_ids_and_time_base(tmp_path: Path) -> None:
    src = read_capture(CAPTURES / "memcpy_heavy")
    now = time.time_ns()
    sid = replay(CAPTURES / "memcpy_heavy", tmp_path, start_ns=now)
    out = read_capture(tmp_path)
    for stream in events.STREAMS:
        a = [r for r in src[stream] if not isinstance(r, events.DictEntry)]
        b = [r for r in out[stream] if not isinstance(r, events.DictEntry)]
        assert len(a) == len(b) > 0
        assert all(r.session_id == sid for r in b)
        assert [r.seq for r in out[stream]] == list(range(len(out[stream])))
        delta = now - src["device"][0].start_ns  # type: ignore[attr-defined]
        for x, y in zip(a, b, strict=True):
            assert type(x) is type(y)
            for f in ("start_ns", "end_ns", "ts_ns"):
                if getattr(x, f, None) is not None:
                    assert getattr(y, f) == getattr(x, f) + delta
            for f in ("bytes", "copy_kind", "src_kind", "dst_kind", "launch_id", "stream_id"):
                assert getattr(x, f, None) == getattr(y, f, None)
    launches_a = {r.id: r.launch for r in src["device"] if isinstance(r, events.DictEntry)}
    launches_b = {r.id: r.launch for r in out["device"] if isinstance(r, events.DictEntry)}
    assert launches_a == launches_b


def test_replay_with_the_same_id_and_start_writes_the_same_records(tmp_path: Path) -> None:
    # What makes a demo re-run idempotent: the store de-duplicates by (session, stream, seq).
    now = time.time_ns()
    sid = replay(CAPTURES / "multistream", tmp_path / "a", start_ns=now)
    assert replay(CAPTURES / "multistream", tmp_path / "b", start_ns=now, session_id=sid) == sid
    a, b = read_capture(tmp_path / "a"), read_capture(tmp_path / "b")
    assert sum(map(len, a.values())) > 0
    assert a == b

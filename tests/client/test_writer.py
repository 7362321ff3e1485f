from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

from gpufl.client.writer import DiskBudget, SegmentFiles, StreamWriter
from gpufl.contract import events


def records_of(path: Path) -> list[events.Record]:
    """Decode one segment on its own (a partial last line from a crash is skipped, as readers do)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = lines[:-1]  # the last element is b"" or a partial line
    return [events.decode(line) for line in complete]


def segments(log_dir: Path, stream: str) -> list[Path]:
    return sorted(log_dir.glob(f"*.{stream}.*.log"))


def make_writer(tmp: Path, **kw: object) -> StreamWriter:
    opts: dict[str, object] = dict(
        queue_size=1 << 20, segment_max_bytes=64 * 1024, segment_max_age_s=60, flush_interval_s=0.01
    )
    opts.update(kw)
    return StreamWriter(SegmentFiles(str(tmp), "host", "app", "sess"), "device", **opts)  # type: ignore[arg-type]


T0 = 1_700_000_000_000_000_000  # inside the contract's time window


def kernel(launch_id: int, i: int) -> events.Kernel:
    return events.Kernel(
        session_id="sess",
        stream="device",
        launch_id=launch_id,
        device_id=0,
        stream_id=i % 4,
        corr_id=i,
        start_ns=T0 + i,
        end_ns=T0 + i + 1,
    )


def test_rotation_under_eight_threads_every_seq_once_and_segments_decode_alone(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    w.start()
    per_thread = 5000

    def produce(t: int) -> None:
        for i in range(per_thread):
            name = f"kernel_{t}_{i % 7}"
            lid = w.intern(
                "launch",
                name,
                lambda name=name: events.DictEntry(
                    session_id="sess",
                    stream="device",
                    kind="launch",
                    id=0,
                    launch=events.LaunchConfig(
                        name=name, device_id=0, grid=(1, 1, 1), block=(32, 1, 1), num_regs=8
                    ),
                ),
            )
            assert w.emit(kernel(lid, t * per_thread + i))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close(events.SessionEnd(session_id="sess", stream="device", end_ns=T0, records=0))
    segs = segments(tmp_path, "device")
    assert len(segs) > 5, "rotation happened"
    seqs: list[int] = []
    corr: Counter[int] = Counter()
    for seg in segs:
        recs = records_of(seg)
        known = {r.id for r in recs if isinstance(r, events.DictEntry)}
        for r in recs:
            seqs.append(r.seq)
            if isinstance(r, events.Kernel):
                assert r.launch_id in known, f"{seg.name}: launch {r.launch_id} used before its dict record"
                corr[r.corr_id] += 1
    assert sorted(seqs) == list(range(len(seqs))), "every seq exactly once, no gaps"
    assert len(corr) == 8 * per_thread and set(corr.values()) == {1}
    last = records_of(segs[-1])[-1]
    assert isinstance(last, events.SessionEnd) and last.records == len(seqs) and last.dropped == 0


def test_full_queue_drops_are_counted_and_written(tmp_path: Path) -> None:
    w = make_writer(tmp_path, queue_size=100, flush_interval_s=5)
    w.start()
    accepted = sum(w.emit(kernel(0, i)) for i in range(1000))
    w.close(events.SessionEnd(session_id="sess", stream="device", end_ns=T0, records=0))
    recs = [r for s in segments(tmp_path, "device") for r in records_of(s)]
    dropped = [r for r in recs if isinstance(r, events.Dropped)]
    kernels = [r for r in recs if isinstance(r, events.Kernel)]
    assert accepted == len(kernels) < 1000
    assert sum(d.count for d in dropped) == 1000 - accepted == w.dropped_total
    assert dropped[0].by_type == {"kernel": 1000 - accepted}
    assert [r.seq for r in recs] == list(range(len(recs)))
    end = recs[-1]
    assert isinstance(end, events.SessionEnd) and end.dropped == 1000 - accepted


def test_session_byte_cap_deletes_oldest_closed_segments_and_says_so(tmp_path: Path) -> None:
    budget = DiskBudget(max_bytes=40 * 1024)
    w = make_writer(tmp_path, segment_max_bytes=8 * 1024, budget=budget)
    w.start()
    for i in range(4000):
        w.emit(kernel(0, i))
        if i % 500 == 0:
            w.flush()
    w.close(events.SessionEnd(session_id="sess", stream="device", end_ns=T0, records=0))
    segs = segments(tmp_path, "device")
    assert sum(p.stat().st_size for p in segs[:-1]) <= 40 * 1024
    assert not (tmp_path / events.segment_name("host", "app", "sess", "device", 0)).exists()
    notes = [r for s in segs for r in records_of(s) if isinstance(r, events.SegmentsDeleted)]
    deleted = [f for n in notes for f in n.files]
    # Notes about the earliest deletions may sit in segments deleted since (an agent shipped them live);
    # the surviving ones name segments that are gone and older than every survivor.
    assert deleted and all(not (tmp_path / f).exists() for f in deleted)
    oldest_left = min(events.parse_segment_name(p.name).index for p in segs)  # type: ignore[union-attr]
    assert all(events.parse_segment_name(f).index < oldest_left for f in deleted)  # type: ignore[union-attr]


def test_age_limit_rotates(tmp_path: Path) -> None:
    w = make_writer(tmp_path, segment_max_age_s=0.05)
    w.start()
    for i in range(5):
        w.emit(kernel(0, i))
        time.sleep(0.12)
    w.close(None)
    assert len(segments(tmp_path, "device")) >= 3


def test_segments_are_never_rewritten(tmp_path: Path) -> None:
    existing = tmp_path / events.segment_name("host", "app", "sess", "device", 0)
    existing.write_bytes(b"old\n")
    w = make_writer(tmp_path)
    w.start()  # opening the existing segment fails: the stream stops writing instead of raising (#15)
    assert isinstance(w.error, FileExistsError)
    w.close()
    assert existing.read_bytes() == b"old\n"


def test_sigkilled_process_leaves_readable_segments_losing_at_most_the_flush_interval(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import time, gpufl
        gpufl.init(app_name="victim", log_dir={str(tmp_path)!r}, engines="system", segment_max_bytes=4096,
                   flush_interval_s=0.05)
        i = 0
        while True:
            with gpufl.scope("work"):
                i += 1
            if i % 100 == 0:
                print(i, flush=True)
                time.sleep(0.001)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    while int(proc.stdout.readline() or 0) < 5000:
        pass
    t_kill = time.time_ns()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    segs = segments(tmp_path, "scope")
    assert len(segs) > 3
    recs = [r for s in segs for r in records_of(s)]
    assert [r.seq for r in recs] == list(range(len(recs)))
    assert not any(isinstance(r, events.SessionEnd) for r in recs), "no session_end: cut short"
    last_ts = max(r.ts_ns for r in recs if isinstance(r, events.ScopeEnd))
    assert t_kill - last_ts < 1_000_000_000, "at most about one second lost"

"""Capture modes and triggers (gpufl.client.capture): the schedule and triggers on an injected clock, and a real
session whose windows switch the native module's CUPTI state while recorded H100 activity buffers are replayed
through it (the only stand-in: CUPTI itself, which delivers a buffer only while its activity kinds are on)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import gpufl
from gpufl.client import capture
from gpufl.contract import events

S = 1_000_000_000
T0 = 1_800_000_000 * S


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Switches:
    """An engine's side of a window: the transitions it was asked for."""

    name = "tracing"

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def set_capture(self, on: bool) -> None:
        self.seen.append(on)


def controller(text: str, **kw: Any) -> tuple[capture.Capture, Clock, Switches, list[events.Record]]:
    clock, eng, out = Clock(), Switches(), []
    c = capture.Capture(capture.parse(text), [eng], out.append, "sid0000000000000", clock=clock, **kw)
    return c, clock, eng, out


def test_modes_parse_and_bad_ones_say_what_is_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert capture.parse("continuous").mode == "continuous"
    w = capture.parse("windows")
    assert (w.mode, w.on_ns, w.period_ns, w.text) == ("windows", 2 * S, 60 * S, "windows:2s/60s")
    assert capture.parse("windows:500ms/1m").on_ns == S // 2
    st = capture.parse("steps:100-110")
    assert (st.mode, st.first_step, st.last_step) == ("steps", 100, 110)
    assert capture.parse("on-demand").mode == "on-demand"
    for bad in ("windows:60s/2s", "windows:2s", "steps:9-3", "sometimes", "windows:xs/1s"):
        with pytest.raises(ValueError):
            capture.parse(bad)
    monkeypatch.setenv("GPUFL_CAPTURE", "sometimes")
    with pytest.raises(ValueError, match="'sometimes': want continuous"):
        gpufl.init(app_name="bad", log_dir="/nonexistent-gpufl")


def test_windows_open_on_schedule_and_close_after_their_duration() -> None:
    c, clock, eng, out = controller("windows:2s/60s")
    assert c.tick() == pytest.approx(2.0)  # the first window opens at start, closes 2 s later
    assert eng.seen == [True]
    clock.now = T0 + 2 * S
    assert c.tick() == pytest.approx(58.0)
    assert eng.seen == [True, False]
    clock.now = T0 + 59 * S
    c.tick()
    assert eng.seen == [True, False]  # not yet
    clock.now = T0 + 60 * S
    c.tick()
    clock.now = T0 + 62 * S + 1
    c.tick()
    assert eng.seen == [True, False, True, False]
    assert [(w.start_ns, w.end_ns, w.trigger.kind, w.ended) for w in out] == [  # type: ignore[attr-defined]
        (T0, T0 + 2 * S, "schedule", "duration"),
        (T0 + 60 * S, T0 + 62 * S + 1, "schedule", "duration"),
    ]
    # a host suspended for ten minutes: the missed periods are not made up, one window opens
    clock.now = T0 + 700 * S
    c.tick()
    assert eng.seen[-1] is True and c.window is not None and c._next_scheduled == T0 + 720 * S


def test_one_window_at_a_time_requests_extend_or_are_refused() -> None:
    c, clock, eng, out = controller("on-demand")
    c.tick()
    assert eng.seen == [] and c.window is None  # on-demand: nothing until asked
    assert c.request("api", seconds=5) == "opened"
    clock.now = T0 + S
    assert c.request("api", seconds=10) == "extended"  # ends at T0+11 s, later than T0+5 s
    assert c.request("api", seconds=1) == "refused"  # ends earlier
    assert c.request("api", steps=3) == "refused"  # another unit
    clock.now = T0 + 10 * S
    c.tick()
    assert c.window is not None
    clock.now = T0 + 11 * S
    c.tick()
    (w,) = out
    assert isinstance(w, events.CaptureWindow)
    assert (w.end_ns, w.extended, w.refused, w.ended, w.trigger.seconds) == (T0 + 11 * S, 1, 2, "duration", 5)
    assert eng.seen == [True, False]


def test_a_scheduled_window_is_not_opened_over_a_requested_one() -> None:
    c, clock, _eng, out = controller("windows:2s/60s")
    c.tick()
    clock.now = T0 + 2 * S
    c.tick()
    clock.now = T0 + 50 * S
    assert c.request("api", seconds=20) == "opened"
    clock.now = T0 + 60 * S
    c.tick()  # the schedule's window is due: counted as refused in the open one
    clock.now = T0 + 70 * S
    c.tick()
    assert [(w.trigger.kind, w.refused) for w in out] == [("schedule", 0), ("api", 1)]  # type: ignore[attr-defined]


def test_step_ranges_and_step_counts() -> None:
    c, _clock, _eng, out = controller("steps:2-4")
    for i in range(7):
        c.step_begin()
        assert (c.window is not None) == (2 <= i <= 4), i
        c.step_end()
    (w,) = out
    assert (w.trigger.kind, w.trigger.first_step, w.trigger.steps, w.ended) == ("steps", 2, 3, "steps")  # type: ignore[attr-defined]
    # gpufl.capture(steps=2) inside a step: that step is the first of the two
    c.step_begin()
    assert c.request("api", steps=2) == "opened"
    c.step_end()
    assert c.window is not None
    c.step_begin()
    c.step_end()
    assert c.window is None and out[-1].trigger.first_step == 7  # type: ignore[attr-defined]


def test_scope_windows_close_at_their_scope_exit_and_shutdown_closes_the_last() -> None:
    c, _clock, eng, out = controller("on-demand")
    c.request("scope", scope_inst=41, scope="eval")
    c.scope_exit(40)  # another scope
    assert c.window is not None
    c.scope_exit(41)
    assert out[-1].ended == "scope_exit" and out[-1].trigger.scope == "eval"  # type: ignore[attr-defined]
    c.request("api", seconds=100)
    c.shutdown()
    assert out[-1].ended == "shutdown" and eng.seen == [True, False, True, False]  # type: ignore[attr-defined]


def test_the_control_file(tmp_path: Path) -> None:
    c, _clock, _eng, out = controller("on-demand", log_dir=str(tmp_path))
    path = tmp_path / capture.CONTROL_FILE
    assert c.poll_control_file() is None  # no file
    path.write_text(json.dumps({"id": "r1", "seconds": 3, "requester": "agent@h1"}))
    os.utime(path, ns=(T0 + S, T0 + S))
    assert c.poll_control_file() == "opened"
    assert c.poll_control_file() is None  # unchanged
    os.utime(path, ns=(T0 + 2 * S, T0 + 2 * S))
    assert c.poll_control_file() is None  # rewritten with the same id: done already
    path.write_text(json.dumps({"id": "r2", "seconds": 9, "session_id": "someoneelse00000"}))
    os.utime(path, ns=(T0 + 3 * S, T0 + 3 * S))
    assert c.poll_control_file() is None  # for another session
    path.write_text("{not json")
    os.utime(path, ns=(T0 + 4 * S, T0 + 4 * S))
    assert c.poll_control_file() is None  # said in the log, ignored
    c.stop()
    answer, w = out  # the request's answer, then the window's record at its close
    assert isinstance(answer, events.CaptureRequest) and isinstance(w, events.CaptureWindow)
    assert (answer.request_id, answer.outcome, answer.engines, answer.requester) == (
        "r1", "opened", ["tracing"], "agent@h1",
    )  # fmt: skip
    assert (w.trigger.kind, w.trigger.request_id, w.requester) == ("control_file", "r1", "agent@h1")
    assert w.trigger.control_file == str(path)
    # a file older than the session is not for it
    old, _, _, _out2 = controller("on-demand", log_dir=str(tmp_path))
    path.write_text(json.dumps({"id": "r3"}))
    os.utime(path, ns=(T0 - S, T0 - S))
    assert old.poll_control_file() is None


def test_a_window_switches_the_engines_it_asks_for(tmp_path: Path) -> None:
    """``tracing`` by default; ``sass``/``pc_sampling`` switch the deep engine (a deep range for the window)
    and leave tracing off; the window's record lists what it switched; an unknown engine is refused."""
    clock, tracing, out = Clock(), Switches(), []
    deep = Switches()
    deep.name = "deep"
    c = capture.Capture(
        capture.parse("on-demand"), [tracing, deep], out.append, "sid0000000000000", clock=clock,
        log_dir=str(tmp_path),
    )  # fmt: skip
    assert c.request("api", seconds=1) == "opened"
    c.stop()
    assert (tracing.seen, deep.seen) == ([True, False], [])
    assert c.request("api", seconds=1, engines=["pc_sampling"]) == "opened"
    c.stop()
    assert (tracing.seen, deep.seen) == ([True, False], [True, False])
    assert c.request("api", seconds=1, engines=("tracing", "sass", "pc_sampling")) == "opened"
    c.stop()
    assert (tracing.seen, deep.seen) == ([True, False] * 2, [True, False] * 2)
    with pytest.raises(ValueError, match="unknown capture engine"):
        c.request("api", seconds=1, engines=["nsight"])
    path = tmp_path / capture.CONTROL_FILE
    path.write_text(json.dumps({"id": "d1", "seconds": 2, "engines": ["sass"]}))
    os.utime(path, ns=(T0 + S, T0 + S))
    assert c.poll_control_file() == "opened"
    c.stop()
    assert deep.seen == [True, False] * 3 and len(tracing.seen) == 4
    path.write_text(json.dumps({"id": "d2", "engines": "sass"}))  # not a list: said in the log, ignored
    os.utime(path, ns=(T0 + 2 * S, T0 + 2 * S))
    assert c.poll_control_file() is None
    assert [w.engines for w in out if isinstance(w, events.CaptureWindow)] == [
        ["tracing"],
        ["pc_sampling"],
        ["tracing", "sass", "pc_sampling"],
        ["sass"],
    ]
    # a session without the deep engines: the window opens, its record says it switched nothing
    c2, _, eng2, out2 = controller("on-demand")
    assert c2.request("api", seconds=1, engines=["pc_sampling"]) == "opened"
    c2.stop()
    assert eng2.seen == [] and out2[0].engines == []  # type: ignore[attr-defined]


def test_sigusr2_is_taken_only_when_the_program_has_no_handler(tmp_path: Path) -> None:
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    session = gpufl.init(app_name="usr2", log_dir=str(tmp_path), engines="system", capture="on-demand")
    assert session is not None and session.capture is not None
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        deadline = time.monotonic() + 5
        while session.capture.window is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.capture.window is not None
        assert session.capture.window.trigger.signal == "SIGUSR2"
    finally:
        gpufl.shutdown()
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL  # given back
    mine: list[int] = []
    signal.signal(signal.SIGUSR2, lambda s, f: mine.append(s))
    try:
        session = gpufl.init(app_name="usr2b", log_dir=str(tmp_path), engines="system", capture="on-demand")
        assert session is not None
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.05)
        assert mine == [signal.SIGUSR2] and session.capture is not None and session.capture.window is None
        gpufl.shutdown()
    finally:
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)


# ---------------------------------------------------------------- the native module behind a real session

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "native_gpt"


def _native_with_libcupti() -> Any:
    try:
        from gpufl.client import _native  # type: ignore[attr-defined]
    except ImportError as e:
        pytest.skip(f"gpufl.client._native is not built here: {e}")
    from gpufl.client.engines.native_tracing import libcupti_candidates

    for path in libcupti_candidates():
        try:
            _native.load(path)
            return _native
        except OSError:
            continue
    pytest.skip("libcupti not found")


def test_windows_switch_the_native_module_and_only_their_records_are_kept(tmp_path: Path) -> None:
    """A real session in on-demand mode, the native tracing engine attached to a C writer. CUPTI cannot start
    without a GPU, so CUPTI's part is played by the test: it delivers the next recorded buffer (H100 activity)
    only while the module says its activity kinds are on. Kernels of buffers replayed inside windows are
    written; those outside never reach the writer; the module's state follows every window."""
    from gpufl.client.engines.native_tracing import NativeTracingEngine
    from gpufl.client.writer import DiskBudget, NativeStreamWriter, SegmentFiles, StreamWriter

    native = _native_with_libcupti()
    buffers = sorted(FIXTURE.glob("buffer-*.bin"))
    assert len(buffers) >= 2

    def names(buf: Path) -> dict[int, bytes]:
        out = {}
        for line in buf.with_suffix(".names").read_bytes().splitlines():
            ptr, name = line.split(b"\t", 1)
            out[int(ptr, 16)] = name
        return out

    def kernels_in(buf: Path) -> int:
        w = NativeStreamWriter(StreamWriter(SegmentFiles(str(tmp_path / buf.stem), "h", "a", "sid0000000000000"),
            "device", queue_size=100, segment_max_bytes=64 << 20, segment_max_age_s=600, flush_interval_s=0.01,
            budget=DiskBudget(0)))  # fmt: skip
        w.start()
        native.reset()
        native.attach(w.native, [], 0, False)
        native.replay_buffer(buf.read_bytes(), names(buf))
        n = int(native.stats()["kernels"])
        native.detach()
        w.close(None)
        return n

    expected = [kernels_in(b) for b in buffers[:2]]
    session = gpufl.init(app_name="windows", log_dir=str(tmp_path), engines="system", capture="on-demand")
    assert session is not None and session.capture is not None
    trace = NativeStreamWriter(StreamWriter(SegmentFiles(str(tmp_path / "trace"), "h", "a", "sid0000000000000"),
        "device", queue_size=100_000, segment_max_bytes=64 << 20, segment_max_age_s=600, flush_interval_s=0.01,
        budget=DiskBudget(0)))  # fmt: skip
    trace.start()
    eng = NativeTracingEngine()
    eng.native, eng.session = native, session
    native.reset()
    native.capture(False)  # what NativeTracingEngine.start does in any mode but continuous
    native.attach(trace.native, [], 0, False)
    session.capture.engines.append(eng)
    states = []

    def cupti_delivers(buf: Path) -> None:
        capturing, _, _ = native.capture_state()
        states.append(capturing)
        if capturing:
            native.replay_buffer(buf.read_bytes(), names(buf))

    try:
        cupti_delivers(buffers[0])  # outside any window: CUPTI was off, nothing comes
        assert gpufl.capture(seconds=60) == "opened"
        cupti_delivers(buffers[1])
        assert gpufl.capture_stop()
        cupti_delivers(buffers[1])  # closed again
        with gpufl.scope("eval", capture=True):
            cupti_delivers(buffers[0])
        cupti_delivers(buffers[1])
        stats = native.stats()
        capturing, switches, applied = native.capture_state()
    finally:
        native.detach()
        trace.close(None)
        gpufl.shutdown()
    assert states == [False, True, False, True, False]
    assert (capturing, switches, applied) == (False, 5, 0)  # off at start, 2 windows; CUPTI inactive here
    assert stats["kernels"] == expected[1] + expected[0] > 0
    written = [events.decode(ln) for p in sorted((tmp_path / "trace").glob("*.log"))
               for ln in p.read_bytes().splitlines()]  # fmt: skip
    assert sum(isinstance(r, events.Kernel) for r in written) == expected[1] + expected[0]
    device = [
        events.decode(ln)
        for p in sorted(tmp_path.glob("*.device.*.log"))
        for ln in p.read_bytes().splitlines()
    ]
    windows = [r for r in device if isinstance(r, events.CaptureWindow)]
    assert [(w.trigger.kind, w.ended, w.engines) for w in windows] == [
        ("api", "stopped", ["tracing"]),
        ("scope", "scope_exit", ["tracing"]),
    ]


def _ask(c: capture.Capture, path: Path, at: int, **req: Any) -> capture.Outcome | None:
    path.write_text(json.dumps(req))
    os.utime(path, ns=(T0 + at * S, T0 + at * S))
    return c.poll_control_file()


def test_every_control_file_request_is_answered_with_what_became_of_it(tmp_path: Path) -> None:
    """Remote capture (#22) reads the answers back: opened, extended, refused with the reason (one window at a
    time, an engine the session does not run, the hour's budget spent, remote capture off), and ``session_ids``
    addresses some of a folder's sessions."""
    c, clock, _eng, out = controller("on-demand", log_dir=str(tmp_path), remote_budget_s=20)
    path = tmp_path / capture.CONTROL_FILE
    assert _ask(c, path, 1, id="a", seconds=5, engines=["tracing", "pc_sampling"]) == "opened"
    assert _ask(c, path, 2, id="b", seconds=8) == "extended"
    assert _ask(c, path, 3, id="c", steps=2) == "refused"  # another unit
    assert _ask(c, path, 4, id="d", seconds=1, engines=["sass"]) is not None  # no deep engine here
    clock.now += 9 * S
    c.tick()  # the window ran out
    assert _ask(c, path, 5, id="e", seconds=10) == "refused"  # 5 + 8 + 10 > 20 s this hour
    assert _ask(c, path, 6, id="f", seconds=3, session_ids=["other0000000000a"]) is None  # not ours
    assert _ask(c, path, 7, id="g", seconds=3, session_ids=["other0000000000a", c.session_id]) == "opened"
    answers = [
        (r.request_id, r.outcome, r.reason, r.engines, r.missing)
        for r in out
        if isinstance(r, events.CaptureRequest)
    ]
    assert answers == [
        ("a", "opened", None, ["tracing"], ["pc_sampling"]),
        ("b", "extended", None, ["tracing"], []),
        ("c", "refused", "window_open", [], []),
        ("d", "refused", "engine_unavailable", [], ["sass"]),
        ("e", "refused", "budget_spent", [], []),
        ("g", "opened", None, ["tracing"], []),
    ]
    c.stop()
    clock.now += 3600 * S  # an hour later the budget is back
    assert _ask(c, path, 8, id="h", seconds=10) == "opened"
    off, _, eng, out2 = controller("on-demand", log_dir=str(tmp_path), remote=False)
    assert _ask(off, path, 9, id="i", seconds=1) == "refused" and eng.seen == []
    assert [(r.outcome, r.reason) for r in out2] == [("refused", "remote_capture_disabled")]  # type: ignore[attr-defined]


def test_a_continuous_session_answers_requests_and_opens_deep_windows_alone(tmp_path: Path) -> None:
    """Tracing is on throughout (issue #22): a request for it alone is answered ``continuous`` (tracing is not
    missing) and opens nothing; one for a deep engine opens a window of the deep engine alone — tracing is never
    switched, not at the window's close either — under the same rules as the other modes (one window at a
    time, the budget, remote capture off); a deep engine the session does not run is refused."""
    clock, tracing, deep, out = Clock(), Switches(), Switches(), []
    deep.name = "deep"
    c = capture.Capture(
        capture.parse("continuous"), [tracing, deep], out.append, "sid0000000000000", clock=clock,
        log_dir=str(tmp_path), remote_budget_s=20,
    )  # fmt: skip
    path = tmp_path / capture.CONTROL_FILE
    assert _ask(c, path, 1, id="t", seconds=5) == "continuous"
    assert c.window is None
    assert _ask(c, path, 2, id="p", seconds=5, engines=["tracing", "pc_sampling"]) == "opened"
    assert c.window is not None and c.window.engines == ("pc_sampling",)
    assert _ask(c, path, 3, id="s", seconds=8, engines=["pc_sampling"]) == "extended"
    assert _ask(c, path, 4, id="q", steps=2, engines=["pc_sampling"]) == "refused"  # another unit
    assert c.request("api", seconds=1) == "continuous"  # gpufl.capture(): tracing is on anyway
    clock.now += 9 * S
    c.tick()  # the window ran out
    assert c.window is None
    assert _ask(c, path, 5, id="b", seconds=10, engines=["pc_sampling"]) == "refused"  # 5 + 8 + 10 > 20 s
    assert tracing.seen == [] and deep.seen == [True, False]
    answers = [
        (r.request_id, r.outcome, r.reason, r.engines, r.missing)
        for r in out
        if isinstance(r, events.CaptureRequest)
    ]
    assert answers == [
        ("t", "continuous", None, ["tracing"], []),
        ("p", "opened", None, ["tracing", "pc_sampling"], []),
        ("s", "extended", None, ["pc_sampling"], []),
        ("q", "refused", "window_open", [], []),
        ("b", "refused", "budget_spent", [], []),
    ]
    (w,) = [r for r in out if isinstance(r, events.CaptureWindow)]
    assert (w.trigger.mode, w.trigger.kind, w.trigger.request_id, w.engines, w.ended, w.extended, w.refused) == (
        "continuous", "control_file", "p", ["pc_sampling"], "duration", 1, 1,
    )  # fmt: skip
    assert w.end_ns - w.start_ns == 9 * S  # extended past its 5 s to 8 s; closed by the tick at 9 s
    c.shutdown()


def test_a_continuous_session_without_the_deep_engine_refuses_it(tmp_path: Path) -> None:
    """The common ask on a live job — tracing plus PC sampling — where the session runs no deep engine (it was
    not started with ``engines=...pc_sampling``, or its record path cannot run it): refused, the engine in
    ``missing``, tracing not; with remote capture off a deep request is refused so, a tracing one still answered
    ``continuous`` (it asks nothing of the session)."""
    c, _clock, eng, out = controller("continuous", log_dir=str(tmp_path))
    path = tmp_path / capture.CONTROL_FILE
    assert _ask(c, path, 1, id="a", seconds=5, engines=["tracing", "pc_sampling"]) == "refused"
    assert _ask(c, path, 2, id="b", seconds=5, engines=["sass"]) == "refused"
    off, _, eng2, out2 = controller("continuous", log_dir=str(tmp_path), remote=False)
    assert _ask(off, path, 3, id="c", seconds=5, engines=["pc_sampling"]) == "refused"
    assert _ask(off, path, 4, id="d", seconds=5) == "continuous"
    assert eng.seen == [] and eng2.seen == [] and c.window is None and off.window is None
    got = [(r.request_id, r.outcome, r.reason, r.engines, r.missing) for r in out + out2]  # type: ignore[attr-defined]
    assert got == [
        ("a", "refused", "engine_unavailable", [], ["pc_sampling"]),
        ("b", "refused", "engine_unavailable", [], ["sass"]),
        ("c", "refused", "remote_capture_disabled", [], ["pc_sampling"]),
        ("d", "continuous", None, ["tracing"], []),
    ]
    # a session that traces nothing (engines="system"): tracing asked for is unavailable, not "continuous"
    bare = capture.Capture(
        capture.parse("continuous"), [], out.append, "sid0000000000000", clock=Clock(), log_dir=str(tmp_path)
    )
    assert _ask(bare, path, 5, id="e", seconds=5) == "refused"
    assert (out[-1].outcome, out[-1].reason, out[-1].missing) == (
        "refused",
        "engine_unavailable",
        ["tracing"],
    )  # type: ignore[attr-defined]


def test_the_deep_engine_is_asked_whether_it_can_run_only_when_a_request_wants_it(tmp_path: Path) -> None:
    """``DeepEngine.runnable`` sets CUPTI's deep engines up on the first ask: a tracing request must not ask
    it; a deep request does, and where it cannot run now (no GPU, no CUDA context yet) the answer refuses and
    says it is missing rather than opening a window that would record nothing."""

    class Deep(Switches):
        def __init__(self, can: list[str]) -> None:
            super().__init__()
            self.name, self.can, self.asked = "deep", can, 0

        def runnable(self) -> list[str]:
            self.asked += 1
            return self.can

    cannot, can = Deep([]), Deep(["pc_sampling"])
    out: list[events.Record] = []
    path = tmp_path / capture.CONTROL_FILE
    for deep in (cannot, can):
        c = capture.Capture(
            capture.parse("continuous"), [Switches(), deep], out.append, "sid0000000000000", clock=Clock(),
            log_dir=str(tmp_path),
        )  # fmt: skip
        assert _ask(c, path, 1, id=f"t-{deep.can}", seconds=2) == "continuous"
        assert deep.asked == 0
        got = _ask(c, path, 2, id=f"p-{deep.can}", seconds=2, engines=["tracing", "pc_sampling", "sass"])
        assert deep.asked == 1 and got == ("opened" if deep.can else "refused")
        c.shutdown()
    answers = [
        (r.outcome, r.reason, r.engines, r.missing) for r in out if isinstance(r, events.CaptureRequest)
    ]
    assert answers == [
        ("continuous", None, ["tracing"], []),
        ("refused", "engine_unavailable", [], ["pc_sampling", "sass"]),
        ("continuous", None, ["tracing"], []),
        ("opened", None, ["tracing", "pc_sampling"], ["sass"]),
    ]
    assert cannot.seen == [] and can.seen == [True, False]


class DeepSetups(Switches):
    """A deep engine's side of a request: ``runnable`` sets CUPTI's deep APIs up (the program's context, a
    512 MiB sampling buffer); ``offered`` names the engines without that."""

    name = "deep"

    def __init__(self) -> None:
        super().__init__()
        self.setups = 0

    def runnable(self) -> list[str]:
        self.setups += 1
        return ["pc_sampling"]

    def offered(self) -> list[str]:
        return ["pc_sampling"]


def test_a_request_refused_anyway_sets_no_deep_engine_up(tmp_path: Path) -> None:
    """Remote capture off, or the hour's budget spent: the request is refused without touching CUPTI's deep
    APIs (the review found both set them up first); one that will be acted on sets them up."""
    path = tmp_path / capture.CONTROL_FILE
    for remote, budget, reason in ((False, 60.0, "remote_capture_disabled"), (True, 1.0, "budget_spent")):
        deep, out = DeepSetups(), []
        c = capture.Capture(
            capture.parse("continuous"), [deep], out.append, "sid0000000000000", clock=Clock(),
            log_dir=str(tmp_path), remote=remote, remote_budget_s=budget,
        )  # fmt: skip
        assert _ask(c, path, 1, id=f"r{remote}", seconds=5, engines=["pc_sampling"]) == "refused"
        assert deep.setups == 0 and deep.seen == []
        (r,) = [x for x in out if isinstance(x, events.CaptureRequest)]
        assert (r.reason, r.missing) == (reason, [])  # the session has the engine: not missing
    deep, out = DeepSetups(), []
    c = capture.Capture(
        capture.parse("continuous"),
        [deep],
        out.append,
        "sid0000000000000",
        clock=Clock(),
        log_dir=str(tmp_path),
    )
    assert _ask(c, path, 2, id="go", seconds=5, engines=["pc_sampling"]) == "opened"
    assert deep.setups == 1 and deep.seen == [True]
    c.shutdown()


def test_a_slow_deep_close_does_not_hold_up_the_programs_scopes_and_steps() -> None:
    """Closing a deep window waits for CUPTI's collection (a context synchronize, the samples' decoding); the
    program's threads take the controller's lock at every gpufl.scope exit and gpufl.step(), and must not wait
    for it (the review found them blocked for the whole collection). A window opened meanwhile switches on only
    after the close has switched off."""
    import threading
    import time

    release = threading.Event()

    class SlowDeep(Switches):
        name = "deep"

        def set_capture(self, on: bool) -> None:
            if not on:
                assert release.wait(10), "the test never let the close finish"
            super().set_capture(on)

    deep, out = SlowDeep(), []
    c = capture.Capture(capture.parse("on-demand"), [deep], out.append, "sid0000000000000", clock=Clock())
    assert c.request("api", seconds=5, engines=["pc_sampling"]) == "opened"
    closer = threading.Thread(target=c.stop)
    closer.start()
    deadline = time.monotonic() + 5
    while c.window is not None and time.monotonic() < deadline:  # closed: now switching off
        time.sleep(0.001)
    t0 = time.monotonic()
    c.scope_exit(12345)
    c.step_begin()
    c.step_end()
    assert time.monotonic() - t0 < 1.0, "a scope exit or a step waited for the deep close"
    assert closer.is_alive() and deep.seen == [True]  # still collecting
    opener = threading.Thread(target=lambda: c.request("api", seconds=5, engines=["pc_sampling"]))
    opener.start()
    time.sleep(0.05)
    assert deep.seen == [True]  # the new window waits for the close's switch-off
    release.set()
    closer.join(5)
    opener.join(5)
    assert deep.seen == [True, False, True]
    assert [r.ended for r in out if isinstance(r, events.CaptureWindow)] == ["stopped"]
    c.shutdown()

"""Capture modes in C (native/capture_modes.c, control_file.c): what `gpufl run -- ./app` runs inside a program
without Python. The extension compiles the same C and exposes it through test hooks (native/capture_hooks.c),
so the schedule, the triggers and the control file run here on a test clock with a real native Writer, and
their records are decoded by the contract and compared with what gpufl.client.capture (the Python side) does
in the same steps. The background thread and SIGUSR2 run for real in a child process; the injection library
itself is loaded the way CUDA loads it (no GPU here: its tracing does not start, which the last test covers)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpufl.client import capture
from gpufl.contract import events

S = 1_000_000_000
SID = "sid0000000000000"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _native() -> Any:
    try:
        from gpufl.client import _native  # type: ignore[attr-defined]
    except ImportError:
        if IN_CI:
            pytest.fail("gpufl.client._native is not built")
        pytest.skip("gpufl.client._native is not built here")
    if not hasattr(_native, "cap_parse"):
        pytest.fail("gpufl.client._native predates the capture hooks: rebuild it (scripts/build_native.sh)")
    return _native


class CController:
    """The C controller over a native Writer in tmp_path, on a test clock from T0."""

    def __init__(self, tmp_path: Path, mode: str, t0: int, log_dir: str | None = None, seconds: float = 10.0):
        self.native = _native()
        self.tmp = tmp_path
        self.now = t0
        self.w = self.native.Writer(
            str(tmp_path / "dev."), ".log", SID, "device", 1 << 20, 600.0, 0.05, 1 << 20
        )
        self.w.start()
        self.native.reset()
        assert self.native.cap_begin(self.w, mode, SID, log_dir, seconds, t0)

    def at(self, t: int) -> None:
        self.now = t
        self.native.cap_clock(t)

    def records(self) -> list[events.Record]:
        """Shut the controller down (closing the open window) and read what the writer wrote."""
        self.native.cap_shutdown()
        self.w.close(None)
        out: list[events.Record] = []
        for seg in sorted(self.tmp.glob("dev.*.log")):
            out += [events.decode(line) for line in seg.read_bytes().splitlines()]
        return out


@pytest.fixture
def cleanup() -> Iterator[None]:
    yield
    native = _native()
    native.cap_shutdown()  # a failed test must not leave the process's one controller begun
    native.reset()


def _windows(recs: list[events.Record]) -> list[tuple[Any, ...]]:
    return [
        (w.start_ns, w.end_ns, w.trigger.kind, w.trigger.seconds, w.ended, w.extended, w.refused, w.requester)
        for w in recs
        if isinstance(w, events.CaptureWindow)
    ]


def test_modes_parse_as_the_python_side_parses_them() -> None:
    native = _native()
    for text in ("continuous", "", " Windows ", "windows:500ms/1m", "windows:1.5s/10", "windows:2 s/1h",
                 "on-demand", "ondemand", "steps:100-110", "steps:3-3"):  # fmt: skip
        p = capture.parse(text)
        assert native.cap_parse(text) == (p.mode, p.on_ns, p.period_ns, p.first_step, p.last_step, p.text), (
            text
        )
    for bad in ("windows:60s/2s", "windows:2s", "steps:9-3", "sometimes", "windows:xs/1s", "windows:2s/1y",
                "steps:1-", "steps:-1-3", "windows:.5s/1s"):  # fmt: skip
        with pytest.raises(ValueError):
            capture.parse(bad)
        with pytest.raises(ValueError, match="want"):
            native.cap_parse(bad)


def test_control_files_parse_as_json_does_and_malformed_ones_say_why() -> None:
    native = _native()
    good = {"id": "req-42", "seconds": 30, "requester": "agent@host-3", "session_id": SID}
    assert native.cap_control_parse(json.dumps(good).encode()) == {**good, "seconds": 30.0}
    # other keys are skipped whatever they hold; escapes, non-ASCII and numbers as strings as Python reads them
    odd = {"note": {"a": [1, 2.5e3, None, True, {"b": "x" * 1000}]}, "id": 7, "seconds": "2.5",
           "requester": "Zoë \u2603 \U0001f600 \"q\"\\", "session_id": None}  # fmt: skip
    got = native.cap_control_parse(json.dumps(odd).encode())
    assert got == {"id": "7", "seconds": 2.5, "requester": odd["requester"]}
    assert native.cap_control_parse(json.dumps(odd, ensure_ascii=False).encode()) == got
    assert native.cap_control_parse(b'\xef\xbb\xbf {"id":"x","steps":3}\n') == {"id": "x", "steps": 3.0}
    # remote capture's lists (#22): the engines asked for (bits: tracing 1, sass 2, pc_sampling 4), and whether
    # session_ids names this session (the hook's session is "me"); null and [] as absent / the default
    lists = {"id": "x", "engines": ["pc_sampling", "tracing"], "session_ids": ["you", "me"]}
    assert native.cap_control_parse(json.dumps(lists).encode()) == {
        "id": "x", "engines": 5, "session_ids_name_me": True,
    }  # fmt: skip
    assert native.cap_control_parse(b'{"id":"x","session_ids":["you"],"engines":[]}') == {
        "id": "x", "session_ids_name_me": False,
    }  # fmt: skip
    assert native.cap_control_parse(b'{"id":"x","session_ids":null,"engines":null}') == {"id": "x"}
    malformed = {
        b"": "not a JSON object",
        b"[1]": "not a JSON object",
        b'{"id": "x"} trailing': "text after the object",
        b'{"seconds": 3}': "no id",
        b'{"id": "x", "seconds": "soon"}': "seconds is not a number",
        b'{"id": "x", "seconds": 1e300}': "seconds out of range",
        b'{"id": "\xff"}': "not UTF-8",
        b'{"id": "\\ud800"}': "a lone surrogate",
        b'{"id": "x\\u0000"}': "a NUL character",
        b'{"id": "' + b"x" * 300 + b'"}': "longer than 256 bytes",
        b'{"id": "x", "deep": ' + b"[" * 40 + b"]" * 40 + b"}": "nested too deep",
        b'{"id": "x",}': "an object key is not a string",
        b'{"id": "x"': "a bad object",
        b'{"id": 01}': "a bad object",
        b'{"id": "x", "n": -}': "not a JSON value",
        b'{"id": ["x"]}': "id is not a string",
        b'{"id": "x", "seconds": true}': "seconds is not a number",
        b'{"id": "x", "engines": "sass"}': "engines: want a list of strings",
        b'{"id": "x", "engines": ["sass", 1]}': "engines: want a list of strings",
        b'{"id": "x", "engines": ["nsight"]}': "engines: an engine other than tracing, sass, pc_sampling",
        b'{"id": "x", "session_ids": [["me"]]}': "session_ids: want a list of strings",
        b'{"id": "x", "session_ids": ["me",]}': "session_ids: want a list of strings",
    }
    # a few are stricter than Python's reading (which takes str(["x"]) as an id, float(True) as seconds, 1e300
    # seconds, any nesting and any length): what an agent writes is none of these
    for text, why in malformed.items():
        with pytest.raises(ValueError, match=why):
            native.cap_control_parse(text)


def test_random_control_files_are_read_or_refused_never_misread() -> None:
    """Bytes flipped, cut and inserted in valid files: C reads each as Python's json does, or refuses it."""
    import random

    native = _native()
    rng = random.Random(21)
    seeds = [json.dumps({"id": "req-42", "seconds": 30, "requester": "agent@h\u00e9", "x": [1, {"y": None}]}),
             json.dumps({"session_id": SID, "id": 7, "steps": "3", "z": "\\\"q\""}, ensure_ascii=False)]  # fmt: skip
    read = refused = 0
    for _ in range(3000):
        b = bytearray(rng.choice(seeds).encode())
        for _k in range(rng.randint(1, 3)):
            at = rng.randrange(max(1, len(b)))
            op = rng.random()
            if op < 0.4 and b:
                b[at] = rng.randrange(256)
            elif op < 0.7:
                del b[at:]
            else:
                b.insert(at, rng.choice(b'{}[]",:\\0123456789.eE-+ tfnu\xff\xc3'))
        try:
            got = native.cap_control_parse(bytes(b))
        except ValueError:
            refused += 1
            continue
        read += 1
        py = json.loads(bytes(b))  # what C read, Python reads too ...
        assert isinstance(py, dict) and got["id"] == str(py["id"]), bytes(b)  # ... the same way
        if "requester" in got:
            assert got["requester"] == str(py["requester"])
    assert read > 100 and refused > 100


def test_windows_run_on_schedule_as_the_python_side_runs_them(tmp_path: Path, cleanup: None) -> None:
    t0 = 1_800_000_000 * S
    c = CController(tmp_path, "windows:2s/60s", t0)
    native = c.native
    py_out: list[events.Record] = []
    now = [t0]
    py = capture.Capture(capture.parse("windows:2s/60s"), [], py_out.append, SID, clock=lambda: now[0])

    def both(t: int, action: str, *args: Any) -> tuple[Any, Any]:
        now[0] = t
        c.at(t)
        if action == "tick":
            return round(py.tick() * S), native.cap_tick()
        seconds = args[0]
        return py.request("signal", seconds=seconds, signal="SIGUSR2"), native.cap_request("signal", seconds)

    native.cap_start(False)
    py.tick()
    assert native.capture_state()[0] is True  # the first window opens at start, tracing switched on
    assert both(t0 + S, "tick") == (S, S)
    assert both(t0 + 2 * S, "tick") == (58 * S, 58 * S)  # closed; the next in 58 s
    assert native.capture_state()[:2] == (False, 2)
    assert both(t0 + 50 * S, "req", 20.0) == ("opened", "opened")  # SIGUSR2: a window of its own
    assert both(t0 + 51 * S, "req", 5.0) == ("refused", "refused")  # ends earlier
    assert both(t0 + 52 * S, "req", 30.0) == ("extended", "extended")  # to t0+82 s
    assert both(t0 + 60 * S, "tick") == (
        22 * S,
        22 * S,
    )  # the schedule's window is due: refused in the open one
    assert both(t0 + 82 * S, "tick") == (38 * S, 38 * S)
    assert both(t0 + 700 * S, "tick") == (2 * S, 2 * S)  # a host suspended: missed periods are not made up
    now[0] = t0 + 701 * S
    py.shutdown()
    c.at(t0 + 701 * S)
    recs = c.records()
    assert _windows(recs) == _windows(py_out)
    assert _windows(recs) == [
        (t0, t0 + 2 * S, "schedule", 2.0, "duration", 0, 0, None),
        (t0 + 50 * S, t0 + 82 * S, "signal", 20.0, "duration", 1, 2, None),
        (t0 + 700 * S, t0 + 701 * S, "schedule", 2.0, "shutdown", 0, 0, None),
    ]
    assert [r.seq for r in recs] == list(range(len(recs)))
    for r in recs:
        assert isinstance(r, events.CaptureWindow) and r.session_id == SID and r.stream == "device"
        assert r.trigger.mode == "windows" and r.engines == ["tracing"]
    assert recs[1].trigger.signal == "SIGUSR2"  # type: ignore[attr-defined]
    assert native.capture_state() == (
        False,
        6,
        0,
    )  # three windows: on, off each (no CUPTI here to apply them)


def test_on_demand_waits_and_steps_mode_says_it_is_on_demand_here(tmp_path: Path, cleanup: None) -> None:
    t0 = 1_800_000_000 * S
    c = CController(tmp_path, "on-demand", t0, seconds=3.0)
    c.native.cap_start(False)
    assert c.native.cap_tick() == S  # nothing due: the next look at the control file
    assert c.native.cap_state()[:2] == (False, 0)
    assert c.native.cap_request("signal") == "opened"  # no duration asked: GPUFL_CAPTURE_SECONDS
    c.at(t0 + 3 * S)
    c.native.cap_tick()
    assert _windows(c.records()) == [(t0, t0 + 3 * S, "signal", 3.0, "duration", 0, 0, None)]

    (tmp_path / "steps").mkdir()
    c = CController(tmp_path / "steps", "steps:100-110", t0)
    c.native.cap_start(False)
    assert c.native.cap_state()[:3] == (False, 0, 1)
    recs = c.records()
    (note,) = recs
    assert isinstance(note, events.Notice) and note.code == "capture_steps_without_python"
    assert "runs as on-demand" in note.message and note.engine == "tracing"


def test_the_control_file(tmp_path: Path, cleanup: None) -> None:
    native = _native()
    ctl = tmp_path / capture.CONTROL_FILE
    ctl.write_text(json.dumps({"id": "old", "seconds": 5}))
    os.utime(ctl, ns=(1, 1))  # written before the session started: not meant for it
    t0 = 1_800_000_000 * S
    c = CController(tmp_path, "on-demand", t0, log_dir=str(tmp_path))
    assert native.cap_poll() is None

    def write(obj: Any, mtime_s: int) -> None:
        ctl.write_bytes(obj if isinstance(obj, bytes) else json.dumps(obj).encode())
        os.utime(ctl, ns=(t0 + mtime_s * S, t0 + mtime_s * S))

    write({"id": "r1", "seconds": 30, "requester": "agent@host-3"}, 1)
    assert native.cap_poll() == "opened"
    assert native.cap_poll() is None  # unchanged since the last look
    write({"id": "r1", "seconds": 60}, 2)
    assert native.cap_poll() is None  # the same request again: acted on once
    write({"id": "r2", "seconds": 60, "session_id": "someoneelse00000"}, 3)
    assert native.cap_poll() is None  # another session's
    write({"id": "r3", "seconds": 60, "session_id": SID}, 4)
    assert native.cap_poll() == "extended"
    write(b'{"id": "r4", "seconds": ', 5)
    assert native.cap_poll() is None  # malformed: a notice, nothing else
    write({"id": "r5", "steps": 10}, 6)
    assert native.cap_poll() is None  # no steps without Python: a notice
    write({"id": "r6", "seconds": -1}, 7)
    assert native.cap_poll() is None
    write({"id": "r7", "seconds": 60, "session_ids": ["someoneelse00000"]}, 8)
    assert native.cap_poll() is None  # some of the folder's sessions (remote capture), not this one
    ctl.unlink()
    ctl.mkdir()
    os.utime(ctl, ns=(t0 + 9 * S, t0 + 9 * S))
    assert native.cap_poll() is None  # not a regular file
    c.at(t0 + 20 * S)
    recs = c.records()
    (win,) = [r for r in recs if isinstance(r, events.CaptureWindow)]
    assert (win.trigger.kind, win.trigger.control_file, win.trigger.request_id) == (
        "control_file",
        str(ctl),
        "r1",
    )
    assert (win.requester, win.trigger.seconds, win.extended, win.ended) == (
        "agent@host-3",
        30.0,
        1,
        "shutdown",
    )
    notes = [r.message for r in recs if isinstance(r, events.Notice)]
    assert [n.split(": ", 1)[1] for n in notes] == [
        "a value is missing",
        "steps do not apply to a program without Python (gpufl.step())",
        "a capture's seconds must be positive",
        "not a regular file",
    ]
    answers = [(r.request_id, r.outcome, r.engines) for r in recs if isinstance(r, events.CaptureRequest)]
    assert answers == [("r1", "opened", ["tracing"]), ("r3", "extended", ["tracing"])]
    assert all(n.startswith(f"ignored {ctl}: ") for n in notes)


def test_control_file_requests_are_answered_as_the_python_side_answers_them(
    tmp_path: Path, cleanup: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Remote capture (#22) reads the answers back: the C controller answers each request it acts on with the
    same capture_request record as gpufl.client.capture does for a session that runs tracing alone (the
    injection build has no deep engines): opened, extended, refused with the reason (an engine it does not
    run, the hour's budget spent, GPUFL_REMOTE_CAPTURE=0), engines and missing; session_ids read."""
    monkeypatch.setenv("GPUFL_REMOTE_CAPTURE_BUDGET", "20")
    native = _native()
    t0 = 1_800_000_000 * S
    c = CController(tmp_path, "on-demand", t0, log_dir=str(tmp_path))
    py_out: list[events.Record] = []
    clock = [t0]
    py = capture.Capture(
        capture.parse("on-demand"), [type("Tracing", (), {"name": "tracing", "set_capture": lambda s, on: None})()],
        py_out.append, SID, log_dir=str(tmp_path), remote_budget_s=20, clock=lambda: clock[0],
    )  # fmt: skip
    ctl = tmp_path / capture.CONTROL_FILE

    def ask(at: int, **req: Any) -> tuple[str | None, str | None]:
        ctl.write_text(json.dumps({**req, "requester": "operator:k"}))
        os.utime(ctl, ns=(t0 + at * S, t0 + at * S))
        return native.cap_poll(), py.poll_control_file()

    assert ask(1, id="a", seconds=5, engines=["tracing", "pc_sampling"]) == ("opened", "opened")
    assert ask(2, id="b", seconds=8) == ("extended", "extended")
    assert ask(3, id="d", seconds=1, engines=["sass"]) == ("refused", "refused")
    c.at(t0 + 9 * S)
    clock[0] = t0 + 9 * S
    native.cap_tick(), py.tick()  # the window ran out
    assert ask(4, id="e", seconds=10) == ("refused", "refused")  # 5 + 8 + 10 > 20 s this hour
    assert ask(5, id="f", seconds=3, session_ids=["other0000000000a"]) == (None, None)  # not ours
    assert ask(6, id="g", seconds=3, session_ids=["other0000000000a", SID]) == ("opened", "opened")
    recs = c.records()

    def answers(rs: list[events.Record]) -> list[tuple[Any, ...]]:
        return [
            (r.request_id, r.outcome, r.reason, r.engines, r.missing, r.requester)
            for r in rs
            if isinstance(r, events.CaptureRequest)
        ]

    assert (
        answers(recs)
        == answers(py_out)
        == [
            ("a", "opened", None, ["tracing"], ["pc_sampling"], "operator:k"),
            ("b", "extended", None, ["tracing"], [], "operator:k"),
            ("d", "refused", "engine_unavailable", [], ["sass"], "operator:k"),
            ("e", "refused", "budget_spent", [], [], "operator:k"),
            ("g", "opened", None, ["tracing"], [], "operator:k"),
        ]
    )
    assert all(r.session_id == SID for r in recs if isinstance(r, events.CaptureRequest))
    # GPUFL_REMOTE_CAPTURE=0: every request refused so, nothing opened
    monkeypatch.setenv("GPUFL_REMOTE_CAPTURE", "0")
    (tmp_path / "off").mkdir()
    off = CController(tmp_path / "off", "on-demand", t0, log_dir=str(tmp_path))
    ctl.write_text(json.dumps({"id": "i", "seconds": 1}))
    os.utime(ctl, ns=(t0 + 9 * S, t0 + 9 * S))
    assert native.cap_poll() == "refused"
    got = off.records()
    assert answers(got) == [("i", "refused", "remote_capture_disabled", [], [], None)]
    assert not [r for r in got if isinstance(r, events.CaptureWindow)]


CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from gpufl.client import _native as n
    d, mode, own_handler = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    if own_handler:
        signal.signal(signal.SIGUSR2, lambda s, f: print("program's handler", flush=True))
    w = n.Writer(d + "/dev.", ".log", "sid0000000000000", "device", 1 << 20, 600.0, 0.05, 1 << 20)
    w.start()
    assert n.cap_begin(w, mode, "sid0000000000000", d, 0.3)
    n.cap_start(True)
    os.kill(os.getpid(), signal.SIGUSR2)
    time.sleep(0.1)
    print("open after signal", n.cap_state()[0], flush=True)
    time.sleep(0.5)
    tmp = d + "/.ctl.tmp"
    with open(tmp, "w") as f:
        json.dump({"id": "q1", "seconds": 0.4, "requester": "me"}, f)
    os.rename(tmp, d + "/gpufl-control.json")
    deadline = time.time() + 5
    while n.cap_state()[1] < (2 if not own_handler else 1) and time.time() < deadline:
        time.sleep(0.05)
    n.cap_shutdown()
    w.close(None)
    print("handler back", signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL, flush=True)
    """
)


@pytest.mark.parametrize("own_handler", [False, True])
def test_the_thread_takes_sigusr2_and_the_control_file(tmp_path: Path, own_handler: bool) -> None:
    _native()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), "on-demand", "1" if own_handler else "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    recs = [events.decode(x) for p in sorted(tmp_path.glob("dev.*.log")) for x in p.read_bytes().splitlines()]
    wins = [r for r in recs if isinstance(r, events.CaptureWindow)]
    if own_handler:  # gpufl never replaces the program's handler: the signal is the program's
        assert "program's handler" in proc.stdout and "open after signal False" in proc.stdout
        assert [w.trigger.kind for w in wins] == ["control_file"]
    else:
        assert "open after signal True" in proc.stdout and "handler back True" in proc.stdout
        assert [(w.trigger.kind, w.ended) for w in wins] == [
            ("signal", "duration"),
            ("control_file", "duration"),
        ]
        sig = wins[0]
        assert 0.29 * S <= sig.end_ns - sig.start_ns < 0.29 * S + S  # closed by the thread about on time
    ctl = wins[-1]
    assert (ctl.requester, ctl.trigger.seconds, ctl.trigger.request_id) == ("me", 0.4, "q1")


def test_the_injection_library_reads_gpufl_capture(tmp_path: Path) -> None:
    """Loaded as CUDA loads it. Without a GPU its tracing does not start, so no window opens (there is nothing
    to window); a mode it cannot read is said in a notice (gpufl run checks modes: only a hand-set one)."""
    from gpufl.client.engines.native_tracing import injection_library
    from gpufl.client.run import native_env

    if injection_library() is None:
        if IN_CI:
            pytest.fail("gpufl.client._cuda_inject is not built")
        pytest.skip("gpufl.client._cuda_inject is not built here")
    log_dir = tmp_path / "logs"
    args = argparse.Namespace(app_name="app", log_dir=str(log_dir), system_interval=None, job_id=None,
                              capture="windows:1s/5s", always_on=False)  # fmt: skip
    session, env = native_env(args, ["./app"], dict(os.environ))
    assert (env["GPUFL_CAPTURE"], env["GPUFL_LOG_DIR"]) == ("windows:1s/5s", str(log_dir.resolve()))
    assert env["GPUFL_CAPTURE_SECONDS"] == "10.0"
    env["GPUFL_CAPTURE"] = "sometimes"
    session.start()
    child = subprocess.run(
        [sys.executable, "-c", "import ctypes, os; ctypes.CDLL(os.environ['CUDA_INJECTION64_PATH']).InitializeInjection()"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    session.shutdown()
    assert child.returncode == 0, child.stderr
    (seg,) = log_dir.glob(f"*.{session.session_id}.device.000000.log")
    device = [events.decode(x) for x in seg.read_bytes().splitlines()]
    notes = [r for r in device if isinstance(r, events.Notice)]
    assert [n.code for n in notes] == ["capture_mode_unknown"]
    assert "'sometimes': want continuous" in notes[0].message and notes[0].message.endswith(
        "traced continuously"
    )
    assert isinstance(device[-1], events.SessionEnd) and device[-1].records == len(device)

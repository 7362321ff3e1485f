"""Capture modes and triggers: *when* kernel tracing is on (issue #21).

Full tracing costs a launch-bound program +10…+20 % (CUPTI's own floor is most of it), too much to leave on
in production. A session's capture mode (``gpufl.init(capture=...)``, ``GPUFL_CAPTURE``, ``gpufl run
--capture``) says when it traces:

- ``continuous`` (the default): always, as before contract v5. Its controller only reads the control file:
  a request for tracing alone is answered ``continuous``; one for a deep engine (``sass``, ``pc_sampling``)
  opens a window of that engine alone (issue #22: "PC sampling for 10 s on a live job"), under the same rules.
- ``windows:ON/PERIOD`` (e.g. ``windows:2s/60s``; plain ``windows`` is that preset, ``gpufl run --always-on``):
  a window of ON seconds every PERIOD seconds, the first at start. System sampling runs throughout.
- ``on-demand``: nothing until a trigger asks.
- ``steps:FIRST-LAST``: steps FIRST to LAST (both included, counted from 0 by ``gpufl.step()``), then on demand.

Triggers open a window for a duration or a step count: ``gpufl.capture(seconds=..., steps=...)``,
``gpufl.scope("x", capture=True)`` (the scope's extent), SIGUSR2 (when the program has no handler of its own),
and the control file ``<log_dir>/gpufl-control.json`` (docs/capture-modes.md). One window at a time: a request
during a window extends it when it asks for a later end in the same unit, and is refused otherwise; the
window's record counts both. Every window becomes one ``capture_window`` record when it closes.

Outside a window the engines switch CUPTI's launch/NVTX callbacks and activity kinds off (``set_capture``),
so the launch path costs next to nothing. The switch happens on the thread that opens or closes the window
(a step's or scope's boundary is then exact); a background thread closes windows that run out of time, runs
the schedule, and polls the control file (at most once a second). Time comes from an injected clock, so the
schedule is tested without sleeping.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gpufl.contract import events

log = logging.getLogger("gpufl")

CONTROL_FILE = "gpufl-control.json"
WINDOWS_PRESET = "windows:2s/60s"
"""``gpufl run --always-on``: 2 s of every minute."""
CONTROL_POLL_S = 1.0
ENGINES = ("tracing", "sass", "pc_sampling")
"""Engines a window may switch on: tracing (the default), and the deep engines where the session runs them
(a deep range for the window's extent)."""
DEEP_ENGINES = frozenset({"sass", "pc_sampling"})
DEFAULT_ENGINES = ("tracing",)
REMOTE_BUDGET_S = 120.0
"""Seconds of windows that control-file requests may ask for per hour (GPUFL_REMOTE_CAPTURE_BUDGET)."""
HOUR_NS = 3600 * 10**9

Outcome = Literal["opened", "extended", "refused", "continuous"]


@dataclass(frozen=True)
class Plan:
    """A parsed capture mode."""

    mode: events.capture.CaptureMode
    on_ns: int = 0
    period_ns: int = 0
    first_step: int = 0
    last_step: int = -1
    text: str = "continuous"


_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|min|h)?\s*$")
_UNITS = {"ms": 1e-3, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 2s, 500ms, 1m)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse(text: str) -> Plan:
    """``continuous`` | ``windows[:ON/PERIOD]`` | ``on-demand`` | ``steps:FIRST-LAST``; ValueError says why not."""
    t = text.strip().lower()
    if t in ("", "continuous"):
        return Plan("continuous")
    if t in ("on-demand", "ondemand"):
        return Plan("on-demand", text="on-demand")
    if t == "windows":
        t = WINDOWS_PRESET
    if t.startswith("windows:"):
        on, _, period = t[len("windows:") :].partition("/")
        on_s, period_s = _seconds(on), _seconds(period) if period else 0.0
        if not 0 < on_s < period_s:
            raise ValueError(
                f"capture {text!r}: want windows:ON/PERIOD with 0 < ON < PERIOD, e.g. windows:2s/60s"
            )
        return Plan("windows", on_ns=int(on_s * 1e9), period_ns=int(period_s * 1e9), text=t)
    if t.startswith("steps:"):
        first, sep, last = t[len("steps:") :].partition("-")
        if not (sep and first.strip().isdigit() and last.strip().isdigit()) or int(last) < int(first):
            raise ValueError(f"capture {text!r}: want steps:FIRST-LAST, e.g. steps:100-110")
        return Plan("steps", first_step=int(first), last_step=int(last), text=t)
    raise ValueError(f"capture {text!r}: want continuous, windows[:ON/PERIOD], on-demand or steps:FIRST-LAST")


class Switchable(Protocol):
    """An engine whose recording a window switches on and off."""

    name: str

    def set_capture(self, on: bool) -> None: ...


@dataclass
class _Window:
    start_ns: int
    trigger: events.CaptureTrigger
    requester: str | None
    deadline_ns: int | None = None  # windows of a duration
    steps_left: int | None = None  # windows of a step count: step ends still to come
    scope_inst: int | None = None  # scope windows: closed by that scope's exit
    engines: tuple[str, ...] = DEFAULT_ENGINES  # what the window asked for
    switched: tuple[str, ...] = ()  # the session's engines it switched on (names as in capture_window)
    extended: int = 0
    refused: int = 0


class Capture:
    """One session's capture controller. ``emit`` writes a record on the device stream; ``clock`` gives
    CLOCK_REALTIME nanoseconds (``time.time_ns``; tests inject their own)."""

    def __init__(
        self,
        plan: Plan,
        engines: list[Switchable],
        emit: Callable[[events.Record], Any],
        session_id: str,
        *,
        default_seconds: float = 10.0,
        log_dir: str | None = None,
        remote: bool = True,
        remote_budget_s: float = REMOTE_BUDGET_S,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.plan = plan
        self.engines = engines
        self.emit = emit
        self.session_id = session_id
        self.default_seconds = default_seconds
        self.control_path = os.path.join(log_dir, CONTROL_FILE) if log_dir else None
        self.clock = clock
        self.remote = remote  # GPUFL_REMOTE_CAPTURE: act on control-file requests at all
        self.remote_budget_s = remote_budget_s  # GPUFL_REMOTE_CAPTURE_BUDGET: their seconds per hour
        self._remote_spent: list[tuple[int, float]] = []  # (when, seconds asked) of the last hour's
        self.window: _Window | None = None
        self.closed: list[events.CaptureWindow] = []  # every window written, for tests and the summary
        self.step = 0  # steps begun so far (gpufl.step())
        self._in_step = False  # a step is running: a step-count window counts it as its first
        self._lock = threading.RLock()
        # Switching engines happens under _switch_mu, not _lock: closing a deep window waits for CUPTI's
        # collection (a context synchronize, the samples' decoding), and the program's threads take _lock at
        # every gpufl.scope exit and gpufl.step(); they must not wait for that. A close is queued under _lock
        # and carried out by the thread that closed it once _lock is let go (or first by the next open).
        self._switch_mu = threading.Lock()
        self._closing: deque[tuple[_Window, list[Switchable], events.capture.WindowEnd]] = deque()
        self._next_scheduled = clock() if plan.mode == "windows" else None
        self._control_seen: set[str] = set()
        self._control_mtime = 0
        self._started_ns = clock()
        self._signal_pending = False
        self._thread: threading.Thread | None = None
        self._stop = False
        self._wake_r, self._wake_w = -1, -1
        self._previous_usr2: Any = None
        self._usr2_installed = False

    # ---------------------------------------------------------------- triggers

    def request(
        self,
        kind: events.capture.TriggerKind,
        *,
        seconds: float | None = None,
        steps: int | None = None,
        scope_inst: int | None = None,
        requester: str | None = None,
        engines: tuple[str, ...] | list[str] | None = None,
        **trigger: Any,
    ) -> Outcome:
        """Open a window (or extend / refuse, when one is open). Without ``seconds``, ``steps`` or a scope, the
        window lasts ``default_seconds`` (GPUFL_CAPTURE_SECONDS). ``engines``: what the window switches on
        (``tracing`` by default; ``sass``/``pc_sampling`` open a deep range where the session runs them)."""
        want = tuple(engines) if engines else DEFAULT_ENGINES
        unknown = set(want) - set(ENGINES)
        if unknown:
            raise ValueError(f"unknown capture engine(s): {', '.join(sorted(unknown))}")
        if self.plan.mode == "continuous":
            # tracing is on throughout: a window here is the deep engines' alone, and never switches tracing
            want = tuple(e for e in want if e in DEEP_ENGINES)
            if not want:
                return "continuous"
        if seconds is None and steps is None and scope_inst is None:
            seconds = self.default_seconds
        if (seconds is not None and seconds <= 0) or (steps is not None and steps <= 0):
            raise ValueError("a capture's seconds and steps must be positive")
        with self._lock:
            now = self.clock()
            deadline = now + int(seconds * 1e9) if seconds is not None else None
            w = self.window
            if w is not None:
                return self._extend_or_refuse(w, deadline, steps)
            trig = events.CaptureTrigger(
                mode=self.plan.mode,
                kind=kind,
                seconds=seconds,
                steps=steps,
                first_step=(self.step - 1 if self._in_step else self.step) if steps is not None else None,
                **trigger,
            )
            self._open(_Window(now, trig, requester, deadline, steps, scope_inst, want))
        self._wake()
        return "opened"

    def _extend_or_refuse(self, w: _Window, deadline: int | None, steps: int | None) -> Outcome:
        """One window at a time: a later end in the window's own unit extends it; anything else is refused."""
        if deadline is not None and w.deadline_ns is not None and deadline > w.deadline_ns:
            w.deadline_ns = deadline
            w.extended += 1
            return "extended"
        if steps is not None and w.steps_left is not None and steps > w.steps_left:
            w.steps_left = steps
            w.extended += 1
            return "extended"
        w.refused += 1
        return "refused"

    def stop(self) -> bool:
        """``gpufl.capture_stop()``: close the open window now (False: none was open)."""
        with self._lock:
            if self.window is None:
                return False
            self._close("stopped")
        self._finish_closes()
        return True

    def step_begin(self) -> None:
        """A ``gpufl.step()`` began: step ranges open at their first step."""
        with self._lock:
            index = self.step
            self.step += 1
            self._in_step = True
            p = self.plan
            if p.mode == "steps" and index == p.first_step and self.window is None:
                n = p.last_step - p.first_step + 1
                trig = events.CaptureTrigger(mode=p.mode, kind="steps", steps=n, first_step=index)
                self._open(_Window(self.clock(), trig, None, None, n))

    def step_end(self) -> None:
        """A ``gpufl.step()`` ended: windows of a step count close after their last step."""
        with self._lock:
            self._in_step = False
            w = self.window
            closed = w is not None and w.steps_left is not None and w.steps_left <= 1
            if w is not None and w.steps_left is not None:
                w.steps_left -= 1
                if closed:
                    self._close("steps")
        if closed:
            self._finish_closes()

    def scope_exit(self, inst: int) -> None:
        with self._lock:
            w = self.window
            closed = w is not None and w.scope_inst == inst
            if closed:
                self._close("scope_exit")
        if closed:
            self._finish_closes()

    # ---------------------------------------------------------------- time: schedule, deadlines, control file

    def tick(self) -> float:
        """Close a window that ran out, open a scheduled one, apply a pending signal; the seconds until the
        next thing due (the background thread sleeps that long, at most ``CONTROL_POLL_S``)."""
        if self._signal_pending:
            self._signal_pending = False
            self.request("signal", signal="SIGUSR2")
        with self._lock:
            now = self.clock()
            w = self.window
            closed = w is not None and w.deadline_ns is not None and now >= w.deadline_ns
            if closed:
                self._close("duration")
                w = None
            nxt = self._next_scheduled
            if nxt is not None and now >= nxt:
                p = self.plan
                while self._next_scheduled is not None and self._next_scheduled <= now:
                    self._next_scheduled += p.period_ns  # a missed period (a suspended host) is not made up
                if w is None:
                    trig = events.CaptureTrigger(mode=p.mode, kind="schedule", seconds=p.on_ns / 1e9)
                    self._open(_Window(now, trig, None, now + p.on_ns))
                else:  # a requested window is open: the scheduled one is not opened
                    w.refused += 1
            due = [t for t in (self._next_scheduled, self.window and self.window.deadline_ns) if t]
        if closed:
            self._finish_closes()
        return max(0.0, min(due) - now) / 1e9 if due else CONTROL_POLL_S

    def poll_control_file(self) -> Outcome | None:
        """Read ``<log_dir>/gpufl-control.json`` if it changed: a request not seen before (by ``id``), written
        after this session started, for this session (``session_id``, or ``session_ids`` naming it) or every
        session in the folder, is answered by a ``capture_request`` record and, unless refused, opens or
        extends a window."""
        path = self.control_path
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        if st.st_mtime_ns == self._control_mtime:
            return None
        self._control_mtime = st.st_mtime_ns
        if st.st_mtime_ns < self._started_ns:
            return None  # left from before this session: not meant for it
        try:
            with open(path, "rb") as f:
                req = json.loads(f.read(65536))
            if not isinstance(req, dict):
                raise ValueError("not a JSON object")
            rid = str(req["id"])
            target = req.get("session_id")
            targets = req.get("session_ids")
            seconds = float(req["seconds"]) if req.get("seconds") is not None else None
            steps = int(req["steps"]) if req.get("steps") is not None else None
            requester = str(req["requester"]) if req.get("requester") is not None else None
            engines = req.get("engines")
            for name, value in (("engines", engines), ("session_ids", targets)):
                if value is not None and (
                    not isinstance(value, list) or not all(isinstance(e, str) for e in value)
                ):
                    raise ValueError(f"{name}: want a list of strings")
            if (seconds is not None and seconds <= 0) or (steps is not None and steps <= 0):
                raise ValueError("a capture's seconds and steps must be positive")
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("gpufl: ignored %s: %s", path, e)
            return None
        if rid in self._control_seen or (target is not None and target != self.session_id):
            return None
        if targets is not None and self.session_id not in targets:
            return None
        self._control_seen.add(rid)
        return self._answer(rid, seconds, steps, requester, engines or list(DEFAULT_ENGINES), path)

    def available_engines(self, deep: bool = True, setup: bool = True) -> set[str]:
        """The window engines this session runs (the deep engine serves those it can run now: ``runnable``,
        which sets it up on the first ask; ``deep=False``: not asked, so a tracing request sets nothing up;
        ``setup=False``: those it would try, nothing set up — for a request refused anyway)."""
        out: set[str] = set()
        for e in self.engines:
            if e.name == "deep":
                if not deep:
                    continue
                ask = getattr(e, "runnable" if setup else "offered", None)
                out |= set(ask() if ask is not None else getattr(e, "engines", None) or DEEP_ENGINES)
            elif e.name in ENGINES:
                out.add(e.name)
        return out

    def _budget_left(self, now: int) -> float:
        """Remote capture's seconds left in the last hour (``_lock`` held)."""
        self._remote_spent = [(t, s) for t, s in self._remote_spent if now - t < HOUR_NS]
        return self.remote_budget_s - sum(s for _, s in self._remote_spent)

    def _answer(
        self, rid: str, seconds: float | None, steps: int | None, requester: str | None, want: list[str],
        path: str,
    ) -> Outcome:  # fmt: skip
        """Act on a control-file request and say what became of it (a ``capture_request`` record). A request
        refused anyway (remote capture off, the hour's budget spent) sets no deep engine up: CUPTI's deep
        APIs take the program's context and a large buffer, which a refusal must not cost."""
        cost = seconds if seconds is not None else (0.0 if steps is not None else self.default_seconds)
        with self._lock:
            spent = self._budget_left(self.clock()) < cost
        want_deep = bool(DEEP_ENGINES & set(want))
        available = self.available_engines(deep=want_deep, setup=self.remote and not spent)
        usable = [e for e in want if e in available]
        missing = [e for e in want if e not in available]

        def answer(outcome: Outcome, reason: events.capture.RefusalReason | None = None) -> Outcome:
            on = usable if outcome != "refused" else []  # continuous: what is on throughout (tracing)
            self.emit(
                events.CaptureRequest(
                    session_id=self.session_id, stream="device", ts_ns=self.clock(), request_id=rid,
                    outcome=outcome, reason=reason, engines=on, missing=missing, requester=requester,
                )
            )  # fmt: skip
            return outcome

        continuous = self.plan.mode == "continuous"
        if continuous and usable and not want_deep:
            return answer("continuous")  # tracing alone asked for: it is on throughout, nothing to do
        if not self.remote:
            return answer("refused", "remote_capture_disabled")
        if not usable or (continuous and not DEEP_ENGINES & set(usable)):
            # continuous: tracing is on anyway, but none of the deep engines asked for runs here
            return answer("refused", "engine_unavailable")
        with self._lock:
            now = self.clock()
            if self._budget_left(now) < cost:
                return answer("refused", "budget_spent")
            outcome = self.request(
                "control_file", seconds=seconds, steps=steps, requester=requester, engines=usable,
                control_file=path, request_id=rid,
            )  # fmt: skip
            if outcome == "refused":
                return answer("refused", "window_open")
            self._remote_spent.append((now, cost))
        return answer(outcome)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """The background thread, SIGUSR2 (when the program has no handler), and the mode's first window."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        if self.plan.mode != "continuous":  # SIGUSR2 asks for tracing, which a continuous session runs anyway
            self._install_usr2()
        self.tick()
        self._thread = threading.Thread(target=self._run, name="gpufl-capture", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Close the open window (``shutdown``), end the thread, give SIGUSR2 back."""
        with self._lock:
            if self.window is not None:
                self._close("shutdown")
            self._next_scheduled = None
        self._finish_closes()  # also waits for a close another thread is carrying out
        self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join(2)
        self._uninstall_usr2()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _run(self) -> None:
        next_poll = 0.0
        while not self._stop:
            try:
                wait = self.tick()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + CONTROL_POLL_S
                    self.poll_control_file()
                wait = min(wait, max(0.0, next_poll - time.monotonic()))
            except Exception as e:  # never raise into the program; try again in a second
                log.warning("gpufl: capture controller: %r", e)
                wait = CONTROL_POLL_S
            r, _, _ = select.select([self._wake_r], [], [], wait)
            if r:
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass

    def _wake(self) -> None:
        """Tell the thread a deadline changed (a pipe: safe from a signal handler, which must take no lock)."""
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:  # full: it is awake anyway
                pass

    def _install_usr2(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            if signal.getsignal(signal.SIGUSR2) not in (signal.SIG_DFL, None):
                log.info("gpufl: the program handles SIGUSR2: gpufl does not take it")
                return
            self._previous_usr2 = signal.signal(signal.SIGUSR2, self._on_usr2)
            self._usr2_installed = True
        except (ValueError, OSError):
            pass

    def _uninstall_usr2(self) -> None:
        if not self._usr2_installed:
            return
        try:
            if signal.getsignal(signal.SIGUSR2) == self._on_usr2:
                signal.signal(signal.SIGUSR2, self._previous_usr2 or signal.SIG_DFL)
        except (ValueError, OSError):
            pass
        self._usr2_installed = False

    def _on_usr2(self, signum: int, frame: Any) -> None:
        # Runs between bytecodes of the main thread, which may hold the controller's lock: only a flag and
        # the pipe here, the background thread opens the window.
        self._signal_pending = True
        self._wake()

    # ---------------------------------------------------------------- windows

    def _open(self, w: _Window) -> None:
        with self._switch_mu:
            self._finish_closes_locked()  # a close still queued switches off before this window switches on
            self.window = w
            # the session's engines that serve what the window asked for ("deep" serves sass and pc_sampling)
            on = [
                e
                for e in self.engines
                if e.name in w.engines or (e.name == "deep" and DEEP_ENGINES & set(w.engines))
            ]
            w.switched = tuple(e.name for e in on)
            self._switch(True, on)

    def _close(self, ended: events.capture.WindowEnd) -> None:
        """The open window ends (``_lock`` held): queued; ``_finish_closes`` switches its engines off."""
        w = self.window
        assert w is not None
        self.window = None
        self._closing.append((w, [e for e in self.engines if e.name in w.switched], ended))

    def _finish_closes(self) -> None:
        """Carry out the closes queued so far, by the thread that closed a window, ``_lock`` let go (see
        ``_switch_mu``). Taking ``_switch_mu`` also waits for one another thread took from the queue first: the
        close is done, its record written, when the caller goes on (``gpufl.capture_stop()``, shutdown)."""
        with self._switch_mu:
            self._finish_closes_locked()

    def _finish_closes_locked(self) -> None:
        while self._closing:
            w, engines, ended = self._closing.popleft()
            self._switch(False, engines)
            rec = events.CaptureWindow(
                session_id=self.session_id,
                stream="device",
                start_ns=w.start_ns,
                end_ns=max(w.start_ns, self.clock()),
                trigger=w.trigger,
                engines=[
                    n for n in w.engines if n in w.switched or (n in DEEP_ENGINES and "deep" in w.switched)
                ],
                requester=w.requester,
                ended=ended,
                extended=w.extended,
                refused=w.refused,
            )
            self.closed.append(rec)
            self.emit(rec)

    def _switch(self, on: bool, engines: list[Switchable]) -> None:
        for e in engines:
            try:
                e.set_capture(on)
            except Exception as err:  # a window that cannot switch must not reach the program
                log.warning("gpufl: %s could not switch tracing %s: %r", e.name, "on" if on else "off", err)

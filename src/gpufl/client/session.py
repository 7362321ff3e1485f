"""The session lifecycle: ``init`` → writers and engines → ``shutdown`` (explicit, at exit, on SIGTERM).

A session must never slow, hang or crash the user's program: every engine failure becomes one ``notice``
record and one log line, shutdown is bounded in time, and a forked child is silently off until it calls
``init`` itself (which gives it its own session id).
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from types import FrameType
from typing import Any

from gpufl._version import __version__
from gpufl.client import capture as capture_modes
from gpufl.client import signals
from gpufl.client.config import Options
from gpufl.client.engines import Engine, EngineUnavailable, create, planned
from gpufl.client.watchdog import Watchdog
from gpufl.client.writer import DiskBudget, RecordWriter, SegmentFiles, WriterConfig, writer_class
from gpufl.contract import events

log = logging.getLogger("gpufl")

_lock = threading.RLock()
_session: Session | None = None
_forked_child = False


def new_session_id() -> str:
    """16 characters, lower-case base32: 40 bits of milliseconds (sortable by start) + 40 random bits."""
    ms = time.time_ns() // 1_000_000
    raw = (ms & ((1 << 40) - 1)).to_bytes(5, "big") + secrets.token_bytes(5)
    return base64.b32encode(raw).decode().lower()


def merge_devices(
    a: list[events.DeviceProperties], b: list[events.DeviceProperties]
) -> list[events.DeviceProperties]:
    """Combine what two engines know of the GPUs (CUDA ordinals and NVML indices differ under
    CUDA_VISIBLE_DEVICES, so match by UUID first; the first list's device ids win)."""
    by_uuid = {d.uuid: d for d in b if d.uuid}
    by_id = {d.device_id: d for d in b}
    out = []
    for d in a:
        other = by_uuid.get(d.uuid) if d.uuid else by_id.get(d.device_id)
        if other is None:
            out.append(d)
            continue
        merged = {f: getattr(d, f) for f in d.__struct_fields__}
        for f in other.__struct_fields__:
            if merged.get(f) is None:
                merged[f] = getattr(other, f)
        out.append(events.DeviceProperties(**merged))
    return out


class Session:
    def __init__(self, opts: Options, *, device_stream: bool = True) -> None:
        """``device_stream=False``: another process writes the device stream (``gpufl run -- ./app``, where
        the CUDA injection library in the program writes it under this session's id)."""
        self.options = opts
        self.session_id = new_session_id()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.start_ns = time.time_ns()
        self.files = SegmentFiles(opts.log_dir, self.host, opts.app_name, self.session_id)
        self.budget = DiskBudget(opts.session_max_bytes)
        self.engines: list[Engine] = []
        self.notices: list[events.Notice] = []
        self.closed = False
        self.disabled = False  # by the watchdog: a gpufl thread got stuck
        self.watchdog = Watchdog(opts.watchdog_s, self._stalled)
        self._device_stream = device_stream
        self.capture: capture_modes.Capture | None = None  # the capture controller (any mode), once started
        # The scope and system streams are written by Python; the device stream's writer is chosen in start(),
        # once the engines are prepared (the native record path writes it in C).
        self.writers: dict[str, RecordWriter] = {}
        for s in events.STREAMS:
            if s != "device":
                self._add_writer(s, native=False)

    def _add_writer(self, stream: str, native: bool) -> None:
        opts = self.options
        config = WriterConfig(
            self.files,
            stream,
            queue_size=opts.queue_size,
            segment_max_bytes=opts.segment_max_bytes,
            segment_max_age_s=opts.segment_max_age_s,
            flush_interval_s=opts.flush_interval_s,
            budget=self.budget,
        )
        w = writer_class(native)(config)
        w.watch(self.watchdog)
        self.writers[stream] = w

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        facts: dict[str, Any] = {}
        prepared: list[Engine] = []
        for name in planned(self.options.engines):
            try:
                engine = create(name, self.options)
                for k, v in engine.prepare(self).items():
                    if k == "devices" and "devices" in facts:
                        facts[k] = merge_devices(facts[k], v)
                    elif v is not None:
                        facts[k] = v
                prepared.append(engine)
            except EngineUnavailable as e:
                self.notice(e.code, f"{name} engine unavailable: {e}", engine=name)
            except Exception as e:  # a bug in an engine must not reach the user's program
                self.notice(
                    "engine_error", f"{name} engine failed to start: {e!r}", engine=name, level="error"
                )
        if self._device_stream:  # chosen once: the C writer when a prepared engine records into it in C
            self._add_writer("device", native=any(e.device_writer == "native" for e in prepared))
            ordered = {s: self.writers[s] for s in events.STREAMS if s in self.writers}  # streams' order
            self.writers.clear()
            self.writers.update(ordered)
        for w in self.writers.values():
            w.start()
        for stream, w in self.writers.items():
            w.emit(self._session_start(stream, facts))
        for n in self.notices:  # notices raised while preparing go after seq 0
            if "device" in self.writers:
                self.writers["device"].emit(n)
        for engine in prepared:
            try:
                engine.start()
                self.engines.append(engine)
            except EngineUnavailable as e:
                self.notice(e.code, f"{engine.name} engine unavailable: {e}", engine=engine.name)
            except Exception as e:
                self.notice(
                    "engine_error",
                    f"{engine.name} engine failed to start: {e!r}",
                    engine=engine.name,
                    level="error",
                )
        self._start_capture()
        self.watchdog.start()

    def _start_capture(self) -> None:
        plan = capture_modes.parse(self.options.capture)
        if "device" not in self.writers:  # gpufl run: the program's injection library runs the windows
            return
        switchable = [e for e in self.engines if hasattr(e, "set_capture")]
        device = self.writers["device"]
        self.capture = capture_modes.Capture(
            plan,
            switchable,  # type: ignore[arg-type]  # the tracing and deep engines (set_capture)
            device.emit,
            self.session_id,
            default_seconds=self.options.capture_seconds,
            log_dir=self.options.log_dir,
            remote=self.options.remote_capture,
            remote_budget_s=self.options.remote_capture_budget_s,
        )
        self.capture.start()

    def _stalled(self, name: str, seconds: float) -> None:
        """The watchdog's thread: a gpufl thread is stuck. Disable gpufl without waiting on anything it
        may hold: writers stop accepting, engines stop sampling; the program goes on."""
        self.disabled = True
        message = (
            f"gpufl's {name} thread has not come back for {seconds:.1f} s (limit {self.watchdog.stall_s:g} s, "
            "GPUFL_WATCHDOG_S): gpufl disables itself for this session; the program goes on"
        )
        if name != "device writer":  # the stuck native writer holds the lock its emit needs
            self.notice("watchdog", message, level="error")
        else:
            log.warning("gpufl: %s", message)
        for w in self.writers.values():
            w.disable()
        for engine in self.engines:
            disable = getattr(engine, "disable", None)
            if disable is not None:
                try:
                    disable()
                except Exception:
                    pass

    def _session_start(self, stream: str, facts: dict[str, Any]) -> events.SessionStart:
        return events.SessionStart(
            session_id=self.session_id,
            stream=stream,  # type: ignore[arg-type]
            seq=0,
            app=self.options.app_name,
            host=self.host,
            pid=self.pid,
            argv=list(sys.argv),
            start_ns=self.start_ns,
            gpufl_version=__version__,
            schema_version=events.SCHEMA_VERSION,
            job_id=self.options.job_id,
            options=self.options.as_record(),
            **facts,
        )

    def notice(self, code: str, message: str, *, engine: str | None = None, level: str = "warning") -> None:
        """Say something once: a log line for the user, a ``notice`` record for the dashboard."""
        log.warning("gpufl: %s", message)
        rec = events.Notice(
            session_id=self.session_id,
            stream="device",
            ts_ns=time.time_ns(),
            level=level,  # type: ignore[arg-type]
            code=code,
            message=message,
            engine=engine,
        )
        self.notices.append(rec)
        if "device" in self.writers and self.writers["device"].running:
            self.writers["device"].emit(rec)

    def scope_enter(self, inst: int) -> None:
        for e in self.engines:
            e.scope_enter(inst)

    def scope_exit(self, inst: int) -> None:
        for e in self.engines:
            e.scope_exit(inst)
        if self.capture is not None:
            self.capture.scope_exit(inst)

    def deep_begin(self, inst: int) -> None:
        """A ``gpufl.scope(..., deep=True)`` opens: the deep engines' range (the outermost deep scope's)."""
        for e in self.engines:
            if hasattr(e, "range_begin"):
                try:
                    e.range_begin(inst)
                except Exception as err:  # a deep engine's bug must not reach the user's program
                    self.notice(
                        "engine_error", f"deep range failed to open: {err!r}", engine=e.name, level="error"
                    )

    def deep_end(self, inst: int) -> None:
        for e in self.engines:
            if hasattr(e, "range_end"):
                try:
                    e.range_end(inst)
                except Exception as err:
                    self.notice(
                        "engine_error", f"deep range failed to close: {err!r}", engine=e.name, level="error"
                    )

    def step_begin(self) -> None:
        if self.capture is not None:
            self.capture.step_begin()

    def step_end(self) -> None:
        if self.capture is not None:
            self.capture.step_end()

    def shutdown(self, reason: str = "shutdown") -> None:
        if self.closed:
            return
        self.closed = True
        self.watchdog.stop()
        if self.disabled:  # a gpufl thread is stuck: end the other streams, never wait on the stuck one
            stuck = self.watchdog.fired[0] if self.watchdog.fired else ""
            for stream, w in self.writers.items():
                if f"{stream} writer" != stuck:
                    w.close(self._end(stream, reason, None), timeout=1.0)
            return
        if self.capture is not None:  # the open window's record, before the engines stop
            try:
                self.capture.shutdown()
            except Exception as e:
                log.warning("gpufl: capture controller failed to stop cleanly: %r", e)
        end_facts: dict[str, Any] = {}
        for engine in reversed(self.engines):
            try:
                end_facts.update(engine.stop() or {})
            except Exception as e:
                log.warning("gpufl: %s engine failed to stop cleanly: %r", engine.name, e)
        end_ns = time.time_ns()
        lost = 0
        for stream, w in self.writers.items():
            w.close(self._end(stream, reason, end_facts.get("clock"), end_ns))
            lost += w.lost
        if self.budget.write_error is not None:
            log.warning(
                "gpufl: %d records of session %s were not written to %s (%s)",
                lost,
                self.session_id,
                self.options.log_dir,
                self.budget.write_error,
            )

    def _end(
        self, stream: str, reason: str, clock: events.ClockSync | None, end_ns: int | None = None
    ) -> events.SessionEnd:
        return events.SessionEnd(
            session_id=self.session_id,
            stream=stream,  # type: ignore[arg-type]
            end_ns=end_ns or time.time_ns(),
            reason=reason,  # type: ignore[arg-type]
            records=0,  # filled by the writer: it alone knows the count
            clock=clock,
        )

    def emit(self, stream: str, record: events.Record) -> bool:
        return self.writers[stream].emit(record)


# ---------------------------------------------------------------------- module-level API


def active_session() -> Session | None:
    return _session


def init(app_name: str | None = None, log_dir: str | None = None, **options: Any) -> Session | None:
    """Start profiling this process (idempotent: a second call returns the running session).

    Every option may also come from a ``GPUFL_*`` environment variable (see ``gpufl.client.config.Options``).
    Returns None when disabled (``GPUFL_ENABLED=0``).
    """
    global _session, _forked_child
    with _lock:
        if _session is not None and not _session.closed:
            return _session
        opts = Options.resolve(app_name=app_name, log_dir=log_dir, **options)
        if not opts.enabled:
            return None
        problem = _log_dir_problem(opts.log_dir)
        if problem:  # never raise into the program: say why once and leave it alone
            log.warning("gpufl: not profiling: the log folder %s is not writable (%s)", opts.log_dir, problem)
            return None
        _forked_child = False
        session = Session(opts)
        session.start()
        _session = session
        _install_exit_hooks()
        return session


def capture(
    seconds: float | None = None,
    steps: int | None = None,
    *,
    engines: tuple[str, ...] | list[str] | None = None,
    requester: str | None = None,
) -> str:
    """Trace for ``seconds`` from now, or for the next ``steps`` ``gpufl.step()`` steps (the step running now
    counts as the first) (docs/capture-modes.md). ``engines``: what the window switches on — ``tracing`` (the
    default), and ``sass`` / ``pc_sampling`` (a deep range for the window, where the session runs that engine:
    ``gpufl.init(engines=...)``). In a ``continuous`` session tracing is on throughout: only a deep engine
    opens a window there (of that engine alone).
    Returns ``opened``, ``extended`` (a window was open: it now ends later), ``refused`` (a window was open and
    ends no earlier, or in another unit), ``continuous`` (the session traces throughout and no deep engine was
    asked for) or ``off`` (no session, or it does not trace kernels)."""
    unknown = set(engines or ()) - set(capture_modes.ENGINES)
    if unknown:
        raise ValueError(f"unknown capture engine(s): {', '.join(sorted(unknown))}")
    session = _session
    if session is None or session.closed:
        return "off"
    if session.capture is None:
        return "continuous" if capture_modes.parse(session.options.capture).mode == "continuous" else "off"
    return session.capture.request("api", seconds=seconds, steps=steps, requester=requester, engines=engines)


def capture_stop() -> bool:
    """Close the open capture window now (False: none was open)."""
    session = _session
    return session is not None and session.capture is not None and session.capture.stop()


def _log_dir_problem(log_dir: str) -> str | None:
    """Why segments cannot be created in ``log_dir`` (None: they can). Probes with a real file, since
    permissions alone do not tell (root, read-only mounts, ACLs)."""
    try:
        os.makedirs(log_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".gpufl-probe-", dir=log_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"
    return None


def shutdown(reason: str = "shutdown") -> None:
    """Flush everything, write ``session_end`` on every stream, stop engines. Idempotent."""
    global _session
    with _lock:
        session = _session
        if session is None or _forked_child:
            return
        session.shutdown(reason)


_hooks_installed = False
_previous_sigterm: Any = None
_previous_sigint: Any = None


def _install_exit_hooks() -> None:
    global _hooks_installed, _previous_sigterm, _previous_sigint
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(shutdown, "atexit")
    os.register_at_fork(after_in_child=_after_fork_in_child)
    if threading.current_thread() is threading.main_thread():
        try:
            _previous_sigterm = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _on_sigterm)
            # Ctrl-C keeps the program's own handler (Python's KeyboardInterrupt by default); gpufl only
            # moves it out of its CUPTI callback when it lands there (gpufl.client.signals says why).
            prev_int = signal.getsignal(signal.SIGINT)
            if prev_int is not None:  # None: set from C, which gpufl cannot chain to
                _previous_sigint = prev_int
                signal.signal(signal.SIGINT, _on_sigint)
        except (ValueError, OSError):  # embedded interpreters may forbid it
            _previous_sigterm = None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if signals.inside_callback(frame):  # inside a CUPTI callback: no CUPTI flush or finalize may run here
        signals.defer(_on_sigterm, signum)
        return
    shutdown("signal")
    prev = _previous_sigterm
    if callable(prev):
        prev(signum, frame)
        return
    if prev == signal.SIG_IGN:
        return
    # Default action: die by the signal, so the exit status still says SIGTERM.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if signals.inside_callback(frame):
        signals.defer(_on_sigint, signum)
        return
    prev = _previous_sigint
    if callable(prev):
        prev(signum, frame)  # Python's default raises KeyboardInterrupt here, in the program's code
    elif prev == signal.SIG_DFL:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


def _after_fork_in_child() -> None:
    """A forked child (e.g. a DataLoader worker) is off: its parent's writer threads do not exist here."""
    global _session, _forked_child, _lock
    _forked_child = True
    _session = None
    _lock = threading.RLock()  # another thread of the parent may have held it at the fork
    # Give the child back the program's own signal handling. gpufl's handlers run in Python, and a Python
    # handler loses a race with a blocking wait: a pool worker idle in sem_wait when Pool.terminate() sends
    # SIGTERM can take the signal after its last check and before the wait, and waits forever (CI, 1 run in
    # ~10 under load), where the default action would have ended it at once.
    for signum, previous, ours in (
        (signal.SIGTERM, _previous_sigterm, _on_sigterm),
        (signal.SIGINT, _previous_sigint, _on_sigint),
    ):
        try:
            if signal.getsignal(signum) is ours:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        except (ValueError, OSError):  # not the main thread of the child (a fork from a C thread)
            pass

"""The ``capture_window`` record (contract v5): when kernel tracing was on in a session whose capture mode
is not ``continuous``, and why. Outside every window of such a session nothing was traced, which readers
must say ("not recorded") rather than read as an idle GPU. Its own module so that ``events`` stays small;
``events`` re-exports it and lists it in the contract's unions and tables."""

from __future__ import annotations

from typing import Literal

import msgspec

from gpufl.contract.limits import Count, Measure, Ns, Record

CaptureMode = Literal["continuous", "windows", "on-demand", "steps"]
TriggerKind = Literal["schedule", "api", "scope", "steps", "signal", "control_file"]
WindowEnd = Literal["duration", "steps", "scope_exit", "shutdown", "stopped"]


class CaptureTrigger(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What opened a window: the session's mode, the trigger's kind, and what it asked for."""

    mode: CaptureMode
    """The session's capture mode (``gpufl.init(capture=...)``, GPUFL_CAPTURE)."""
    kind: TriggerKind
    """``schedule``: the ``windows`` mode's period; ``api``: ``gpufl.capture()``; ``scope``:
    ``gpufl.scope(..., capture=True)``; ``steps``: a step range; ``signal``: SIGUSR2; ``control_file``:
    ``<log_dir>/gpufl-control.json``."""
    seconds: Measure | None = None
    """The duration asked for (windows of a duration)."""
    steps: Count | None = None
    """The number of ``gpufl.step()`` steps asked for (windows of a step count)."""
    first_step: Count | None = None
    """The first step of the window (step ranges and step-count windows): steps count from 0."""
    scope: str | None = None
    """The scope path of a ``scope`` trigger."""
    signal: str | None = None
    """The signal's name of a ``signal`` trigger (``SIGUSR2``)."""
    control_file: str | None = None
    """The control file's path of a ``control_file`` trigger."""
    request_id: str | None = None
    """The control file's ``id`` (whoever wrote it names the request so)."""


class CaptureWindow(Record, tag="capture_window", kw_only=True):
    """Kernel tracing was on from ``start_ns`` to ``end_ns`` (a session not in ``continuous`` mode; in a
    ``continuous`` one, ``trigger.mode`` ``continuous``, the window of a deep engine asked for on the way, tracing
    being on throughout). Records of the window's kernels complete after it closes may still arrive; records
    outside every window of a session not in ``continuous`` mode were not recorded."""

    start_ns: Ns
    end_ns: Ns
    trigger: CaptureTrigger
    engines: list[str] = []
    """The engines the window switched on (``tracing``, ``sass``, ``pc_sampling``; never ``tracing`` in a
    ``continuous`` session, where it is on throughout)."""
    requester: str | None = None
    """Who asked: the control file's ``requester``, ``gpufl.capture(requester=...)``; null for the schedule."""
    ended: WindowEnd
    """Why it ended: its ``duration`` or ``steps`` ran out, its ``scope_exit``, ``gpufl.capture_stop()``
    (``stopped``), or the session's ``shutdown``."""
    extended: Count = 0
    """Requests that came during the window and extended it (their end beyond the window's)."""
    refused: Count = 0
    """Requests that came during the window and were refused (one window at a time; theirs ended no later)."""


RequestOutcome = Literal["opened", "extended", "refused", "continuous"]
RefusalReason = Literal["window_open", "engine_unavailable", "budget_spent", "remote_capture_disabled"]


class CaptureRequest(Record, tag="capture_request", kw_only=True):
    """The session's answer to a control-file request (contract v7, issue #22): whoever wrote the file (the
    agent, for a remote capture) learns what became of it through the normal ingest path. Written once per
    request ``id`` the session acted on; the window it opened or extended is the ``capture_window`` whose
    ``trigger.request_id`` is the same."""

    ts_ns: Ns
    request_id: str
    """The control file's ``id``."""
    outcome: RequestOutcome
    """``opened`` a window, ``extended`` the open one, ``refused`` (``reason`` says why), or ``continuous``:
    the session traces throughout and the request asked for tracing alone, so it needs no window (its kernels
    are recorded anyway; a deep engine asked of such a session opens a window of its own)."""
    reason: RefusalReason | None = None
    """Why it was refused: one window at a time and the open one cannot be extended so (``window_open``); none of
    the engines asked for runs in this session (``engine_unavailable``); the session's budget of remote
    capture per hour is spent (``budget_spent``); remote capture is off in this process
    (``GPUFL_REMOTE_CAPTURE=0``, ``remote_capture_disabled``)."""
    engines: list[str] = []
    """The engines the window switches on (opened, extended); in a ``continuous`` session tracing among them when
    asked for, on throughout (``continuous``: only it)."""
    missing: list[str] = []
    """Engines asked for that this session does not run (the window opens without them)."""
    requester: str | None = None

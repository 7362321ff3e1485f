"""capture_window records (contract v5) in both stores: written by a real client session (on-demand mode, its
windows opened by gpufl.capture, a step count and a capture scope on this machine's clock), stored in their
table, served by GET /sessions/{id}/capture-windows, and read back whole for exports."""

from __future__ import annotations

from pathlib import Path

import pytest

import gpufl
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from .conftest import Api
from .helpers import feed


@pytest.fixture(scope="module")
def client_log(tmp_path_factory: pytest.TempPathFactory) -> list[ev.Record]:
    """Every record of a real on-demand session with three windows (no GPU needed: the system engine runs,
    the windows are recorded whether or not a tracing engine switched)."""
    log_dir = tmp_path_factory.mktemp("ondemand")
    session = gpufl.init(app_name="ondemand", log_dir=str(log_dir), engines="system", capture="on-demand")
    assert session is not None and session.capture is not None
    try:
        assert gpufl.capture(seconds=60, requester="test") == "opened"
        assert gpufl.capture(seconds=1) == "refused"  # ends earlier than the open window
        assert gpufl.capture_stop()
        for _ in range(2):
            with gpufl.step():
                pass
        assert gpufl.capture(steps=2) == "opened"
        for _ in range(2):
            with gpufl.step():
                pass
        with gpufl.scope("eval", capture=True):
            pass
    finally:
        gpufl.shutdown()
    return [ev.decode(line) for p in sorted(log_dir.glob("*.log")) for line in p.read_bytes().splitlines()]


def test_windows_are_stored_and_served(store: SqlStore, api: Api, client_log: list[ev.Record]) -> None:
    written = [r for r in client_log if isinstance(r, ev.CaptureWindow)]
    assert [(w.trigger.kind, w.ended) for w in written] == [
        ("api", "stopped"),
        ("api", "steps"),
        ("scope", "scope_exit"),
    ]
    feed(store, client_log)
    sid = written[0].session_id
    body = api.get(f"/sessions/{sid}/capture-windows").json()
    assert body["mode"] == "on-demand"
    assert body["windows"] == [ev.to_builtins(w) for w in written]
    first, steps, scope = body["windows"]
    assert first["requester"] == "test" and first["refused"] == 1 and first["trigger"]["seconds"] == 60
    assert steps["trigger"]["steps"] == 2 and steps["trigger"]["first_step"] == 2
    assert scope["trigger"]["scope"] == "eval"
    # an export reads them back whole, in the device stream's order
    again = [r for r in store.session_records(sid, "device") if isinstance(r, ev.CaptureWindow)]
    assert again == written
    assert api.get("/sessions/nosuchsession/capture-windows").status_code == 404


def test_a_continuous_session_says_so(store: SqlStore, api: Api, tmp_path: Path) -> None:
    """Every session before v5, and a v5 session in the default mode: traced throughout, no windows."""
    session = gpufl.init(app_name="cont", log_dir=str(tmp_path), engines="system")
    assert session is not None and session.capture is not None  # it reads the control file (issue #22)
    assert gpufl.capture(seconds=1) == "continuous"
    assert session.capture.window is None and session.capture._usr2_installed is False
    gpufl.shutdown()
    recs = [ev.decode(line) for p in sorted(tmp_path.glob("*.log")) for line in p.read_bytes().splitlines()]
    start = recs[0]
    assert isinstance(start, ev.SessionStart) and "capture" not in start.options
    feed(store, recs)
    body = api.get(f"/sessions/{start.session_id}/capture-windows").json()
    assert body == {"session_id": start.session_id, "mode": "continuous", "windows": []}

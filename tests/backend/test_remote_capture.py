"""Remote capture requests (issue #22) in both stores: an operator's request, what an agent's ingest key
sees of it, the agents' delivery reports, and each session's status read from what real client sessions
wrote (their capture_request answers and capture_window records)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import gpufl
from gpufl.backend import auth
from gpufl.backend.store import open_store
from gpufl.client import capture
from gpufl.contract import events as ev

from .conftest import Api
from .helpers import feed


class TracingStandIn:
    """The tracing engine's side of a window (no GPU here): it is switched, and records nothing."""

    name = "tracing"

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def set_capture(self, on: bool) -> None:
        self.seen.append(on)


def _session(log_dir: Path, rid: str, **opts: Any) -> list[ev.Record]:
    """A real on-demand session that finds the request's control file (as the agent writes it) and acts on
    it; its records, as written."""
    log_dir.mkdir()
    session = gpufl.init(
        app_name="remote", log_dir=str(log_dir), engines="system", capture="on-demand", **opts
    )
    assert session is not None and session.capture is not None
    try:
        eng = TracingStandIn()
        session.capture.engines.append(eng)
        path = log_dir / capture.CONTROL_FILE
        path.write_text(
            json.dumps({"id": rid, "seconds": 1, "requester": "operator", "engines": ["tracing"]})
        )
        t = session.capture._started_ns + 1
        os.utime(path, ns=(t, t))
        outcome = session.capture.poll_control_file()
        session.capture.stop()
        assert eng.seen == ([True, False] if outcome == "opened" else [])
    finally:
        gpufl.shutdown()
    return [ev.decode(line) for p in sorted(log_dir.glob("*.log")) for line in p.read_bytes().splitlines()]


def test_a_request_from_operator_to_agent_to_sessions_and_back(api: Api, tmp_path: Path) -> None:
    r = api.client.post(
        "/api/v1/captures", json={"app": "remote", "host": "node-*", "seconds": 1}, headers=api.h("operator")
    )
    assert r.status_code == 200, r.text
    req = r.json()
    rid = req["id"]
    assert (req["status"], req["sessions"], req["engines"]) == ("requested", [], ["tracing"])
    assert req["requester"].startswith("operator:")
    assert [c["id"] for c in api.get("/captures").json()["items"]] == [rid]
    # the agents' view: only requests whose host glob matches the host an agent names, only what it needs
    agent = api.h("ingest")
    seen = api.client.get("/api/v1/agent/captures", params={"host": "node-3"}, headers=agent).json()["items"]
    assert [(c["id"], c["app"], c["seconds"]) for c in seen] == [(rid, "remote", 1.0)]
    assert "host_glob" not in seen[0]
    elsewhere = api.client.get("/api/v1/agent/captures", params={"host": "gpu-9"}, headers=agent).json()
    assert elsewhere["items"] == []
    after = api.client.get(
        "/api/v1/agent/captures", params={"host": "node-3", "since_ns": seen[0]["created_ns"]}, headers=agent
    )
    assert after.json()["items"] == []
    assert api.client.get("/api/v1/captures", headers=agent).status_code == 403  # an agent lists nothing
    refused = api.client.post(
        f"/api/v1/agent/captures/{rid}/deliveries", json={"host": "gpu-9", "sessions": []}, headers=agent
    )
    assert refused.status_code == 403  # not addressed to that host

    # two real sessions on node-3: one traces, one has remote capture off
    done = _session(tmp_path / "a", rid)
    off = _session(tmp_path / "b", rid, remote_capture=False)
    sid_done, sid_off = done[0].session_id, off[0].session_id
    delivered = api.client.post(
        f"/api/v1/agent/captures/{rid}/deliveries",
        json={
            "host": "node-3",
            "sessions": [
                {"session_id": sid_done},
                {"session_id": sid_off},
                {"session_id": "unwritable00000a", "error": "PermissionError: [Errno 13]"},
            ],
        },
        headers=agent,
    )
    assert delivered.json() == {"recorded": 3}

    def states() -> dict[str, tuple[str, str | None]]:
        body = api.get(f"/captures/{rid}").json()
        return {s["session_id"]: (s["status"], s["reason"]) for s in body["sessions"]}

    assert states() == {
        sid_done: ("delivered", "session_not_stored"),
        sid_off: ("delivered", "session_not_stored"),
        "unwritable00000a": ("failed", "not delivered: PermissionError: [Errno 13]"),
    }
    # the answer arrives before the window's record (which is written when the window closes)
    upto = next(i for i, x in enumerate(done) if isinstance(x, ev.CaptureRequest))
    feed(api.store, done[: upto + 1])
    assert states()[sid_done] == ("running", None)
    feed(api.store, done[upto + 1 :])
    feed(api.store, off)
    body = api.get(f"/captures/{rid}").json()
    by = {s["session_id"]: s for s in body["sessions"]}
    assert (by[sid_done]["status"], by[sid_done]["window"]["trigger"]["request_id"]) == ("done", rid)
    assert by[sid_done]["answer"]["outcome"] == "opened"
    assert (by[sid_off]["status"], by[sid_off]["reason"]) == ("failed", "remote_capture_disabled")
    assert body["status"] == "done"  # every session done or failed, some done
    if os.environ.get("GPUFL_UI_FIXTURES") and api.store.engine == "duckdb":  # the Captures page's test data
        out = Path(__file__).parents[2] / "frontend/src/lib/fixtures/remote_capture.json"
        note = "GET /api/v1/captures/{id} of tests/backend/test_remote_capture.py (GPUFL_UI_FIXTURES=1 rewrites it)"
        out.write_text(json.dumps({"_comment": note, "capture": body}, indent=1) + "\n")
    assert api.get("/captures/cap-0000000000000000").status_code == 404


def test_requests_are_checked_and_expire(api: Api) -> None:
    op = api.h("operator")
    for bad in ({"app": ""}, {"app": "x", "engines": ["nsight"]}, {"app": "x", "seconds": 0}, {"host": "*"}):
        assert api.client.post("/api/v1/captures", json=bad, headers=op).status_code == 422, bad
    r = api.client.post("/api/v1/captures", json={"app": "x", "expires_s": 0.001}, headers=op).json()
    time.sleep(0.01)
    assert api.get(f"/captures/{r['id']}").json()["status"] == "expired"
    agent = api.client.get("/api/v1/agent/captures", params={"host": "any"}, headers=api.h("ingest"))
    assert agent.json()["items"] == []  # expired requests are not handed on


def _continuous(log_dir: Path, rid: str, engines: list[str], deep: bool) -> list[ev.Record]:
    """A real continuous session (the default mode) acting on the request's control file; ``deep``: it runs
    a deep engine (a stand-in that is switched: no GPU here)."""
    log_dir.mkdir()
    session = gpufl.init(app_name="remote", log_dir=str(log_dir), engines="system")
    assert session is not None and session.capture is not None
    try:
        session.capture.engines.append(TracingStandIn())
        if deep:
            stand_in = TracingStandIn()
            stand_in.name = "deep"
            session.capture.engines.append(stand_in)
        path = log_dir / capture.CONTROL_FILE
        path.write_text(json.dumps({"id": rid, "seconds": 1, "engines": engines}))
        t = session.capture._started_ns + 1
        os.utime(path, ns=(t, t))
        session.capture.poll_control_file()
        session.capture.stop()
    finally:
        gpufl.shutdown()
    return [ev.decode(line) for p in sorted(log_dir.glob("*.log")) for line in p.read_bytes().splitlines()]


def test_continuous_sessions_are_done_for_tracing_and_answer_for_deep_engines(
    api: Api, tmp_path: Path
) -> None:
    """A continuous session traces throughout: a request for tracing alone is ``done`` (``continuous``) from
    its session_start on; one asking for PC sampling waits for its answer — a window of the deep engine
    (running, then done by the window) or a refusal when it runs none (``missing`` names it, not tracing)."""
    op, agent = api.h("operator"), api.h("ingest")
    ids = {}
    for name, engines in (("tracing", ["tracing"]), ("deep", ["tracing", "pc_sampling"])):
        r = api.client.post("/api/v1/captures", json={"app": "remote", "engines": engines}, headers=op)
        ids[name] = r.json()["id"]
    trace = _continuous(tmp_path / "t", ids["tracing"], ["tracing"], deep=False)
    with_deep = _continuous(tmp_path / "d", ids["deep"], ["tracing", "pc_sampling"], deep=True)
    without = _continuous(tmp_path / "n", ids["deep"], ["tracing", "pc_sampling"], deep=False)
    sid_t, sid_d, sid_n = (s[0].session_id for s in (trace, with_deep, without))
    for rid, sids in ((ids["tracing"], [sid_t]), (ids["deep"], [sid_d, sid_n])):
        api.client.post(
            f"/api/v1/agent/captures/{rid}/deliveries",
            json={"host": "h", "sessions": [{"session_id": s} for s in sids]},
            headers=agent,
        )

    def by(rid: str) -> dict[str, dict[str, Any]]:
        return {s["session_id"]: s for s in api.get(f"/captures/{rid}").json()["sessions"]}

    starts = [[r for r in recs if isinstance(r, ev.SessionStart)] for recs in (trace, with_deep, without)]
    for s in starts:
        feed(api.store, s)  # their session_start alone: each one's mode is known, nothing else
    assert (by(ids["tracing"])[sid_t]["status"], by(ids["tracing"])[sid_t]["reason"]) == (
        "done",
        "continuous",
    )
    assert {s["status"] for s in by(ids["deep"]).values()} == {"delivered"}  # a deep engine asked: wait
    upto = next(i for i, x in enumerate(with_deep) if isinstance(x, ev.CaptureRequest))
    feed(api.store, [r for r in with_deep[: upto + 1] if not isinstance(r, ev.SessionStart)])
    assert by(ids["deep"])[sid_d]["status"] == "running"
    for recs in (trace, with_deep[upto + 1 :], without):
        feed(api.store, [r for r in recs if not isinstance(r, ev.SessionStart)])
    t, d = by(ids["tracing"])[sid_t], by(ids["deep"])
    assert (t["status"], t["reason"], t["answer"]["outcome"], t["answer"]["engines"]) == (
        "done", "continuous", "continuous", ["tracing"],
    )  # fmt: skip
    assert (d[sid_d]["status"], d[sid_d]["answer"]["engines"], d[sid_d]["window"]["engines"]) == (
        "done", ["tracing", "pc_sampling"], ["pc_sampling"],
    )  # fmt: skip
    assert d[sid_d]["window"]["trigger"]["mode"] == "continuous"
    assert (d[sid_n]["status"], d[sid_n]["reason"], d[sid_n]["answer"]["missing"]) == (
        "failed", "engine_unavailable", ["pc_sampling"],
    )  # fmt: skip
    assert api.get(f"/captures/{ids['deep']}").json()["status"] == "done"


def test_a_store_before_migration_10_gets_host_bound_keys_and_its_keys_stay_unbound(store_url: str) -> None:
    """Migration 10 adds ``api_keys.host_glob`` to a store made before it (both engines): the keys it holds
    are unbound (they name any host, as before), and new keys can be bound."""
    store = open_store(store_url)
    try:
        old_id, _ = auth.create_key(store, auth.Role.ingest, "old agent")
        # as a store of the code before migration 10 was: no column, the version not applied
        with store._write() as cur:
            store._exec(cur, "ALTER TABLE api_keys DROP COLUMN host_glob")
            store._exec(cur, "DELETE FROM schema_migrations WHERE version = 10")
    finally:
        store.close()
    store = open_store(store_url)
    try:
        assert store.schema_version() == 11
        assert store.key_host_glob(old_id) is None and auth.host_allowed(store, old_id, "anything") is None
        new_id, _ = auth.create_key(store, auth.Role.ingest, "rack 3", "node-3*")
        assert {k["id"]: k["host_glob"] for k in store.list_keys()} == {old_id: None, new_id: "node-3*"}
        assert auth.host_allowed(store, new_id, "node-31") is None
        assert "may not name host 'node-4'" in (auth.host_allowed(store, new_id, "node-4") or "")
    finally:
        store.close()

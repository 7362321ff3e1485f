"""Remote capture requests (issue #22): what an operator asked for, which sessions the agents handed it to,
and each session's status, derived from what the sessions themselves reported.

A request names an app, a host glob and optionally a job; agents poll for the open requests that match
their host (``open_captures``) and report each session they wrote the control file for (``add_deliveries``).
A session's status is read, never stored: ``delivered`` by the agent's report (over HTTP, or over Kafka
through the bridge; a session whose report is lost appears when it answers), ``running`` or ``failed`` by
the session's ``capture_request`` answer (contract v7), ``done`` by its ``capture_window`` record with that
``request_id``, or ``done`` at once for a session that traces continuously when the request asks for tracing
alone (one asking for a deep engine waits for the session's answer and window like any other). Requests and
deliveries are not session data: deleting a session leaves them (the status then says the session is gone)."""

from __future__ import annotations

import fnmatch
import json
import time
from typing import Any

from gpufl.backend.store.engine import NotFound, SqlEngine

REQUEST_COLUMNS = (
    "id", "app", "host_glob", "job_id", "engines", "seconds", "requester", "created_ns", "expires_ns",
)  # fmt: skip

UNANSWERED_GRACE_NS = 30 * 10**9
"""How long after a request expired (plus its seconds) a delivered session that has said nothing is reported
``failed`` (no answer): its records may be late, not lost, until then."""


def host_matches(glob: str, host: str) -> bool:
    return fnmatch.fnmatchcase(host, glob)


class CaptureStore(SqlEngine):
    def add_capture(self, req: dict[str, Any]) -> None:
        row = {**req, "engines": json.dumps(list(req["engines"]))}
        with self._write() as cur:
            self._exec(
                cur,
                f"INSERT INTO capture_requests ({', '.join(REQUEST_COLUMNS)}) VALUES ({', '.join('?' * len(REQUEST_COLUMNS))})",
                [row[c] for c in REQUEST_COLUMNS],
            )

    def _requests(self, where: str = "", params: list[Any] | None = None) -> list[dict[str, Any]]:
        rows = self._all(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM capture_requests {where} ORDER BY created_ns DESC, id",
            params or [],
        )
        out = []
        for r in rows:
            d = dict(zip(REQUEST_COLUMNS, r, strict=True))
            d["engines"] = json.loads(d["engines"])
            out.append(d)
        return out

    def open_captures(self, host: str, since_ns: int, now_ns: int | None = None) -> list[dict[str, Any]]:
        """Requests not expired, made after ``since_ns``, whose host glob matches ``host``: what an agent there
        is to hand on. Oldest first."""
        now = time.time_ns() if now_ns is None else now_ns
        found = self._requests("WHERE expires_ns > ? AND created_ns > ?", [now, since_ns])
        return sorted((r for r in found if host_matches(r["host_glob"], host)), key=lambda r: r["created_ns"])

    def get_capture_request(self, rid: str) -> dict[str, Any]:
        found = self._requests("WHERE id = ?", [rid])
        if not found:
            raise NotFound(rid)
        return found[0]

    def add_deliveries(self, rid: str, host: str, sessions: list[tuple[str, str | None]]) -> int:
        """The agent on ``host`` wrote the control file for these (session id, error or None); a repeated
        report of the same session is kept once (the first)."""
        now = time.time_ns()
        with self._write() as cur:
            for sid, error in sessions:
                self._exec(
                    cur,
                    "INSERT INTO capture_deliveries VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [rid, sid, host, now, error],
                )
        return len(sessions)

    def list_captures(self, limit: int = 100) -> list[dict[str, Any]]:
        return [self._with_status(r) for r in self._requests()[:limit]]

    def capture(self, rid: str) -> dict[str, Any]:
        """A request with each delivered session's status. NotFound."""
        return self._with_status(self.get_capture_request(rid))

    def _with_status(self, req: dict[str, Any]) -> dict[str, Any]:
        now = time.time_ns()
        rid = req["id"]
        rows = self._all(
            """SELECT d.session_id, d.host, d.delivered_ns, d.error, s.app, s.job_id, s.header, s.start_ns
               FROM capture_deliveries d LEFT JOIN sessions s ON s.session_id = d.session_id
               WHERE d.request_id = ? ORDER BY d.host, d.session_id""",
            [rid],
        )
        # Sessions that answered without a delivery report (not yet stored, or lost): their records
        # name the request (bodies are compact JSON: msgspec's encoding).
        named = f'%"request_id":"{rid}"%'
        known = {r[0] for r in rows}
        rows += [
            r
            for r in self._all(
                """SELECT a.session_id, s.host, NULL, NULL, s.app, s.job_id, s.header, s.start_ns
                   FROM (SELECT session_id FROM other_events WHERE type = 'capture_request' AND body LIKE ?
                         UNION SELECT session_id FROM capture_windows WHERE body LIKE ?) a
                   LEFT JOIN sessions s ON s.session_id = a.session_id ORDER BY 2, 1""",
                [named, named],
            )
            if r[0] not in known
        ]
        late = now > req["expires_ns"] + int(req["seconds"] * 1e9) + UNANSWERED_GRACE_NS
        deep = bool({"sass", "pc_sampling"} & set(req["engines"]))
        sessions = [self._session_status(rid, r, late, deep) for r in rows]
        expired = now >= req["expires_ns"]
        if not sessions:
            status = "expired" if expired else "requested"
        else:
            states = {s["status"] for s in sessions}
            status = next(
                (s for s in ("delivered", "running", "failed", "done") if s in states), "done"
            )  # the least advanced first: "done" only when every session is
            if status == "failed" and "done" in states:
                status = "done"  # some sessions delivered; each one's own status says which failed
        return {**req, "status": status, "expired": expired, "sessions": sessions}

    def _session_status(self, rid: str, row: tuple[Any, ...], late: bool, deep: bool) -> dict[str, Any]:
        """``deep``: the request asks for a deep engine, which a continuous session opens a window for."""
        sid, host, delivered_ns, error, app, job_id, header, start_ns = row
        out: dict[str, Any] = {
            "session_id": sid, "host": host, "app": app, "job_id": job_id, "delivered_ns": delivered_ns,
            "start_ns": start_ns,
            "answer": None, "window": None, "reason": None,
        }  # fmt: skip
        if error is not None:
            return {**out, "status": "failed", "reason": f"not delivered: {error}"}
        window = next(
            (
                w
                for (b,) in self._all(
                    "SELECT body FROM capture_windows WHERE session_id = ? ORDER BY seq", [sid]
                )
                if ((w := json.loads(b)).get("trigger") or {}).get("request_id") == rid
            ),
            None,
        )
        answer = next(
            (
                a
                for (b,) in self._all(
                    "SELECT body FROM other_events WHERE session_id = ? AND type = 'capture_request' ORDER BY seq",
                    [sid],
                )
                if (a := json.loads(b)).get("request_id") == rid
            ),
            None,
        )
        out["answer"], out["window"] = answer, window
        mode = None
        if header:
            mode = str((json.loads(header).get("options") or {}).get("capture", "continuous")).split(":", 1)[
                0
            ]
        if window is not None:
            return {**out, "status": "done"}
        if answer is not None:
            if answer["outcome"] == "refused":
                return {**out, "status": "failed", "reason": answer.get("reason")}
            if answer["outcome"] == "continuous":
                return {**out, "status": "done", "reason": "continuous"}
            return {**out, "status": "running"}
        if mode == "continuous" and not deep:  # tracing alone: on throughout (older clients answer nothing)
            return {**out, "status": "done", "reason": "continuous"}
        if (
            app is None
            and header is None
            and not self._all("SELECT 1 FROM session_streams WHERE session_id = ? LIMIT 1", [sid])
        ):
            out["reason"] = "session_not_stored"
        if late:
            return {**out, "status": "failed", "reason": out["reason"] or "no_answer"}
        return {**out, "status": "delivered"}

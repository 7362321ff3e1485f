"""Session queries (list, hosts, detail) and a session's deletion (by an admin or by retention)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

import gpufl.backend.store.rows as rows
from gpufl.backend.store.engine import NotFound, PageCursor, Row, SqlEngine
from gpufl.backend.store.schema import SESSION_TABLES
from gpufl.contract import events as ev


class SessionStore(SqlEngine):
    # ---- sessions ------------------------------------------------------------------------------------

    _SESSION_SELECT = """
        WITH a AS (SELECT session_id, min(first_ns) AS first_ns, max(last_ns) AS last_ns,
                          sum(received) AS records, count(DISTINCT stream) AS nstreams
                   FROM session_streams GROUP BY session_id),
             e AS (SELECT session_id, count(*) AS nended, max(end_ns) AS end_ns
                   FROM stream_ends GROUP BY session_id),
             c AS (SELECT session_id,
                          sum(CASE WHEN type = 'kernel' THEN n ELSE 0 END) AS kernels,
                          sum(CASE WHEN type = 'memcpy' THEN n ELSE 0 END) AS memcpys
                   FROM type_counts GROUP BY session_id),
             x AS (SELECT a.session_id, s.host, s.app, s.pid, s.job_id, s.start_ns, e.end_ns, a.last_ns,
                          s.header, c.kernels, c.memcpys, a.records, a.nstreams, e.nended,
                          COALESCE(s.start_ns, a.first_ns) AS sort_ns
                   FROM a LEFT JOIN sessions s ON s.session_id = a.session_id
                          LEFT JOIN e ON e.session_id = a.session_id
                          LEFT JOIN c ON c.session_id = a.session_id)
        SELECT session_id, host, app, pid, job_id, start_ns, end_ns, last_ns, header, kernels, memcpys,
               records, nstreams, nended, sort_ns FROM x"""

    @staticmethod
    def _session_item(row: Row) -> rows.Session:
        (
            sid,
            host,
            app,
            pid,
            job,
            start,
            end,
            last,
            header,
            kernels,
            memcpys,
            records,
            nstreams,
            nended,
            _,
        ) = row
        gpus: list[str] = []
        if header:
            gpus = [
                d.get("name") or f"GPU {d.get('device_id')}" for d in json.loads(header).get("devices", [])
            ]
        return rows.Session(
            session_id=sid,
            host=host,
            app=app,
            pid=pid,
            job_id=job,
            start_ns=start,
            end_ns=end,
            last_ns=int(last or 0),
            gpus=gpus,
            kernels=int(kernels or 0),
            memcpys=int(memcpys or 0),
            records=int(records or 0),
            ended=(nended or 0) >= nstreams,
        )

    def list_sessions(
        self,
        host: str | None = None,
        app: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 50,
        cursor: PageCursor | None = None,
    ) -> tuple[list[rows.Session], PageCursor | None]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if host is not None:
            where.append("host = ?")
            params.append(host)
        if app is not None:
            where.append("app = ?")
            params.append(app)
        if since is not None:
            where.append("sort_ns >= ?")
            params.append(since)
        if until is not None:
            where.append("sort_ns < ?")
            params.append(until)
        if cursor is not None:
            where.append("(sort_ns < ? OR (sort_ns = ? AND session_id < ?))")
            params += [cursor.key, cursor.key, str(cursor.tie)]
        sql = f"{self._SESSION_SELECT} WHERE {' AND '.join(where)} ORDER BY sort_ns DESC, session_id DESC LIMIT ?"
        rows = self._all(sql, [*params, limit + 1])
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = PageCursor(int(rows[-1][14]), rows[-1][0])
        return [self._session_item(r) for r in rows], nxt

    def hosts(self) -> list[dict[str, Any]]:
        rows = self._all(
            """SELECT COALESCE(s.host, '(unknown)'), COALESCE(s.app, '(unknown)'), count(*), max(s.start_ns)
               FROM (SELECT DISTINCT session_id FROM session_streams) a
               LEFT JOIN sessions s ON s.session_id = a.session_id
               GROUP BY 1, 2 ORDER BY 1, 2"""
        )
        hosts: dict[str, dict[str, Any]] = {}
        for host, app, n, last in rows:
            h = hosts.setdefault(host, {"host": host, "sessions": 0, "apps": []})
            h["sessions"] += int(n)
            h["apps"].append({"app": app, "sessions": int(n), "last_start_ns": last})
        return list(hosts.values())

    def session_exists(self, sid: str) -> bool:
        return self._one("SELECT 1 FROM session_streams WHERE session_id = ? LIMIT 1", [sid]) is not None

    def present_sessions(self, sids: list[str]) -> set[str]:
        """Which of ``sids`` the store holds (any stream)."""
        found: set[str] = set()
        for i in range(0, len(sids), 500):
            part = sids[i : i + 500]
            marks = ", ".join("?" * len(part))
            rows = self._all(
                f"SELECT DISTINCT session_id FROM session_streams WHERE session_id IN ({marks})", part
            )
            found.update(r[0] for r in rows)
        return found

    def session_detail(self, sid: str) -> dict[str, Any]:
        streams = self._all(
            """SELECT t.stream, t.received, t.first_ns, t.last_ns, e.reason, e.records, e.dropped
               FROM (SELECT session_id, stream, sum(received) AS received, min(first_ns) AS first_ns,
                            max(last_ns) AS last_ns
                     FROM session_streams WHERE session_id = ? GROUP BY session_id, stream) t
               LEFT JOIN stream_ends e
                 ON e.session_id = t.session_id AND e.stream = t.stream
               ORDER BY t.stream""",
            [sid],
        )
        if not streams:
            raise NotFound(sid)
        hdr_row = self._one("SELECT header FROM sessions WHERE session_id = ?", [sid])
        header = json.loads(hdr_row[0]) if hdr_row else None
        counts: dict[str, int] = dict(
            self._all("SELECT type, sum(n) FROM type_counts WHERE session_id = ? GROUP BY type", [sid])
        )
        gpu = self._one("SELECT sum(total_ns) FROM kernel_stats WHERE session_id = ?", [sid])
        others = self._all(
            "SELECT type, body FROM other_events WHERE session_id = ? ORDER BY ts_ns, stream, seq", [sid]
        )
        dropped_by_stream: dict[str, int] = defaultdict(int)
        notices = []
        for typ, body in others:
            b = json.loads(body)
            if typ == "dropped":
                dropped_by_stream[b["stream"]] += int(b["count"])
            elif typ in ("notice", "capture_gap"):
                notices.append(b)
        out_streams = []
        for stream, received, first, last, reason, written, ended_dropped in streams:
            ended = reason is not None
            dropped = int(ended_dropped) if ended else dropped_by_stream.get(stream, 0)
            out_streams.append(
                {
                    "stream": stream,
                    "received": int(received),
                    "first_ns": first,
                    "last_ns": last,
                    "ended": ended,
                    "end_reason": reason,
                    "written": written,
                    "missing": (int(written) - int(received)) if ended else None,
                    "dropped": dropped,
                }
            )
        return {
            "session_id": sid,
            "header": header,
            "devices": header.get("devices", []) if header else [],
            "streams": out_streams,
            "totals": {
                "kernels": int(counts.get("kernel", 0)),
                "memcpys": int(counts.get("memcpy", 0)),
                "memsets": int(counts.get("memset", 0)),
                "scope_instances": int(counts.get("scope_begin", 0)),
                "profile_samples": int(counts.get("profile_sample", 0)),
                "system_samples": int(counts.get("system_sample", 0)),
                "gpu_time_ns": int(gpu[0] or 0) if gpu else 0,
            },
            "dropped": sum(s["dropped"] for s in out_streams),
            "cut_short": not all(s["ended"] for s in out_streams),
            "notices": notices,
        }

    def capture_windows(self, sid: str) -> dict[str, Any]:
        """The session's capture mode (from its session_start's options; "continuous" before contract v5,
        when every session traced throughout) and its capture_window records, oldest first. NotFound."""
        hdr = self._one("SELECT header FROM sessions WHERE session_id = ?", [sid])
        if hdr is None and not self.session_exists(sid):
            raise NotFound(sid)
        header = json.loads(hdr[0]) if hdr and hdr[0] else None
        mode = None
        if header is not None:
            mode = (header.get("options") or {}).get("capture", "continuous")
            mode = str(mode).split(":", 1)[0]  # "windows:2s/60s" -> "windows"
        bodies = self._all(
            "SELECT body FROM capture_windows WHERE session_id = ? ORDER BY start_ns, seq", [sid]
        )
        return {"session_id": sid, "mode": mode, "windows": [json.loads(b) for (b,) in bodies]}

    def delete_session(self, sid: str) -> bool:
        with self._write() as cur:
            found = self._exec(
                cur, "SELECT 1 FROM session_streams WHERE session_id = ? LIMIT 1", [sid]
            ).fetchall()
            for t in SESSION_TABLES:
                self._exec(cur, f"DELETE FROM {t} WHERE session_id = ?", [sid])
        return bool(found)

    def prune_session(self, sid: str, reason: str, quiet_since_ns: int | None = None) -> bool:
        """Delete a session for retention and leave its tombstone, so that its late records are refused
        (``ingest``) rather than stored as a fragment. Spares it (returns False) if it received records at
        or after ``quiet_since_ns``, checked under every stream's ingest lock: a batch commits either before
        (and spares it) or after (and is refused). False too when it is gone already (another backend)."""
        with self._write() as cur:
            self._lock_streams(cur, [(sid, s) for s in sorted(ev.STREAMS)])
            row = self._exec(
                cur, "SELECT max(updated_ns) FROM session_streams WHERE session_id = ?", [sid]
            ).fetchall()
            last = row[0][0] if row else None
            if last is None or (quiet_since_ns is not None and int(last) >= quiet_since_ns):
                return False
            for t in SESSION_TABLES:
                self._exec(cur, f"DELETE FROM {t} WHERE session_id = ?", [sid])
            self._exec(
                cur,
                "INSERT INTO pruned_sessions VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [sid, time.time_ns(), reason],
            )
        self._since_compact.pop(sid, None)
        return True

    def is_pruned(self, sid: str) -> bool:
        """Whether retention deleted the session (and no re-delivery has re-created it since)."""
        return self._one("SELECT 1 FROM pruned_sessions WHERE session_id = ?", [sid]) is not None

    def sessions_received_since(self, since_ns: int) -> set[str]:
        """Sessions that stored records at or after ``since_ns`` (the backends' clock, not the records')."""
        rows = self._all("SELECT DISTINCT session_id FROM session_streams WHERE updated_ns >= ?", [since_ns])
        return {r[0] for r in rows}

    def session_usage(self) -> list[tuple[str, int, int]]:
        """(session_id, last activity ns, stored bytes) for every session, oldest activity first."""
        rows = self._all(
            """SELECT session_id, max(COALESCE(last_ns, updated_ns)), max(updated_ns), sum(bytes)
               FROM session_streams GROUP BY session_id ORDER BY 2, 1"""
        )
        return [(r[0], int(max(r[1] or 0, 0)), int(r[3] or 0)) for r in rows]

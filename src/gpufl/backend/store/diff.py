"""One stored session as a diff ``Profile`` (``gpufl.diff.profile``): the same sums its log-record builder
makes, computed by the engine (a few grouped scans and one window over the session's activity)."""

from __future__ import annotations

from gpufl.backend.store.engine import NotFound, SqlEngine
from gpufl.diff.profile import STEP_SCOPE, Profile, Stat, copy_key, memset_key

_DUR = "(end_ns - start_ns)"
_SQ = f"CAST({_DUR} AS DOUBLE PRECISION) * {_DUR}"


class DiffQueries(SqlEngine):
    def diff_profile(self, sid: str, step_scope: str = STEP_SCOPE) -> Profile:
        meta = self._one("SELECT app, host, start_ns FROM sessions WHERE session_id = ?", [sid])
        if meta is None and not self._one(
            "SELECT 1 FROM session_streams WHERE session_id = ? LIMIT 1", [sid]
        ):
            raise NotFound(f"session {sid}")
        p = Profile(session_id=sid, step_scope=step_scope)
        if meta is not None:
            p.app, p.host, p.start_ns = meta[0], meta[1], meta[2]
        t = p.totals
        names = {
            int(i): v
            for i, v in self._all(
                "SELECT id, value FROM dicts WHERE session_id = ? AND stream = 'device' AND kind = 'launch'",
                [sid],
            )
        }
        for launch_id, n, total, sq in self._all(
            f"SELECT launch_id, count(*), sum({_DUR}), sum({_SQ}) FROM kernels WHERE session_id = ? "
            "GROUP BY launch_id",
            [sid],
        ):
            name = names.get(int(launch_id)) or f"launch#{launch_id}"
            self._merge(p.rows["kernel"].setdefault(name, Stat()), n, total, sq, 0)
            t.kernels += int(n)
            t.kernel_ns += int(total)
        for kind, nbytes, n, total, sq in self._all(
            f"SELECT copy_kind, bytes, count(*), sum({_DUR}), sum({_SQ}) FROM memcpys WHERE session_id = ? "
            "GROUP BY copy_kind, bytes",
            [sid],
        ):
            key = copy_key(str(kind), int(nbytes))
            self._merge(p.rows["copy"].setdefault(key, Stat()), n, total, sq, int(nbytes) * int(n))
            t.copies += int(n)
            t.copy_ns += int(total)
            t.copy_bytes += int(nbytes) * int(n)
        for nbytes, n, total, sq in self._all(
            f"SELECT bytes, count(*), sum({_DUR}), sum({_SQ}) FROM memsets WHERE session_id = ? GROUP BY bytes",
            [sid],
        ):
            key = memset_key(int(nbytes))
            self._merge(p.rows["memset"].setdefault(key, Stat()), n, total, sq, int(nbytes) * int(n))
            t.memsets += int(n)
            t.memset_ns += int(total)
        self._scopes(p, sid, step_scope)
        self._busy(p, sid)
        return p

    @staticmethod
    def _merge(st: Stat, n: object, total: object, sq: object, nbytes: int) -> None:
        st.n += int(n)  # type: ignore[call-overload]
        st.total_ns += int(total)  # type: ignore[call-overload]
        st.sumsq += float(sq)  # type: ignore[arg-type]
        st.bytes += nbytes

    def _scopes(self, p: Profile, sid: str, step_scope: str) -> None:
        dur = "(e.ts_ns - b.ts_ns)"
        for path_id, path, top, n, total, sq in self._all(
            f"""SELECT b.path_id, d.value, b.depth = 0, count(*), sum({dur}),
                       sum(CAST({dur} AS DOUBLE PRECISION) * {dur})
                FROM scope_begins b
                JOIN scope_ends e ON e.session_id = b.session_id AND e.inst = b.inst
                LEFT JOIN dicts d ON d.session_id = b.session_id AND d.stream = 'scope' AND d.kind = 'scope'
                     AND d.id = b.path_id
                WHERE b.session_id = ? GROUP BY b.path_id, d.value, b.depth = 0""",
            [sid],
        ):
            key = path if path is not None else f"#{path_id}"
            self._merge(p.rows["scope"].setdefault(key, Stat()), n, total, sq, 0)
            if top and key == step_scope:
                p.steps += int(n)
                p.totals.step_ns += int(total)

    def _busy(self, p: Profile, sid: str) -> None:
        """Busy time per device: the union of its kernel, copy and memset intervals (overlap once), from a
        running maximum of end times in start order; idle = the device's span less its busy time."""
        acts = " UNION ALL ".join(
            f"SELECT device_id, start_ns, end_ns FROM {t} WHERE session_id = ?"
            for t in ("kernels", "memcpys", "memsets")
        )
        for _dev, busy, first, last in self._all(
            f"""SELECT device_id,
                       sum(CASE WHEN reach IS NULL OR start_ns >= reach THEN end_ns - start_ns
                                WHEN end_ns > reach THEN end_ns - reach ELSE 0 END),
                       min(start_ns), max(end_ns)
                FROM (SELECT device_id, start_ns, end_ns,
                             max(end_ns) OVER (PARTITION BY device_id ORDER BY start_ns, end_ns
                                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
                      FROM ({acts}) a) w
                GROUP BY device_id""",
            [sid, sid, sid],
        ):
            p.totals.gpu_busy_ns += int(busy)
            p.totals.span_ns += int(last) - int(first)
            p.totals.idle_ns += int(last) - int(first) - int(busy)

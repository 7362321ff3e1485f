"""API keys: stored hashed, revoked rather than deleted; an ingest key may be bound to a host glob (the hosts
it may name on the agent routes, issue #22)."""

from __future__ import annotations

import time
from typing import Any

from gpufl.backend.store.engine import SqlEngine


class KeyStore(SqlEngine):
    # ---- API keys ------------------------------------------------------------------------------------

    def add_key(self, key_id: str, name: str, role: str, key_hash: str, host_glob: str | None = None) -> None:
        with self._write() as cur:
            self._exec(
                cur,
                "INSERT INTO api_keys (id, name, role, hash, created_ns, host_glob) VALUES (?, ?, ?, ?, ?, ?)",
                [key_id, name, role, key_hash, time.time_ns(), host_glob],
            )

    def put_key(self, key_id: str, name: str, role: str, key_hash: str) -> None:
        """Insert or replace (the bootstrap key from GPUFL_ADMIN_TOKEN follows the environment)."""
        with self._write() as cur:
            self._lock_streams(cur, [("__keys__", key_id)])  # backends starting together
            self._exec(cur, "DELETE FROM api_keys WHERE id = ?", [key_id])
            self._exec(
                cur,
                "INSERT INTO api_keys (id, name, role, hash, created_ns) VALUES (?, ?, ?, ?, ?)",
                [key_id, name, role, key_hash, time.time_ns()],
            )

    def get_key(self, key_id: str) -> tuple[str, str, int | None] | None:
        """(role, hash, revoked_ns) of a key."""
        row = self._one("SELECT role, hash, revoked_ns FROM api_keys WHERE id = ?", [key_id])
        return (row[0], row[1], row[2]) if row else None

    def key_host_glob(self, key_id: str) -> str | None:
        """The hosts a key may name on the agent routes (a shell glob); None: any host (unbound)."""
        row = self._one("SELECT host_glob FROM api_keys WHERE id = ?", [key_id])
        return row[0] if row else None

    def list_keys(self) -> list[dict[str, Any]]:
        cols = ("id", "name", "role", "created_ns", "revoked_ns", "host_glob")
        rows = self._all(f"SELECT {', '.join(cols)} FROM api_keys ORDER BY created_ns, id")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        with self._write() as cur:
            found = self._exec(
                cur, "SELECT 1 FROM api_keys WHERE id = ? AND revoked_ns IS NULL", [key_id]
            ).fetchall()
            self._exec(
                cur,
                "UPDATE api_keys SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL",
                [time.time_ns(), key_id],
            )
        return bool(found)

    def has_active_admin(self) -> bool:
        return (
            self._one("SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_ns IS NULL LIMIT 1")
            is not None
        )

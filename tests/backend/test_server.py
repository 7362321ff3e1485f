"""The backend as a real server (its command line, uvicorn, loopback sockets): what only shows there."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .server import Server


@pytest.fixture
def pg_server(tmp_path: Path, pg_schema: str) -> Iterator[Server]:
    s = Server(tmp_path, ["--database", pg_schema, "--log-level", "info"]).start()
    yield s
    s.stop()


@pytest.mark.postgres
def test_a_500_keeps_the_connection_and_logs_one_traceback(pg_server: Server, pg_schema: str) -> None:
    # A real internal failure: the store lost a table under the running backend (a botched manual change).
    # Starlette's error middleware answered the 500 and re-raised, so uvicorn logged a second traceback
    # and closed the keep-alive connection, which the client only learns when its next request fails.
    conn = http.client.HTTPConnection("127.0.0.1", pg_server.port, timeout=30)
    hdr = pg_server.auth

    def get(path: str) -> tuple[int, dict, dict[str, str]]:
        conn.request("GET", path, headers=hdr)
        r = conn.getresponse()
        return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.getheaders()}

    assert get("/api/v1/hosts")[0] == 200
    local = conn.sock.getsockname()
    with psycopg.connect(pg_schema, autocommit=True) as db:
        db.execute("ALTER TABLE sessions RENAME TO sessions_gone")
        before = len(pg_server.log())
        status, body, headers = get("/api/v1/hosts")
        assert status == 500 and body == {"error": "internal error"}
        assert headers.get("connection", "").lower() != "close"
        db.execute("ALTER TABLE sessions_gone RENAME TO sessions")
    # The same connection (same local port) serves the next requests.
    assert get("/healthz")[0] == 200
    assert get("/api/v1/hosts")[0] == 200
    assert conn.sock.getsockname() == local
    conn.close()
    logged = pg_server.log()[before:]
    assert logged.count("Traceback") == 1, logged
    assert "unhandled error" in logged and "GET /api/v1/hosts" in logged

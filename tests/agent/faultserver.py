"""A real HTTP server on loopback that speaks the ingest protocol (docs/ingest-protocol.md) and can be
told to answer with faults the real backend cannot be made to produce on demand: 413 for batches over a
record limit, scripted 429/503 (with Retry-After) sequences, 401. Between faults it validates records
with the event contract and de-duplicates on (session_id, stream, seq) like the backend, so tests can
check what was delivered. Used only for fault injection; delivery tests run against the real backend.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec

from gpufl.contract import events as ev


class FaultServer:
    def __init__(self, token: str = "t0ken", max_records: int | None = None) -> None:
        self.token = token
        self.max_records = max_records
        self.script: list[tuple[int, float | None]] = []
        """Responses to give to the next requests, in order: (status, Retry-After or None)."""
        self.stored: set[tuple[str, str, int]] = set()
        self.deliveries: Counter[tuple[str, str, int]] = Counter()
        self.requests: list[tuple[float, int, int]] = []
        """(time, status, records in body) of every request."""
        self.reject_seqs: set[int] = set()
        """Records with these seqs are rejected (as the backend rejects contract violations)."""
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, payload, headers = server.handle(self.path, self.headers, body)
                data = msgspec.json.encode(payload)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1/events/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def handle(
        self, path: str, headers: object, body: bytes
    ) -> tuple[int, dict[str, object], dict[str, str]]:
        get = headers.get  # type: ignore[attr-defined]
        if get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        lines = [x for x in body.split(b"\n") if x]
        with self.lock:

            def answer(status: int, payload: dict[str, object], hdrs: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
                self.requests.append((time.monotonic(), status, len(lines)))
                return status, payload, hdrs or {}

            if get("Authorization") != f"Bearer {self.token}":
                return answer(401, {"error": "unknown token"})
            if self.script:
                status, retry_after = self.script.pop(0)
                return answer(
                    status,
                    {"error": "scripted"},
                    {} if retry_after is None else {"Retry-After": str(retry_after)},
                )
            if self.max_records is not None and len(lines) > self.max_records:
                return answer(
                    413, {"error": "too many records", "max_records": self.max_records, "max_bytes": 1 << 25}
                )
            stream = path.rsplit("/", 1)[-1]
            stored = dups = 0
            rejected = []
            for i, line in enumerate(lines):
                try:
                    rec = ev.decode(line)
                    if rec.stream != stream:
                        raise ev.ContractError(f"stream {rec.stream} posted to {stream}")
                    if rec.seq in self.reject_seqs:
                        raise ev.ContractError(f"seq {rec.seq} refused by test")
                except ev.ContractError as e:
                    rejected.append({"index": i, "seq": None, "reason": str(e)})
                    continue
                key = (rec.session_id, rec.stream, rec.seq)
                self.deliveries[key] += 1
                if key in self.stored:
                    dups += 1
                else:
                    self.stored.add(key)
                    stored += 1
            status = 400 if lines and not stored and not dups else 200
            if not lines:
                status = 400
            return answer(status, {"stored": stored, "duplicates": dups, "rejected": rejected})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

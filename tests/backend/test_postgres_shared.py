"""Several backends on one PostgreSQL store: concurrent re-deliveries are stored once."""

from __future__ import annotations

import threading

import pytest

from gpufl.backend.ingest import ingest_raws
from gpufl.backend.store import open_store
from gpufl.contract import events as ev

from .factory import SessionFactory

pytestmark = pytest.mark.postgres


def test_two_backends_racing_on_the_same_batches_store_each_record_once(pg_schema: str) -> None:
    a, b = open_store(pg_schema), open_store(pg_schema)  # two processes' worth of pools and state
    try:
        f = SessionFactory("shared")
        recs: list[ev.Record] = [f.start("device"), f.launch(1, "k")]
        recs += [f.kernel(1, i * 100, 50) for i in range(4000)]
        raws = [ev.encode(r) for r in recs]
        # Overlapping batches, each sent to both backends at once (an agent retrying through a balancer).
        batches = [raws[i : i + 700] for i in range(0, len(raws), 500)]
        results: list[tuple[int, int]] = []
        lock = threading.Lock()

        def send(store: object, order: list[list[bytes]]) -> None:
            for batch in order:
                res = ingest_raws(store, "device", batch)  # type: ignore[arg-type]
                with lock:
                    results.append((res.stored, res.duplicates))

        threads = [
            threading.Thread(target=send, args=(a, batches)),
            threading.Thread(target=send, args=(b, list(reversed(batches)))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(s for s, _ in results) == len(raws)
        assert sum(s + d for s, d in results) == 2 * sum(len(x) for x in batches)
        assert a.session_detail("shared")["totals"]["kernels"] == 4000
        assert b.kernel_summary("shared")["items"][0]["count"] == 4000
        assert a._one("SELECT count(*) FROM kernels WHERE session_id = 'shared'") == (4000,)
    finally:
        a.close()
        b.close()

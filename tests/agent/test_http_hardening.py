"""The agent against the real backend at its edges: per-key rate limits (429 + Retry-After) and TLS."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from .conftest import AGENT, require, run_agent, start_loadgen
from .services import Backend, backend_available
from .verify import assert_store_holds_all


def _ingest_key(backend: Backend, **client: object) -> str:
    r = httpx.post(
        backend.url.replace("/events/", "/keys"),
        json={"role": "ingest", "name": "agent"},
        headers=backend.auth,
        timeout=10,
        **client,  # type: ignore[arg-type]
    )
    r.raise_for_status()
    return str(r.json()["token"])


@pytest.fixture
def throttled_backend(tmp_path: str) -> Iterator[Backend]:
    require("the project's backend (gpufl.backend)", backend_available())
    data = os.path.join(tmp_path, "backend")
    os.mkdir(data)
    # 2 ingest requests/s per key after a burst of 3: the agent's ~20 batches must wait for tokens.
    b = Backend(data, rate_limit_ingest="2", rate_limit_ingest_burst="3").start()
    yield b
    b.stop()


def test_agent_honours_429_retry_after_and_delivers_everything(
    folder: str, throttled_backend: Backend
) -> None:
    b = throttled_backend
    token = _ingest_key(b)
    gen = start_loadgen(folder, 6000, 1e9, 64 * 1024)
    assert gen.wait(timeout=120) == 0
    r = run_agent(
        [
            *AGENT,
            f"--folder={folder}",
            "--type=http",
            f"--url={b.url}",
            "--exit-when-idle",
            "--batch-records=500",
            "--status-interval=0",
        ],
        env={**os.environ, "GPUFL_AGENT_TOKEN": token},
    )
    assert r.returncode == 0, r.stderr
    assert "HTTP 429" in r.stderr  # it was throttled, waited, and went on
    with open(b.log_path, encoding="utf-8", errors="replace") as f:
        assert '/api/v1/events/device HTTP/1.1" 429' in f.read()
    # 6,000 emitted + session_start and session_end on each of the three streams.
    assert assert_store_holds_all(b.url, b.token, folder) == 6000 + 6

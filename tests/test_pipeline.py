"""The real H100 captures through the whole pipeline: client writer (replay) → segments → gpufl-agent over
HTTP → gpufl-backend (DuckDB) → query API, as separate processes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gpufl.replay import replay

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ADMIN = "pipeline-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("pipeline")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, GPUFL_ADMIN_TOKEN=ADMIN)
    backend = subprocess.Popen(
        [
            str(BIN / "gpufl-backend"),
            "--port",
            str(port),
            "--data-dir",
            str(tmp / "store"),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        ingest = httpx.post(
            f"{url}/api/v1/keys", json={"role": "ingest", "name": "agent"}, headers=admin
        ).json()
        read = httpx.post(f"{url}/api/v1/keys", json={"role": "read", "name": "test"}, headers=admin).json()
        logs = tmp / "logs"
        sessions = {
            name: replay(ROOT / "examples/captures" / name, logs)
            for name in ("gpt_train", "memcpy_heavy", "multistream")
        }
        agent = subprocess.run(
            [
                str(BIN / "gpufl-agent"),
                "--folder",
                str(logs),
                "--type",
                "http",
                "--url",
                f"{url}/api/v1/events/",
                "--token",
                ingest["token"],
                "--exit-when-idle",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert agent.returncode == 0, agent.stderr
        yield url, {"Authorization": f"Bearer {read['token']}"}, sessions
    finally:
        backend.terminate()
        backend.wait(30)


def test_every_record_arrives_once(stack: tuple[str, dict[str, str], dict[str, str]]) -> None:
    url, auth, sessions = stack
    for sid in sessions.values():
        d = httpx.get(f"{url}/api/v1/sessions/{sid}", headers=auth).json()
        for s in d["streams"]:
            assert s["ended"] and s["missing"] == 0 and s["received"] == s["written"], s
        assert not d["cut_short"]


def test_gpt_capture_kernels_names_occupancy_and_scopes(
    stack: tuple[str, dict[str, str], dict[str, str]],
) -> None:
    url, auth, sessions = stack
    sid = sessions["gpt_train"]
    summary = httpx.get(f"{url}/api/v1/sessions/{sid}/kernels/summary", headers=auth).json()
    assert sum(i["count"] for i in summary["items"]) == 5941
    assert any(i["name"].startswith("void at::native::") for i in summary["items"])
    page = httpx.get(f"{url}/api/v1/sessions/{sid}/kernels", params={"limit": 50}, headers=auth).json()
    for row in page["items"][:20]:
        k = httpx.get(f"{url}/api/v1/sessions/{sid}/kernels/{row['id']}", headers=auth).json()
        assert 0 < k["launch"]["occupancy"] <= 1
        assert k["launch"]["limiting_resource"] in ("registers", "shared_memory", "warps", "blocks")
        assert k["mangled"] and (k["name"] != k["mangled"]) == k["mangled"].startswith(
            "_Z"
        )  # extern "C" stays
    roots = httpx.get(f"{url}/api/v1/sessions/{sid}/scopes", headers=auth).json()["roots"]
    step = next(n for n in roots if n["path"] == "step")
    children = {c["path"]: c for c in step["children"]}
    for phase in ("step/forward", "step/backward", "step/optimizer"):
        assert children[phase]["gpu_ns"] > 0 and children[phase]["calls"] == 12


def test_memcpy_capture_has_pageable_and_pinned(stack: tuple[str, dict[str, str], dict[str, str]]) -> None:
    url, auth, sessions = stack
    sid = sessions["memcpy_heavy"]
    items = httpx.get(f"{url}/api/v1/sessions/{sid}/memcpy", params={"limit": 1000}, headers=auth).json()[
        "items"
    ]
    kinds = {(m["copy_kind"], m["src_kind"]) for m in items}
    assert ("HtoD", "Pageable") in kinds and ("HtoD", "Pinned") in kinds
    series = httpx.get(
        f"{url}/api/v1/sessions/{sid}/system", params={"metric": "power_mw"}, headers=auth
    ).json()
    assert series["series"] and series["series"][0]["points"]


def test_multistream_capture_keeps_streams_and_graph_kernels(
    stack: tuple[str, dict[str, str], dict[str, str]],
) -> None:
    url, auth, sessions = stack
    sid = sessions["multistream"]
    rows = httpx.get(f"{url}/api/v1/sessions/{sid}/kernels", params={"limit": 1000}, headers=auth).json()[
        "items"
    ]
    assert len(rows) == 406
    assert len({r["stream_id"] for r in rows}) >= 5
    assert sum(1 for r in rows if r["graph_id"]) >= 10

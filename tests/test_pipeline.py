"""The real H100 captures through the whole pipeline: client writer (replay) → segments → gpufl-agent over
HTTP → gpufl-backend (DuckDB) → query API, as separate processes on loopback.

``examples/captures/gpufl_run_unmodified`` is shipped as it is (no replay: the original session id and
timestamps): the logs `gpufl run` wrote on an H100 for a training script that never imports gpufl
(docs/gpu-runs/gpufl_run.md).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpufl.client.replay import replay

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ADMIN = "pipeline-admin-token-0123456789"
RUN_CAPTURE = ROOT / "examples/captures/gpufl_run_unmodified"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ship(folder: Path, url: str, token: str, cursor: Path) -> None:
    """The real gpufl-agent over HTTP, until everything present in ``folder`` is delivered."""
    agent = subprocess.run(
        [
            str(BIN / "gpufl-agent"),
            "--folder",
            str(folder),
            "--type",
            "http",
            "--url",
            f"{url}/api/v1/events/",
            "--exit-when-idle",
            "--cursor-file",
            str(cursor),
        ],
        env={**os.environ, "GPUFL_AGENT_TOKEN": token},  # not --token: arguments are visible in ps
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert agent.returncode == 0, agent.stderr


def run_records() -> list[dict[str, Any]]:
    return [
        json.loads(ln)
        for f in sorted(RUN_CAPTURE.glob("*.log"))
        for ln in f.read_bytes().splitlines()
        if ln.strip()
    ]


def run_session_id() -> str:
    (sid,) = {str(r["session_id"]) for r in run_records()}
    return sid


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
        ship(logs, url, ingest["token"], tmp / "replayed.cursor")
        # As written on the H100; the cursor lives outside the committed folder.
        ship(RUN_CAPTURE, url, ingest["token"], tmp / "run.cursor")
        sessions["gpufl_run_unmodified"] = run_session_id()
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


def test_gpufl_run_capture_arrives_exactly_as_logged(
    stack: tuple[str, dict[str, str], dict[str, str]],
) -> None:
    """`gpufl run` on the H100, unmodified gpt_train.py: every logged record stored once, as logged."""
    url, auth, sessions = stack
    sid = sessions["gpufl_run_unmodified"]
    recs = run_records()
    types = Counter(r["type"] for r in recs)
    # the numbers docs/gpu-runs/gpufl_run.md quotes
    assert (types["kernel"], types["memcpy"], types["memset"], types["system_sample"]) == (4977, 289, 474, 15)
    # the agent read the committed folder and wrote nothing into it (its cursor is elsewhere)
    assert sorted(p.name for p in RUN_CAPTURE.iterdir()) == [
        f"vm.gpt_unmodified.{sid}.{s}.000000.log" for s in ("device", "scope", "system")
    ]
    with httpx.Client(base_url=f"{url}/api/v1", headers=auth) as api:  # one connection for 100+ requests
        d = api.get(f"/sessions/{sid}").json()
        h = d["header"]
        assert h["app"] == "gpt_unmodified" and h["schema_version"] == 2
        # the script as the user ran it: no gpufl flag, and --mode none never imports gpufl
        argv = ["examples/workloads/gpt_train.py", "--mode", "none", "--warmup", "2", "--steps", "8"]
        assert h["argv"] == argv
        assert [g["name"] for g in d["devices"]] == ["NVIDIA H100 80GB HBM3"]
        listed = api.get("/sessions", params={"app": "gpt_unmodified"}).json()["items"]
        assert [(s["session_id"], s["gpus"]) for s in listed] == [(sid, ["NVIDIA H100 80GB HBM3"])]
        t = d["totals"]
        stored = (t["kernels"], t["memcpys"], t["memsets"], t["system_samples"])
        assert stored == (types["kernel"], types["memcpy"], types["memset"], types["system_sample"])
        # a clean exit: every stream ends with session_end (atexit), and every written record arrived once
        lines = Counter(str(r["stream"]) for r in recs)
        for s in d["streams"]:
            assert s["ended"] and s["end_reason"] == "atexit", s
            assert s["received"] == s["written"] == lines[s["stream"]], s
            assert s["missing"] == s["dropped"] == 0, s
        assert not d["cut_short"] and types["session_end"] == 3

        # kernels: each once, with the logged timestamps (not re-based) and the launch's demangled name
        page = api.get(f"/sessions/{sid}/kernels", params={"limit": 10_000}).json()
        assert page["next_cursor"] is None
        rows = page["items"]
        logged = {r["seq"]: r for r in recs if r["type"] == "kernel"}
        assert len(rows) == len({r["id"] for r in rows}) == len(logged)
        launches = {r["id"]: r["launch"] for r in recs if r["type"] == "dict" and r["kind"] == "launch"}
        for row in rows:
            k = logged[row["seq"]]
            assert (row["start_ns"], row["end_ns"]) == (k["start_ns"], k["end_ns"])
            assert (row["stream_id"], row["name"]) == (k["stream_id"], launches[k["launch_id"]]["name"])
        assert any(row["name"].startswith("void at::native::") for row in rows)
        first_of_launch = {row["launch_id"]: row["id"] for row in reversed(rows)}
        assert set(first_of_launch) == set(launches)
        for kid in first_of_launch.values():
            k = api.get(f"/sessions/{sid}/kernels/{kid}").json()
            demangled = k["name"] != k["mangled"]
            assert k["mangled"] and demangled == k["mangled"].startswith("_Z")  # extern "C" names stay
            assert 0 < k["launch"]["occupancy"] <= 1
            assert k["launch"]["limiting_resource"] in ("registers", "shared_memory", "warps", "blocks")

        copies = api.get(f"/sessions/{sid}/memcpy", params={"limit": 10_000}).json()
        assert len(copies["items"]) == types["memcpy"] and copies["next_cursor"] is None
        series = api.get(f"/sessions/{sid}/system", params={"points": 10_000}).json()["series"]
        points = {(s["metric"], s["device"]): len(s["points"]) for s in series}
        assert points[("power_mw", 0)] == points[("cpu_pct", None)] == types["system_sample"]

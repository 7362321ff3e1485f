"""``gpufl diff``: exit codes, formats, and the same answer from log folders and from a real backend."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from .captures import BASE, BF16, LAYER_REMOVED, REPEAT


def gpufl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpufl", "diff", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_a_repeat_passes_and_says_nothing_changed() -> None:
    r = gpufl(str(BASE), str(REPEAT), "--fail-if", "total_gpu_time > +5%", "--fail-if", "kernel:* > +10%")
    assert r.returncode == 0, r.stderr
    assert "nothing changed beyond noise" in r.stdout and "per step (12 vs 12 steps)" in r.stdout
    assert r.stdout.count("PASS") == 2


def test_a_regression_gate_exits_1_with_the_offending_rows() -> None:
    r = gpufl(str(BASE), str(BF16), "--fail-if", "kernel:* > +10%")
    assert r.returncode == 1
    assert "FAIL  kernel:* > +10%" in r.stdout and "added" in r.stdout


def test_json_and_junit(tmp_path: Path) -> None:
    r = gpufl(str(BASE), str(LAYER_REMOVED), "--format", "json", "--fail-if", "kernel_time < -5%")
    assert r.returncode == 1 and "FAIL kernel_time < -5%" in r.stderr
    d = json.loads(r.stdout)
    assert d["per_step"] and d["gate"][0]["passed"] is False and d["rows_total"] == len(d["rows"])
    out = tmp_path / "junit.xml"
    r = gpufl(
        str(BASE), str(LAYER_REMOVED), "--format", "junit", "-o", str(out), "--fail-if", "kernel_time > +5%"
    )
    assert r.returncode == 0 and r.stdout == ""
    assert ET.parse(out).getroot().find("testsuite").get("failures") == "0"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["/no/such/folder", "/also/not"], "cannot reach"),
        ([str(BASE), "some-session-id"], "is a local path but the other side is not"),
        ([str(BASE), str(REPEAT), "--fail-if", "gpu > 5%"], "not a total"),
        ([str(BASE), str(REPEAT), "--min-effect", "-1"], "--min-effect"),
    ],
)
def test_unreadable_input_exits_2_with_a_reason(args: list[str], says: str) -> None:
    r = gpufl(*args, "--server", "http://127.0.0.1:9", "--timeout", "5")
    assert r.returncode == 2 and says in r.stderr, r.stderr


def test_session_ids_are_diffed_by_the_backend_over_http(tmp_path: Path) -> None:
    from tests.backend.server import Server

    s = Server(tmp_path).start()
    try:
        sids = {}
        for folder in (BASE, LAYER_REMOVED):
            for f in sorted(folder.glob("*.log")):
                stream = f.name.split(".")[-3]
                body = f.read_bytes()
                r = httpx.post(
                    f"{s.base}/api/v1/events/{stream}",
                    content=body,
                    headers={**s.auth, "Content-Type": "application/x-ndjson"},
                    timeout=60,
                )
                assert r.status_code == 200 and r.json()["rejected"] == [], r.text
            sids[folder.name] = json.loads(body.splitlines()[0])["session_id"]
        env = {"PATH": "/usr/bin:/bin", "GPUFL_TOKEN": s.token, "PYTHONPATH": ":".join(sys.path)}
        remote = gpufl(
            sids["diff_base"], sids["diff_layer_removed"], "--server", s.base, "--format", "json", env=env
        )
        local = gpufl(str(BASE), str(LAYER_REMOVED), "--format", "json")
        assert remote.returncode == 0, remote.stderr
        a, b = json.loads(remote.stdout), json.loads(local.stdout)
        assert [(r["key"], r["label"]) for r in a["rows"]] == [(r["key"], r["label"]) for r in b["rows"]]
        assert a["counts"] == b["counts"]
        bad = gpufl(sids["diff_base"], "nope", "--server", s.base, env=env)
        assert bad.returncode == 2 and "404" in bad.stderr
    finally:
        s.stop()

"""``gpufl demo`` (what scripts/demo.sh runs after installing): real sessions end up in a real backend, and
what goes wrong is one clear line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import duckdb


def demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpufl", "demo", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CAPTURES = Path(__file__).resolve().parents[2] / "examples" / "captures"
# Kernels per capture folder, counted from the committed lines (gpt_train: 5941, gpufl_run_unmodified: 4977,
# memcpy_heavy: 20, multistream: 406 when this test was written; the diff and phases captures came later).
KERNELS = {
    d.name: sum(f.read_bytes().count(b'{"type":"kernel"') for f in d.glob("*.device.*.log"))
    for d in sorted(CAPTURES.iterdir())
}


def test_demo_loads_the_replayed_captures_once_and_prints_url_and_token(tmp_path: Path) -> None:
    def run() -> tuple[str, dict[str, str], dict[str, str]]:
        port = free_port()
        r = demo(
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            "--replay",
            "--exit-after-load",
            env=dict(os.environ, GPUFL_ADMIN_TOKEN="demo-test-admin-token-123"),
        )
        assert r.returncode == 0, r.stderr
        assert f"dashboard:   http://127.0.0.1:{port}/" in r.stdout
        assert re.search(r"read token:  gpufl_\S+", r.stdout)
        assert "(from GPUFL_ADMIN_TOKEN)" in r.stdout
        # The app name printed is the one the session records, which the UI lists (not the folder name).
        found = re.findall(
            r"session: (\w+) \(NVIDIA H[12]00[^()]* capture (\w+), replayed as (\w+)\)", r.stdout
        )
        assert {folder for _, folder, _ in found} == set(KERNELS), r.stdout
        return r.stdout, {folder: sid for _, folder, sid in found}, {sid: app for app, _, sid in found}

    first, sids, apps = run()
    assert "earlier demo run" not in first
    # A re-run in the same data folder: the same sessions again, said so, and held once by the store.
    second, sids_again, _ = run()
    assert sids_again == sids
    n = len(KERNELS)
    assert second.count("loaded by an earlier demo run; the store keeps one copy") == n, second
    # The backend has stopped: its store says what arrived.
    con = duckdb.connect(str(tmp_path / "store" / "gpufl.duckdb"), read_only=True)
    assert con.execute("SELECT count(DISTINCT session_id) FROM sessions").fetchone() == (n,)
    rows = con.execute("SELECT session_id, app FROM sessions").fetchall()
    assert dict(rows) == apps  # the app names printed are those stored
    per = dict(con.execute("SELECT session_id, count(*) FROM kernels GROUP BY session_id").fetchall())
    assert per == {sid: KERNELS[folder] for folder, sid in sids.items()}
    assert KERNELS["gpt_train"] == 5941 and KERNELS["multistream"] == 406


def test_demo_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = demo("--port", str(port), "--data-dir", str(tmp_path), "--exit-after-load")
    assert r.returncode == 1
    assert r.stderr.strip() == f"gpufl demo: port {port} is in use: pass --port N (or set GPUFL_PORT)"


def test_demo_unwritable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = demo("--data-dir", str(blocker / "sub"), "--exit-after-load")
    assert (
        r.returncode == 1
        and r.stderr.startswith("gpufl demo: cannot write to")
        and "Traceback" not in r.stderr
    )


def _children_cmdlines(parent: int) -> list[list[str]]:
    """The arguments of ``parent``'s child processes, as any local user reads them (ps, /proc/PID/cmdline)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == parent:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    out.append(f.read().decode(errors="replace").split("\0"))
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_demo_keeps_tokens_off_command_lines(tmp_path: Path) -> None:
    # The demo passed the agent's ingest token as `--token TOKEN`: readable by every local user with ps.
    port = free_port()
    env = dict(os.environ, GPUFL_ADMIN_TOKEN="demo-test-admin-token-456")
    args = [
        sys.executable,
        "-m",
        "gpufl",
        "demo",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path),
        "--replay",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Press Ctrl-C"):
                break
        else:
            raise AssertionError(f"the demo ended early: {proc.communicate()[1]}")
        children = _children_cmdlines(proc.pid)
        assert any(a.endswith("gpufl-agent") for argv in children for a in argv[:2]), children
        for argv in children:  # the backend and the agent
            assert "--token" not in argv and not any(a.startswith(("gpufl_", "--token=")) for a in argv), argv
            assert "demo-test-admin-token-456" not in " ".join(argv)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert "--token puts the token" not in err

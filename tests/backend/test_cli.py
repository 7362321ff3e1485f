"""The gpufl-backend command: serving, configuration errors, key management, bootstrap admin token."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

CLI = [sys.executable, "-m", "gpufl.backend.cli"]


def _env(**kw: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFL_")}
    env.update(kw)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=timeout, check=False)


class Server:
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.proc = subprocess.Popen(
            [*CLI, "--port", str(self.port), "--data-dir", str(data_dir), "--log-level", "warning"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.communicate()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("server did not come up")

    def stop(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        return out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data", _env(GPUFL_ADMIN_TOKEN="admin-secret-for-tests"))
    yield s
    s.stop()


def _one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_bad_flags_port_in_use_and_unreachable_database(tmp_path: Path) -> None:
    env = _env()
    assert "unrecognized arguments" in _one_line_error(run(["--bogus"], env))
    assert "port" in _one_line_error(run(["--port", "99999", "--data-dir", str(tmp_path)], env))
    assert "port" in _one_line_error(run(["--data-dir", str(tmp_path)], _env(GPUFL_PORT="-3")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        msg = _one_line_error(run(["--port", str(busy), "--data-dir", str(tmp_path)], env))
        assert f"127.0.0.1:{busy}" in msg
    msg = _one_line_error(
        run(["--port", str(_free_port()), "--database", "postgresql://nobody@127.0.0.1:1/none"], env)
    )
    assert "PostgreSQL" in msg


def test_keys_through_the_running_backend(server: Server, tmp_path: Path) -> None:
    env = _env(GPUFL_ADMIN_TOKEN="admin-secret-for-tests")
    p = run(["keys", "create", "--role", "read", "--name", "ui", "--port", str(server.port)], env)
    assert p.returncode == 0, p.stderr
    token = p.stdout.strip()
    assert p.stdout == token + "\n" and token.startswith("gpufl_")
    hdr = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{server.url}/api/v1/sessions", headers=hdr).status_code == 200
    listed = run(["keys", "list", "--port", str(server.port)], env)
    assert listed.returncode == 0 and " ui" in listed.stdout and token not in listed.stdout
    key_id = token.split("_")[1]
    assert run(["keys", "revoke", key_id, "--port", str(server.port)], env).returncode == 0
    assert httpx.get(f"{server.url}/api/v1/sessions", headers=hdr).status_code == 401
    # An ingest key bound to hosts (issue #22): the agent routes refuse it other hosts; listed with its glob
    p = run(
        [
            "keys",
            "create",
            "--role",
            "ingest",
            "--name",
            "rack",
            "--host-glob",
            "node-*",
            "--port",
            str(server.port),
        ],
        env,
    )
    assert p.returncode == 0, p.stderr
    bound = {"Authorization": f"Bearer {p.stdout.strip()}"}
    agent = f"{server.url}/api/v1/agent/captures"
    assert httpx.get(agent, params={"host": "node-1"}, headers=bound).status_code == 200
    assert httpx.get(agent, params={"host": "gpu-1"}, headers=bound).status_code == 403
    rows = run(["keys", "list", "--port", str(server.port)], env).stdout.splitlines()
    assert "HOSTS" in rows[0] and any(" node-* " in r and r.endswith(" rack") for r in rows)
    assert any(" * " in r and r.endswith(" ui") for r in rows)  # unbound: any host
    refused = run(
        ["keys", "create", "--role", "read", "--name", "r", "--host-glob", "x", "--port", str(server.port)],
        env,
    )
    assert refused.returncode == 2 and "--host-glob binds ingest keys only" in refused.stderr
    # Without an admin token the CLI refuses (it must not open the store behind a running backend).
    no_token = run(["keys", "list", "--port", str(server.port)], _env())
    assert "GPUFL_ADMIN_TOKEN" in _one_line_error(no_token)


def test_keys_with_no_backend_open_the_store_and_bootstrap_token_is_printed_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = str(_free_port())
    p = run(
        ["keys", "create", "--role", "ingest", "--name", "agent", "--data-dir", str(data), "--port", port, "--host-glob", "node-*"],
        _env(),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    token = p.stdout.strip()
    first = Server(data, _env())
    try:
        r = httpx.post(
            f"{first.url}/api/v1/events/device", content=b"", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 400  # authenticated as ingest; the empty body is the only problem
    finally:
        out1 = first.stop()
    assert out1.count("bootstrap admin token") == 1
    admin = out1.split("bootstrap admin token (shown once, store it now): ")[1].split()[0]
    second = Server(data, _env())
    try:
        r = httpx.get(f"{second.url}/api/v1/keys", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200 and {k["role"] for k in r.json()["items"]} == {"ingest", "admin"}
        assert {k["role"]: k["host_glob"] for k in r.json()["items"]} == {"ingest": "node-*", "admin": None}
    finally:
        out2 = second.stop()
    assert "bootstrap admin token" not in out2


def test_a_bootstrap_token_that_cannot_be_installed_is_one_line_and_no_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = str(_free_port())
    p = run(
        ["keys", "create", "--role", "read", "--name", "r", "--data-dir", str(data), "--port", port], _env()
    )
    read_token = p.stdout.strip()
    for bad, why in ((read_token, "role read"), ("two words", "Authorization header")):
        msg = _one_line_error(run(["--data-dir", str(data), "--port", port], _env(GPUFL_ADMIN_TOKEN=bad)))
        assert why in msg and "GPUFL_ADMIN_TOKEN" in msg


def test_tls_serves_https_and_the_keys_commands_verify_it(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_pem))
    data, port = tmp_path / "data", str(_free_port())
    # Mistakes are one line and no start.
    assert "go together" in _one_line_error(run(["--data-dir", str(data), "--tls-cert", str(cert)], _env()))
    msg = _one_line_error(run(["--tls-cert", str(cert), "--tls-key", str(tmp_path / "nope.pem")], _env()))
    assert "nope.pem" in msg
    other_key = tmp_path / "other.pem"
    trustme.CA().issue_cert("x").private_key_pem.write_to_path(str(other_key))
    assert "matching" in _one_line_error(run(["--tls-cert", str(cert), "--tls-key", str(other_key)], _env()))
    env = _env(GPUFL_ADMIN_TOKEN="admin-secret-for-tests", GPUFL_TLS_CERT=str(cert), GPUFL_TLS_KEY=str(key))
    proc = subprocess.Popen([*CLI, "--port", port, "--data-dir", str(data)], env=env, stderr=subprocess.PIPE)
    try:
        ctx = ssl.create_default_context(cafile=str(ca_pem))
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ctx).status_code == 200
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        # The keys commands find the backend at https:// (GPUFL_TLS_CERT) and verify it with --ca-bundle;
        # without it they stop with one line rather than open the store behind the running backend.
        untrusted = run(["keys", "list", "--port", port], env)
        assert "--ca-bundle" in _one_line_error(untrusted)
        p = run(
            ["keys", "create", "--role", "read", "--name", "r", "--port", port, "--ca-bundle", str(ca_pem)],
            env,
        )
        assert p.returncode == 0 and p.stdout.startswith("gpufl_"), p.stderr
    finally:
        proc.terminate()
        proc.communicate(timeout=30)

"""The agent against the real backend at its edges: per-key rate limits (429 + Retry-After) and TLS."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import trustme

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


# ---- TLS ------------------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: str) -> dict[str, str]:
    """A CA made for this test (trustme), a server certificate it signed for 127.0.0.1, and a second CA
    that signed nothing here (an untrusted issuer for the backend's certificate)."""
    ca, stranger = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    out = {
        "ca": os.path.join(tmp_path, "ca.pem"),
        "stranger": os.path.join(tmp_path, "stranger.pem"),
        "cert": os.path.join(tmp_path, "server.pem"),
        "key": os.path.join(tmp_path, "server.key"),
    }
    ca.cert_pem.write_to_path(out["ca"])
    stranger.cert_pem.write_to_path(out["stranger"])
    cert.private_key_pem.write_to_path(out["key"])
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(out["cert"], append=i > 0)
    return out


@pytest.fixture
def tls_backend(tmp_path: str, tls_files: dict[str, str]) -> Iterator[Backend]:
    require("the project's backend (gpufl.backend)", backend_available())
    data = os.path.join(tmp_path, "backend")
    os.mkdir(data)
    args = ["--tls-cert", tls_files["cert"], "--tls-key", tls_files["key"]]
    b = Backend(data, args=args, ca_bundle=tls_files["ca"]).start()
    yield b
    b.stop()


def test_agent_ships_over_https_verifying_the_backend(
    folder: str, tls_backend: Backend, tls_files: dict[str, str]
) -> None:
    b = tls_backend
    assert b.url.startswith("https://")
    token = _ingest_key(b, verify=b.verify)
    gen = start_loadgen(folder, 3000, 1e9, 64 * 1024)
    assert gen.wait(timeout=120) == 0
    env = {**os.environ, "GPUFL_AGENT_TOKEN": token}
    args = [*AGENT, f"--folder={folder}", "--type=http", f"--url={b.url}", "--exit-when-idle"]
    # Verification is on by default: the system's CAs don't know this backend's issuer.
    for extra in ([], [f"--ca-bundle={tls_files['stranger']}"]):
        r = run_agent([*args, *extra, "--connect-timeout=5"], env=env, timeout=60)
        assert r.returncode == 4, r.stderr  # refused at once, not retried as "unreachable"
        assert "certificate" in r.stderr and "--ca-bundle" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_agent([*args, f"--ca-bundle={tls_files['ca']}"], env=env)
    assert r.returncode == 0, r.stderr
    # No plain HTTP on a TLS backend: an http:// URL gets no answer, not a silent downgrade.
    with pytest.raises(httpx.TransportError):
        httpx.get(b.url.replace("https://", "http://"), timeout=5)
    assert assert_store_holds_all(b.url, b.token, folder, verify=b.verify) == 3000 + 6


def test_ca_bundle_is_checked_when_configured(folder: str, tmp_path: str) -> None:
    from gpufl.agent.config import ConfigError, parse

    ca = os.path.join(tmp_path, "ca.pem")
    with open(ca, "w") as f:
        f.write("not a certificate\n")
    base = [f"--folder={folder}", "--type=http", f"--ca-bundle={ca}"]
    with pytest.raises(ConfigError, match="plain http"):
        parse([*base, "--url=http://127.0.0.1:1/api/v1/events/"], environ={})
    with pytest.raises(ConfigError, match="no such file"):
        parse([f"--folder={folder}", "--url=https://h/api/v1/events/", "--ca-bundle=/nope.pem"], environ={})
    r = run_agent([*AGENT, *base, "--url=https://127.0.0.1:1/api/v1/events/"], timeout=60)
    assert r.returncode == 4 and "not a readable PEM CA file" in r.stderr, r.stderr


# ---- tokens stay off command lines ---------------------------------------------------------------------

# The profiled program looks at its siblings (the children of `gpufl run`) the way any local user can:
# it waits for the agent to start, then fails if the agent's arguments hold the token.
_SIBLINGS = r"""
import os, sys, time
token, parent = sys.argv[1], os.getppid()
def siblings():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != parent:
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                yield f.read().decode(errors="replace").split("\0")
        except (OSError, IndexError, ValueError):
            pass
deadline = time.monotonic() + 30
while not (agents := [a for a in siblings() if any("gpufl-agent" in x for x in a[:2])]):
    if time.monotonic() > deadline:
        sys.exit("no agent started")
    time.sleep(0.05)
sys.exit("token on the agent's command line" if any(token in " ".join(a) for a in agents) else 0)
"""


def test_gpufl_run_keeps_the_token_off_the_agents_command_line(
    tmp_path: str, throttled_backend: Backend
) -> None:
    # `gpufl run --agent --token T` started the agent as `gpufl-agent ... --token T`.
    b = throttled_backend
    token = _ingest_key(b)
    script = os.path.join(tmp_path, "siblings.py")
    with open(script, "w") as f:
        f.write(_SIBLINGS)
    token_file = os.path.join(tmp_path, "token")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    gpufl = [sys.executable, "-m", "gpufl", "run", "--agent", f"--url={b.url}"]
    env = {k: v for k, v in os.environ.items() if k != "GPUFL_AGENT_TOKEN"}
    for i, (extra, extra_env, warned) in enumerate(
        (
            ([], {"GPUFL_AGENT_TOKEN": token}, False),
            ([f"--token-file={token_file}"], {}, False),
            ([f"--token={token}"], {}, True),  # still works, with a warning
        )
    ):
        logs = os.path.join(tmp_path, f"logs{i}")
        r = subprocess.run(
            [*gpufl, f"--log-dir={logs}", *extra, "--", sys.executable, script, token],
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, (extra, r.stderr)
        assert ("--token puts the token on the command line" in r.stderr) == warned, r.stderr


def test_token_file_rules(folder: str, tmp_path: str) -> None:
    from gpufl.agent.config import ConfigError, parse

    path = os.path.join(tmp_path, "token")
    base = [f"--folder={folder}", "--url=http://127.0.0.1:1/api/v1/events/", f"--token-file={path}"]
    with pytest.raises(ConfigError, match="No such file"):
        parse(base, environ={})
    with open(path, "w") as f:
        f.write("\n")
    with pytest.raises(ConfigError, match="empty"):
        parse(base, environ={})
    with open(path, "w") as f:
        f.write("  secret-token  \nignored\n")
    cfg = parse(base, environ={})
    assert cfg.token == "secret-token" and cfg.warnings == []
    with pytest.raises(ConfigError, match="not both"):
        parse(base, environ={"GPUFL_AGENT_TOKEN": "other"})
    assert parse([*base[:2], "--token=x"], environ={}).warnings  # the flag is still taken, with a warning

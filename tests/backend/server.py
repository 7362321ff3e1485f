"""The real backend (``gpufl-backend``'s own command line, uvicorn and all) as a subprocess on loopback,
for the tests that need a real HTTP server: connection reuse, TLS, rate limits, the fuzzer."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``gpufl-backend`` with ``args``, the admin token ``token`` (GPUFL_ADMIN_TOKEN) and more ``GPUFL_*``
    variables from ``env``; its output (uvicorn's log included) goes to ``log_path``."""

    token = "server-test-admin-token"

    def __init__(
        self,
        workdir: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        scheme: str = "http",
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.args = ["--port", str(self.port), "--data-dir", str(workdir / "data"), *args]
        self.env = env or {}
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.verify = verify
        self.log_path = workdir / "backend.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFL_")}
        env.update(GPUFL_ADMIN_TOKEN=self.token, **self.env)
        cmd = [sys.executable, "-c", "import sys; from gpufl.backend.cli import main; sys.exit(main())"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, *self.args], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2, verify=self.verify).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"backend not answering after {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

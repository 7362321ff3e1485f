"""Fixtures for the agent's tests: the agent as a real subprocess, the loopback fault-injection server,
and the rule for missing real services (skip on a developer machine, fail when CI=true)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from .faultserver import FaultServer


def require(what: str, available: bool) -> None:
    """A real part the test needs is missing: skip locally, fail in CI (where .ci/run must provide it)."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI but not available")
    pytest.skip(f"{what} not available")


AGENT = [sys.executable, "-m", "gpufl.agent.cli"]


def agent_args(folder: str, url: str, token: str, *extra: str) -> list[str]:
    return [*AGENT, f"--folder={folder}", "--type=http", f"--url={url}", f"--token={token}", *extra]


def kafka_args(folder: str, brokers: str, prefix: str, *extra: str) -> list[str]:
    return [
        *AGENT,
        f"--folder={folder}",
        "--type=kafka",
        f"--brokers={brokers}",
        f"--topic-prefix={prefix}",
        *extra,
    ]


def restartable_kafka_args(folder: str, brokers: str, prefix: str, cursor: str) -> list[str]:
    """An agent for the kill/restart tests: a cursor file, fast polling, patient with a restarting broker."""
    return kafka_args(
        folder, brokers, prefix, f"--cursor-file={cursor}", "--poll-interval=0.1", "--connect-timeout=30"
    )


LOADGEN = os.path.join(os.path.dirname(__file__), "loadgen.py")


def start_loadgen(folder: str, events: int, rate: float, seg_bytes: int) -> subprocess.Popen[str]:
    """The real client writer (loadgen.py) in its own process; its stdout carries the session id."""
    return subprocess.Popen(
        [sys.executable, LOADGEN, folder, str(events), str(rate), str(seg_bytes)],
        stdout=subprocess.PIPE,
        text=True,
    )


def run_agent(
    args: list[str], timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    srv = FaultServer()
    yield srv
    srv.close()


@pytest.fixture
def folder(tmp_path: os.PathLike[str]) -> str:
    path = os.path.join(tmp_path, "logs")
    os.mkdir(path)
    return path

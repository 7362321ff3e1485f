"""deploy/: the compose file parses with Debian's docker-compose, the Dockerfiles pass hadolint, and every
gpufl command, flag, subcommand and GPUFL_* variable they use exists in the code.

docker-compose and hadolint are external tools: where one is missing these tests are skipped on a
workstation and fail in CI (CI=true), which must run them (scripts/test.sh installs both).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufl.backend.config import Settings
from gpufl.client.config import Options

from . import clicheck
from .clicheck import BIN, ROOT

COMPOSE = ROOT / "deploy" / "compose.yaml"
_SKIP_DIRS = {".git", ".venv", "node_modules", ".work", "test-artifacts", "__pycache__"}


def need_tool(name: str) -> str:
    found = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if found:
        return found
    message = f"{name} is not installed"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}, and CI must run this test (scripts/test.sh installs it)")
    pytest.skip(message)


def dockerfiles() -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        out += [Path(dirpath) / f for f in filenames if f == "Dockerfile" or f.startswith("Dockerfile.")]
    return sorted(p for p in out if not p.name.endswith(".dockerignore"))


# --------------------------------------------------------------------------------------- docker-compose

COMPOSE_ENV = {"GPUFL_ADMIN_TOKEN": "doc-test-admin-token"}


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = need_tool("docker-compose")
    full_env = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    full_env.update(env if env is not None else COMPOSE_ENV)
    return subprocess.run(
        [exe, "-f", str(COMPOSE), *args], capture_output=True, text=True, timeout=120, env=full_env
    )


@pytest.mark.parametrize("profile", [[], ["--profile", "gpu"]], ids=["default", "gpu"])
def test_compose_config_parses(profile: list[str]) -> None:
    proc = compose(*profile, "config")
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    assert services["client-gpu"]["profiles"] == ["gpu"]
    gpu = services["client-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    # Every other service runs without a profile (docker-compose 1.29 lists profiled ones in `config` too).
    expected = {"kafka", "postgres", "s3", "s3-init", "backend-1", "backend-2", "agent", "client-replay"}
    assert {n for n, svc in services.items() if not svc.get("profiles")} == expected


def test_compose_needs_the_admin_token() -> None:
    # Without GPUFL_ADMIN_TOKEN two backends would each mint their own bootstrap admin key.
    proc = compose("config", env={})
    assert proc.returncode != 0
    assert "GPUFL_ADMIN_TOKEN" in proc.stderr


# --------------------------------------------------------------------------------------------- hadolint


def test_there_are_dockerfiles() -> None:
    assert ROOT / "deploy" / "Dockerfile" in dockerfiles()


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_clean(path: Path) -> None:
    exe = need_tool("hadolint")
    proc = subprocess.run([exe, "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_reports_problems(tmp_path: Path) -> None:
    """The linter is really looking: a known-bad Dockerfile fails."""
    exe = need_tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN cd /tmp && apt-get install curl\n")
    proc = subprocess.run([exe, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout  # untagged image


# ------------------------------------------------------------------- commands and flags exist in the code


def _compose_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _argv(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else shlex.split(str(value))


def compose_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command a compose service runs (command, entrypoint, healthcheck)."""
    out: list[tuple[str, list[str]]] = []
    for name, svc in _compose_data()["services"].items():
        for key in ("entrypoint", "command"):
            if key in svc:
                out += [(f"compose {name}.{key}", c) for c in clicheck.container_commands(_argv(svc[key]))]
        test = (svc.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
            argv = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
            out += [(f"compose {name}.healthcheck", c) for c in clicheck.container_commands(argv)]
    return out


def _instructions(path: Path) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[int, str, str]] = []
    pending, start = "", 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        if not pending:
            start = n
        pending += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((start, word.upper(), rest.strip()))
            pending = ""
    return out


def _exec_or_shell(arg: str) -> list[list[str]]:
    if arg.startswith("["):
        return clicheck.container_commands(json.loads(arg))
    return clicheck.shell_commands(arg)


def dockerfile_commands() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for path in dockerfiles():
        rel = path.relative_to(ROOT)
        for line, word, arg in _instructions(path):
            if word == "HEALTHCHECK":
                m = re.search(r"\bCMD\s+(.*)$", arg)
                word, arg = ("CMD", m.group(1)) if m else (word, "")
            if word in ("RUN", "CMD", "ENTRYPOINT"):
                out += [(f"{rel}:{line} {word}", c) for c in _exec_or_shell(arg)]
    return out


def our_commands() -> list[tuple[str, list[str]]]:
    return [(w, c) for w, c in compose_commands() + dockerfile_commands() if clicheck.ours(c)]


def test_the_files_use_every_program() -> None:
    """The parsing finds the commands (an empty list would pass the check below vacuously)."""
    used = {(c[0], c[1] if len(c) > 1 and not c[1].startswith("-") else "") for _, c in our_commands()}
    assert {("gpufl-backend", ""), ("gpufl-agent", ""), ("gpufl", "replay"), ("gpufl", "run")} <= used
    assert ("bash", "scripts/install.sh") in used


@pytest.mark.parametrize("where,argv", our_commands(), ids=lambda v: v if isinstance(v, str) else None)
def test_command_and_flags_exist(where: str, argv: list[str]) -> None:
    assert clicheck.problems(argv, where) == []


def test_checker_catches_what_does_not_exist() -> None:
    assert clicheck.problems(["gpufl-agent", "--folder", "/l", "--no-such-flag", "1"])
    assert clicheck.problems(["gpufl-agent", "--type", "amqp"])
    assert clicheck.problems(["gpufl", "replicate", "x"])
    assert clicheck.problems(["gpufl-backend", "keys", "create", "--role", "root", "--name", "x"])
    assert clicheck.problems(["gpufl", "replay", "examples/captures/none", "--log-dir", "/l"])
    assert clicheck.problems(
        ["gpufl", "run", "--", "python", "examples/workloads/gpt_train.py", "--epochs", "1"]
    )
    assert clicheck.problems(["bash", "scripts/install.sh", "--extras", "gpu"])
    assert clicheck.problems(["gpufl-daemon"])


# -------------------------------------------------------------------------------- GPUFL_* variables


def _known_variables(agent_help: str) -> set[str]:
    backend = {f"GPUFL_{name.upper()}" for name in Settings.model_fields}
    client = {var for var, _ in Options._ENV.values()}
    agent = {
        "GPUFL_AGENT_" + flag[2:].upper().replace("-", "_")
        for flag in clicheck.parse_help(agent_help).options
        if flag.startswith("--") and flag != "--help"
    }
    return backend | client | agent


def used_variables() -> list[tuple[str, str]]:
    """(where, NAME) of every GPUFL_* variable set for a container (compose environment, Dockerfile ENV)."""
    out: list[tuple[str, str]] = []
    for name, svc in _compose_data()["services"].items():
        env = svc.get("environment") or {}
        keys = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        out += [(f"compose {name}", k) for k in keys if k.startswith("GPUFL_")]
    for path in dockerfiles():
        for line, word, arg in _instructions(path):
            if word == "ENV":
                out += [
                    (f"{path.relative_to(ROOT)}:{line}", k)
                    for k in re.findall(r"(?:^|\s)(GPUFL_[A-Z0-9_]+)=", arg)
                ]
    return out


def test_variables_exist() -> None:
    rc, agent_help = clicheck.program_help(("gpufl-agent",))
    assert rc == 0
    known = _known_variables(agent_help)
    assert "GPUFL_ADMIN_TOKEN" in known and "GPUFL_AGENT_BROKERS" in known and "GPUFL_LOG_DIR" in known
    used = used_variables()
    assert used, "no GPUFL_* variables found: the parsing is broken"
    unknown = [f"{where}: {name}" for where, name in used if name not in known]
    assert unknown == []


# ------------------------------------------------------------------------------------ scripts/install.sh


@pytest.mark.parametrize("args", [["--no-such-option"], ["--extras", "server;rm -rf /"], ["--venv"]])
def test_install_script_refuses_bad_options(args: list[str], tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh"), "--venv", str(tmp_path / "venv"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("install.sh: ")
    assert not (tmp_path / "venv").exists()  # refused before doing anything

"""``gpufl demo``: the whole stack on one machine, on the embedded store.

Starts the backend (DuckDB in ``--data-dir``), makes an ingest key and a read key, produces real sessions
into a log folder — a PyTorch training run under gpufl where a GPU is present, otherwise the committed H100
captures replayed through the client writer with fresh ids and timestamps re-based to now (on a re-run
with the same ``--data-dir``, the same ids and times again: the store keeps one copy) — and ships them
with the agent over HTTP. From a source checkout it uses ``examples/``; from an installed wheel, the
captures the wheel carries (``gpufl/_data/captures.zip``, unpacked into the data folder) and no live run. Prints the dashboard URL and the read token, then runs until Ctrl-C, when it
stops everything it started. Problems get one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parents[1]  # the checkout, when this runs from one (src/gpufl/demo.py)
CAPTURES = ROOT / "examples" / "captures"
WORKLOAD = ROOT / "examples" / "workloads" / "gpt_train.py"
PACKED_CAPTURES = PACKAGE / "_data" / "captures.zip"  # what scripts/build_wheels.sh puts in the wheel
UI_INDEX = PACKAGE / "backend" / "static" / "index.html"


def in_checkout() -> bool:
    return (ROOT / "pyproject.toml").is_file() and CAPTURES.is_dir()


def default_data_dir() -> Path:
    """The checkout's .work/demo; for an installed package, a per-user data folder (not site-packages)."""
    if in_checkout():
        return ROOT / ".work" / "demo"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "gpufl" / "demo"


def captures_dir(data: Path) -> Path:
    """The committed GPU captures: examples/captures in a checkout, else the wheel's copy, unpacked once."""
    if in_checkout():
        return CAPTURES
    if not PACKED_CAPTURES.is_file():
        raise DemoError(
            f"no captures: neither {CAPTURES} (a source checkout) nor {PACKED_CAPTURES} (a wheel)"
        )
    dest = data / "captures"
    done = dest / ".unpacked"
    # Compared by size and time: a newer wheel's captures replace an older one's.
    stamp = f"{PACKED_CAPTURES.stat().st_size} {PACKED_CAPTURES.stat().st_mtime_ns}"
    if not (done.is_file() and done.read_text() == stamp):
        shutil.rmtree(dest, ignore_errors=True)
        try:
            with zipfile.ZipFile(PACKED_CAPTURES) as z:
                z.extractall(dest)
            done.write_text(stamp)
        except (OSError, zipfile.BadZipFile) as e:
            raise DemoError(f"could not unpack {PACKED_CAPTURES} into {dest}: {e}") from None
    return dest


class DemoError(Exception):
    pass


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"the backend exited with code {proc.returncode} (see its output above)")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DemoError(f"the backend did not answer on {url} within {timeout:.0f} s")


def _key(url: str, admin: str, role: str, name: str) -> str:
    r = httpx.post(
        f"{url}/api/v1/keys", json={"role": role, "name": name}, headers={"Authorization": f"Bearer {admin}"}
    )
    if r.status_code != 200 and r.status_code != 201:
        raise DemoError(f"could not create a {role} key: HTTP {r.status_code} {r.text[:200]}")
    return str(r.json()["token"])


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


@dataclass
class Produced:
    """One session the demo wrote: what to print, and for a replayed capture its id."""

    label: str
    session_id: str | None = None


def _capture_start(folder: Path) -> Any:
    """The session_start at the head of the capture's device stream."""
    from gpufl.contract import events

    for path in sorted(folder.glob("*.device.*.log")):
        with path.open("rb") as f:
            first = events.decode(f.readline().rstrip(b"\n"))
        if isinstance(first, events.SessionStart):
            return first
    raise DemoError(f"{folder}: no session_start at the head of its device stream")


def _capture_app(folder: Path) -> str:
    """The app name the session records (and the UI shows), which is not always the capture's folder name."""
    return str(_capture_start(folder).app)


def _capture_gpu(folder: Path) -> str:
    """The GPU the capture was recorded on (its first device's name; captures come from H100s and H200s)."""
    devices = _capture_start(folder).devices
    return str(devices[0].name) if devices and devices[0].name else "GPU"


def _read_ledger(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def produce_sessions(log_dir: Path, gpu: bool, ledger: Path, captures: Path) -> list[Produced]:
    """Real sessions into ``log_dir``: a live GPU run, or the committed GPU captures replayed.

    A replayed capture keeps, in ``ledger``, the session id and start time it got the first time in this
    data folder; a re-run replays it with the same ones, so it writes the same records again and the store
    (which de-duplicates by session, stream and seq) keeps one copy instead of piling up duplicates. A live
    GPU run is a new run each time, hence a new session."""
    if gpu:
        subprocess.run(
            [sys.executable, str(WORKLOAD), "--steps", "30", "--warmup", "3", "--log-dir", str(log_dir)],
            check=True,
        )
        return [Produced("gpt_train (live on this GPU; each demo run adds a new session)")]
    from gpufl.client.replay import replay

    made = []
    folders = sorted(p for p in captures.iterdir() if p.is_dir()) if captures.is_dir() else []
    if not folders:
        raise DemoError(f"no captures found under {captures}")
    known = _read_ledger(ledger)
    now = time.time_ns()
    for i, folder in enumerate(folders):
        prior = known.get(folder.name)
        if (
            isinstance(prior, dict)
            and isinstance(prior.get("session_id"), str)
            and isinstance(prior.get("start_ns"), int)
        ):
            sid, start = prior["session_id"], prior["start_ns"]
        else:
            # Spaced a minute apart, oldest first, so "newest first" has something to order.
            sid, start = None, now - (len(folders) - i) * 60_000_000_000
        sid = replay(folder, log_dir, start_ns=start, session_id=sid)
        known[folder.name] = {"session_id": sid, "start_ns": start}
        made.append(
            Produced(
                f"{_capture_app(folder)} ({_capture_gpu(folder)} capture {folder.name}, replayed as {sid})",
                sid,
            )
        )
    ledger.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
    return made


def _in_store(url: str, token: str, sid: str) -> bool:
    r = httpx.get(f"{url}/api/v1/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
    return r.status_code == 200


def main(argv: list[str] | None = None) -> int:
    # The module docstring is reStructuredText-ish (``code``); --help shows it as plain text.
    ap = argparse.ArgumentParser(
        prog="gpufl demo",
        description=__doc__.replace("``", "") if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GPUFL_PORT", "8080")),
        help="port of the backend and dashboard (env GPUFL_PORT; default: %(default)s)",
    )
    ap.add_argument(
        "--host", default="127.0.0.1", help="address the backend listens on (default: %(default)s)"
    )
    ap.add_argument(
        "--data-dir",
        default=str(default_data_dir()),
        help="folder for the store and the demo's logs (default: %(default)s)",
    )
    ap.add_argument("--replay", action="store_true", help="replay the H100 captures even where a GPU exists")
    ap.add_argument(
        "--exit-after-load", action="store_true", help="stop once the sessions are loaded (tests)"
    )
    args = ap.parse_args(argv)
    procs: list[subprocess.Popen[bytes]] = []

    def stop_all(*_: object) -> None:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    # Explicit: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        data = Path(args.data_dir)
        try:
            data.mkdir(parents=True, exist_ok=True)
            probe = data / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise DemoError(f"cannot write to {data}: {e.strerror}") from None
        if not _port_free(args.host, args.port):
            raise DemoError(f"port {args.port} is in use: pass --port N (or set GPUFL_PORT)")
        if not UI_INDEX.exists():
            print(
                "gpufl demo: the UI is not built (needs Node.js: `cd frontend && npm ci && npm run build`;"
                " the wheels carry it built); the API still runs",
                file=sys.stderr,
            )
        admin = os.environ.get("GPUFL_ADMIN_TOKEN") or secrets.token_urlsafe(24)
        url = f"http://{args.host}:{args.port}"
        env = dict(os.environ, GPUFL_ADMIN_TOKEN=admin)
        bin_dir = Path(sys.executable).parent
        backend = subprocess.Popen(
            [
                str(bin_dir / "gpufl-backend"),
                "--host",
                args.host,
                "--port",
                str(args.port),
                "--data-dir",
                str(data / "store"),
                "--log-level",
                "warning",
            ],
            env=env,
        )
        procs.append(backend)
        _wait_healthy(url, backend)
        ingest = _key(url, admin, "ingest", "demo-agent")
        read = _key(url, admin, "read", "demo-ui")
        log_dir = data / "logs" / time.strftime("%Y%m%d-%H%M%S")
        log_dir.mkdir(parents=True)
        live = _has_gpu() and not args.replay
        if live and not WORKLOAD.is_file():
            print(
                f"gpufl demo: a GPU is here, but the live workload ({WORKLOAD.name}) comes with a source"
                " checkout only; replaying the H100 captures instead",
                file=sys.stderr,
            )
            live = False
        sessions = produce_sessions(
            log_dir, gpu=live, ledger=data / "replayed.json", captures=captures_dir(data)
        )
        # Asked before the agent ships anything: which of them an earlier run loaded into this store already.
        again = {p.session_id for p in sessions if p.session_id and _in_store(url, read, p.session_id)}
        agent_cmd = [
            str(bin_dir / "gpufl-agent"),
            "--folder",
            str(log_dir),
            "--type",
            "http",
            "--url",
            f"{url}/api/v1/events/",
            "--log-level",
            "warning",
        ]
        # The token goes in the agent's environment: its arguments are visible to every local user (ps).
        agent_env = dict(env, GPUFL_AGENT_TOKEN=ingest)
        if args.exit_after_load:
            done = subprocess.run([*agent_cmd, "--exit-when-idle"], env=agent_env)
            if done.returncode != 0:
                raise DemoError(f"the agent exited with code {done.returncode}")
        else:
            procs.append(subprocess.Popen(agent_cmd, env=agent_env))
        print("\nGPU Flight demo is running.")
        for p in sessions:
            note = (
                " — loaded by an earlier demo run; the store keeps one copy" if p.session_id in again else ""
            )
            print(f"  session: {p.label}{note}")
        print(f"  dashboard:   {url}/")
        print(f"  read token:  {read}")
        print(
            f"  admin token: {admin if 'GPUFL_ADMIN_TOKEN' not in os.environ else '(from GPUFL_ADMIN_TOKEN)'}"
        )
        print("Press Ctrl-C to stop.", flush=True)
        if args.exit_after_load:
            return 0
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = next(p for p in procs if p.poll() is not None)
        raise DemoError(f"{Path(str(dead.args[0])).name} exited with code {dead.returncode}")  # type: ignore[index]
    except KeyboardInterrupt:
        print("\nstopping…", file=sys.stderr)
        return 0
    except DemoError as e:
        print(f"gpufl demo: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"gpufl demo: the workload failed with code {e.returncode}", file=sys.stderr)
        return 1
    finally:
        stop_all()

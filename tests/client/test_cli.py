from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gpufl.contract import events

ROOT = Path(__file__).resolve().parents[2]


def gpufl(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpufl", *args], capture_output=True, text=True, timeout=120, **kw
    )  # type: ignore[call-overload]


def test_run_profiles_an_unmodified_script_and_keeps_its_exit_code(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import sys\nprint('hello from user code')\nsys.exit(3)\n")
    logs = tmp_path / "logs"
    r = gpufl(
        "run",
        "--log-dir",
        str(logs),
        "--app-name",
        "unmodified",
        "--engines",
        "system",
        "--",
        sys.executable,
        str(script),
    )
    assert r.returncode == 3, r.stderr
    assert "hello from user code" in r.stdout
    segs = sorted(logs.glob("*.log"))
    assert {events.parse_segment_name(p.name).stream for p in segs} == set(events.STREAMS)  # type: ignore[union-attr]
    start = events.decode(next(p for p in segs if ".device." in p.name).read_bytes().splitlines()[0])
    assert isinstance(start, events.SessionStart) and start.app == "unmodified"
    assert start.argv[0] == str(script)


def test_run_reports_a_missing_command(tmp_path: Path) -> None:
    r = gpufl("run", "--log-dir", str(tmp_path), "--", "no-such-program-xyz")
    assert r.returncode == 127 and "command not found" in r.stderr


def test_summary_of_a_capture() -> None:
    r = gpufl("summary", str(ROOT / "examples/captures/memcpy_heavy"))
    assert r.returncode == 0, r.stderr
    assert "HtoD Pinned→Device" in r.stdout and "HtoD Pageable→Device" in r.stdout
    assert "pageable" in r.stdout and "pinned" in r.stdout  # scopes
    assert "NVIDIA H100 80GB HBM3" in r.stdout


def test_summary_of_nothing_says_so(tmp_path: Path) -> None:
    r = gpufl("summary", str(tmp_path))
    assert r.returncode == 1 and "no gpufl segments" in r.stderr


def test_schema_command_prints_the_contract() -> None:
    r = gpufl("schema")
    assert r.returncode == 0 and '"kernel"' in r.stdout

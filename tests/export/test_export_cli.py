"""``gpufl export``: a log folder to a file, the session chosen when the folder holds several."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

CAPTURES = Path(__file__).resolve().parents[2] / "examples" / "captures"


def _gpufl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpufl", "export", *args], capture_output=True, text=True, timeout=120
    )


def test_a_folder_with_one_session_exports_to_perfetto(tmp_path: Path) -> None:
    out = tmp_path / "t.pftrace"
    r = _gpufl(str(CAPTURES / "memcpy_heavy"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "20 kernels, 100 copies" in r.stderr
    trace = pb.Trace()
    trace.ParseFromString(out.read_bytes())
    assert len(trace.packet) > 100


def test_several_sessions_need_a_choice_and_a_segment_file_names_its_own(tmp_path: Path) -> None:
    for cap in ("memcpy_heavy", "multistream"):
        for f in (CAPTURES / cap).glob("*.log"):
            shutil.copy(f, tmp_path)
    out = tmp_path / "t.json"
    r = _gpufl(str(tmp_path), "--format", "chrome-json", "-o", str(out))
    assert r.returncode != 0 and "pick one with --session" in r.stderr and not out.exists()
    seg = next(tmp_path.glob("*.multistream.*.device.000000.log"))
    r = _gpufl(str(seg), "--format", "chrome-json", "-o", str(out))
    assert r.returncode == 0 and "406 kernels" in r.stderr, r.stderr
    r = _gpufl(str(tmp_path), "--session", "nosuchsession", "-o", str(out))
    assert r.returncode != 0 and "no session nosuchsession" in r.stderr


def test_a_corrupt_line_fails_the_export_naming_the_file_and_line(tmp_path: Path) -> None:
    for f in (CAPTURES / "memcpy_heavy").glob("*.log"):
        shutil.copy(f, tmp_path)
    seg = next(tmp_path.glob("*.device.*.log"))
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[3] = b'{"type":"kernel","garbage":1}\n'
    seg.write_bytes(b"".join(lines))
    r = _gpufl(str(tmp_path), "-o", str(tmp_path / "t.pftrace"))
    assert r.returncode == 1 and f"{seg}:4:" in r.stderr, r.stderr

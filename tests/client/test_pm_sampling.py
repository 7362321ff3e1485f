"""The pm_sampling engine: a probe in a child process and one notice. No GPU here, so the real child answers
that PM sampling is unavailable and why; the session goes on (tests/gpu runs it where CUPTI is)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import gpufl
from gpufl.client.engines import pm_sampling
from gpufl.contract import events


def notices(log_dir: Path) -> list[events.Notice]:
    out = []
    for seg in sorted(log_dir.glob("*.log")):
        for line in seg.read_bytes().splitlines():
            rec = events.decode(line)
            if isinstance(rec, events.Notice):
                out.append(rec)
    return out


def test_the_probe_child_answers_why_pm_sampling_cannot_run_here() -> None:
    answer = pm_sampling.run_probe(timeout_s=60)
    assert answer["ok"] is False
    assert answer["reason"]  # cupti-python missing, no driver or no GPU here — named, never empty


def test_a_session_asking_for_pm_sampling_gets_one_notice_and_keeps_recording(tmp_path: Path) -> None:
    gpufl.init(app_name="pm", log_dir=str(tmp_path), engines="system,pm_sampling", system_interval_s=0.1)
    try:
        deadline = time.monotonic() + 60
        session = gpufl.active_session()
        assert session is not None
        while time.monotonic() < deadline and not any(
            n.code.startswith("pm_sampling") for n in session.notices
        ):
            time.sleep(0.1)
        with gpufl.scope("after"):
            pass
    finally:
        gpufl.shutdown()
    mine = [n for n in notices(tmp_path) if n.code.startswith("pm_sampling")]
    assert len(mine) == 1, mine
    assert mine[0].code == "pm_sampling_unavailable"
    assert "not available here: " in mine[0].message and mine[0].engine == "pm_sampling"
    samples = [
        line
        for seg in tmp_path.glob("*.system.*.log")
        for line in seg.read_bytes().splitlines()
        if b'"system_sample"' in line
    ]
    assert samples  # the system engine went on


def test_the_child_never_inherits_what_would_start_gpufl_in_it() -> None:
    env = pm_sampling.probe_environment(
        {
            "GPUFL_RUN_ACTIVE": "1",
            "GPUFL_ENGINES": "pm_sampling",
            "CUDA_INJECTION64_PATH": "/x.so",
            "PATH": "/bin",
        }
    )
    assert env == {"PATH": "/bin"}


def test_a_child_that_hangs_is_killed_and_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        pm_sampling.subprocess,
        "run",
        _run_with(["-c", "import time; time.sleep(30)"]),
    )
    t0 = time.monotonic()
    answer = pm_sampling.run_probe(timeout_s=1)
    assert time.monotonic() - t0 < 10
    assert answer == {"ok": False, "reason": "the probe did not answer within 1 s (killed)"}


def test_a_child_that_dies_is_reported_with_its_last_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        pm_sampling.subprocess, "run", _run_with(["-c", "import sys; sys.exit('libcupti said no')"])
    )
    answer = pm_sampling.run_probe(timeout_s=30)
    assert answer == {"ok": False, "reason": "the probe exited with code 1 (libcupti said no)"}


def test_the_notice_says_what_the_probe_found() -> None:
    code, msg, level = pm_sampling.notice_for({"ok": True, "samples": 4980, "chip": "GH100"})
    assert (code, level) == ("pm_sampling_not_recorded", "info")
    assert "4980 samples" in msg and "GH100" in msg
    code, msg, level = pm_sampling.notice_for(
        {"ok": False, "reason": "enable() failed: cuptiError: ERROR_UNKNOWN"}
    )
    assert (code, level) == ("pm_sampling_unavailable", "warning")
    assert "ERROR_UNKNOWN" in msg


def _run_with(args: list[str]):  # type: ignore[no-untyped-def]
    """subprocess.run, running a different child program (a real process: it really hangs or dies)."""
    import subprocess

    real = subprocess.run

    def run(cmd, **kw):  # type: ignore[no-untyped-def]
        return real([cmd[0], *args], **kw)

    return run

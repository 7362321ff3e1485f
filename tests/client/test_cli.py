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


def test_run_always_on_runs_the_program_in_the_windows_preset(tmp_path: Path) -> None:
    """``gpufl run --always-on``: the program's session traces 2 s of every minute; its first window opens at
    start and closes (``shutdown``) when the program ends early; a bad ``--capture`` is refused up front."""
    script = tmp_path / "serve.py"
    script.write_text("import gpufl\nprint(gpufl.active_session().options.capture)\n")
    logs = tmp_path / "logs"
    r = gpufl(
        "run", "--log-dir", str(logs), "--engines", "system", "--always-on", "--", sys.executable, str(script)
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "windows:2s/60s"
    (dev,) = logs.glob("*.device.*.log")
    recs = [events.decode(line) for line in dev.read_bytes().splitlines()]
    assert isinstance(recs[0], events.SessionStart) and recs[0].options["capture"] == "windows:2s/60s"
    (w,) = [x for x in recs if isinstance(x, events.CaptureWindow)]
    assert (w.trigger.mode, w.trigger.kind, w.trigger.seconds, w.ended) == (
        "windows",
        "schedule",
        2.0,
        "shutdown",
    )
    bad = gpufl("run", "--log-dir", str(logs), "--capture", "sometimes", "--", sys.executable, str(script))
    assert bad.returncode == 2 and "want continuous" in bad.stderr


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


GPT = ROOT / "examples/captures/gpt_train"


def test_summary_of_a_missing_path_names_that_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    r = gpufl("summary", str(missing), cwd=tmp_path)
    assert r.returncode == 2 and str(missing) in r.stderr and "gpufl-logs" not in r.stderr


def test_summary_of_one_complete_segment_is_not_cut_short() -> None:
    seg = next(GPT.glob("*.scope.*.log"))
    r = gpufl("summary", str(seg))
    assert r.returncode == 0, r.stderr
    assert "streams given: scope" in r.stdout and "cut short" not in r.stdout


def test_summary_says_which_stream_lacks_its_session_end(tmp_path: Path) -> None:
    for p in GPT.glob("*.log"):
        lines = p.read_bytes().splitlines(keepends=True)
        if ".device." in p.name:
            lines = [ln for ln in lines if b'"session_end"' not in ln]
        (tmp_path / p.name).write_bytes(b"".join(lines))
    r = gpufl("summary", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "no session_end in stream device:" in r.stdout and "cut short" in r.stdout


def test_summary_scope_kernel_time_matches_the_api_definition() -> None:
    # step/backward: 32.364 ms of kernels (as the API and UI say); copies and memsets apart, labelled.
    r = gpufl("summary", str(GPT))
    row = next(ln for ln in r.stdout.splitlines() if ln.endswith("  step/backward"))
    assert row.split()[2:4] == ["32.364", "1.019"]
    assert "kernel ms" in r.stdout and "copy+memset ms" in r.stdout


def test_summary_statistics_are_exact() -> None:
    import json
    import statistics

    r = gpufl("summary", str(GPT), "--format", "json", "--top", "0")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (sess,) = doc["sessions"]
    recs = [events.decode(ln) for p in GPT.glob("*.device.*.log") for ln in p.read_bytes().splitlines()]
    launches = {r.id: r.launch.name for r in recs if isinstance(r, events.DictEntry) and r.launch}
    durs: dict[str, list[int]] = {}
    for k in recs:
        if isinstance(k, events.Kernel):
            durs.setdefault(launches[k.launch_id], []).append(k.end_ns - k.start_ns)
    rows = sess["tables"]["kernels"]["rows"]
    assert len(rows) == len(durs)
    for row in rows:
        d = durs[row["name"]]
        assert (row["count"], row["total_ns"], row["min_ns"], row["max_ns"]) == (
            len(d),
            sum(d),
            min(d),
            max(d),
        )
        assert row["median_ns"] == statistics.median(d)
        assert row["stddev_ns"] == (statistics.stdev(d) if len(d) > 1 else 0)
    assert sum(r["memsets"] for r in sess["tables"]["streams"]["rows"]) == 568
    assert sess["tables"]["memsets"]["rows"][0]["count"] == 568
    assert sess["tables"]["launch_api"]["rows"][0]["name"] == "(all kernels)"
    assert set(doc["sessions"][0]["tables"]) == {
        "kernels",
        "launch_api",
        "copies",
        "memsets",
        "streams",
        "scopes",
        "utilisation",
        "insights",
    }


def test_summary_per_stream_table_of_multistream() -> None:
    import json

    r = gpufl(
        "summary", str(ROOT / "examples/captures/multistream"), "--format", "json", "--table", "streams"
    )
    (sess,) = json.loads(r.stdout)["sessions"]
    rows = sess["tables"]["streams"]["rows"]
    assert len({row["cuda_stream"] for row in rows}) > 1
    assert all(row["busy_ns"] > 0 for row in rows if row["kernels"])


def test_summary_kernel_names_stay_distinct() -> None:
    # gpt_train has eight multi_tensor_apply_kernel<...> names sharing a ~70-character prefix.
    r = gpufl("summary", str(GPT), "--top", "0")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Kernels:")) + 2
    end = next(i for i, ln in enumerate(lines) if ln.startswith("Launch API"))
    shown = [ln.split("  ")[-1] for ln in lines[start:end]]
    assert len(shown) == len(set(shown)) and sum("::multi_ten" in s for s in shown) == 8
    assert all(len(s) <= 100 for s in shown)
    wide = gpufl("summary", str(GPT), "--top", "0", "--wide")
    assert (
        "std::multiplies<float>, float>(at::native::(anonymous namespace)::TensorListMetadata<3>"
        in wide.stdout
    )


def test_shorten_names_never_merges_distinct_names() -> None:
    from gpufl.client.summary import shorten_names

    names = ["a" * 60 + x + "b" * 60 for x in "xyz"] + ["a" * 200, "a" * 199 + "c", "short"]
    out = shorten_names(names, 40)
    assert len(set(out.values())) == len(names)
    assert out["short"] == "short"


def test_summary_csv_sections_and_single_table() -> None:
    import csv
    import io

    r = gpufl("summary", str(GPT), "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("# table:")] == [
        f"# table: {t}"
        for t in (
            "kernels",
            "launch_api",
            "copies",
            "memsets",
            "streams",
            "scopes",
            "utilisation",
            "insights",
        )
    ]
    one = gpufl("summary", str(GPT), "--format", "csv", "--table", "scopes")
    rows = list(csv.DictReader(io.StringIO(one.stdout)))
    back = next(row for row in rows if row["path"] == "step/backward")
    assert round(int(back["kernel_ns"]) / 1e6, 3) == 32.364


HELP_COMMANDS = [
    (),
    ("schema",),
    ("demo",),
    ("run",),
    ("summary",),
    ("export",),
    ("replay",),
    ("agent",),
    ("backend",),
    ("backend", "keys"),
    ("backend", "keys", "create"),
    ("backend", "keys", "list"),
    ("backend", "keys", "revoke"),
    ("backend", "prune"),
]


def undocumented_options(text: str) -> list[str]:
    """Option lines of an argparse --help with no help text (neither on the line nor wrapped below it)."""
    lines = text.splitlines()
    bad, section = [], ""
    for i, line in enumerate(lines):
        if line and not line.startswith(" "):
            section = line
            continue
        if not section.startswith("options") or not line.startswith("  -"):
            continue
        parts = line.strip().split("  ", 1)
        follows = lines[i + 1] if i + 1 < len(lines) else ""
        wrapped = follows.startswith("    ") and not follows.strip().startswith("-")
        if (len(parts) < 2 or not parts[1].strip()) and not wrapped:
            bad.append(parts[0])
    return bad


def test_undocumented_options_finds_a_bare_flag() -> None:
    assert undocumented_options(
        "options:\n  -h, --help  show help\n  --port PORT\n  --x X\n      text\n"
    ) == ["--port PORT"]


def test_every_help_text_describes_every_option() -> None:
    problems = {}
    for cmd in HELP_COMMANDS:
        r = gpufl(*cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        bad = undocumented_options(r.stdout) + (["raw ``markup``"] if "``" in r.stdout else [])
        if bad:
            problems[" ".join(cmd)] = bad
    assert not problems


def test_keys_create_help_lists_only_its_own_flags() -> None:
    out = gpufl("backend", "keys", "create", "--help").stdout
    assert "--role" in out and "--data-dir" in out
    assert "--kafka-brokers" not in out and "--rate-limit-ingest" not in out and "--max-body-bytes" not in out


def test_schema_into_a_closed_pipe_exits_quietly() -> None:
    # `gpufl schema | head -1`: the reader is gone. Closing our end before gpufl writes anything makes the
    # broken pipe certain (the schema would fit in a pipe's buffer, so reading first would race).
    p = subprocess.Popen(
        [sys.executable, "-m", "gpufl", "schema"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def _python_without_gpufl(tmp_path: Path) -> Path:
    """A `python3` that cannot import gpufl on any machine: this interpreter with -I -S (no PYTHONPATH, no
    site-packages), as a system Python outside gpufl's venv would be."""
    exe = tmp_path / "bin" / "python3"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    exe.chmod(0o755)
    return exe


def test_run_refuses_a_python_that_cannot_import_gpufl(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('user code ran')\n")
    py = _python_without_gpufl(tmp_path)
    r = gpufl("run", "--log-dir", str(tmp_path / "logs"), "--", str(py), str(script))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert (
        "cannot import gpufl" in r.stderr and sys.executable in r.stderr and "--allow-unprofiled" in r.stderr
    )
    assert "user code ran" not in r.stdout
    ok = gpufl("run", "--allow-unprofiled", "--log-dir", str(tmp_path / "logs"), "--", str(py), str(script))
    assert ok.returncode == 0 and "user code ran" in ok.stdout and "cannot import gpufl" in ok.stderr


def test_run_checks_a_scripts_shebang_interpreter(tmp_path: Path) -> None:
    py = _python_without_gpufl(tmp_path)
    script = tmp_path / "train"
    script.write_text(f"#!{py}\nprint('user code ran')\n")
    script.chmod(0o755)
    r = gpufl("run", "--log-dir", str(tmp_path / "logs"), "--", str(script))
    assert r.returncode == 2 and "cannot import gpufl" in r.stderr, (r.returncode, r.stderr)


def test_summary_has_the_insights_section_with_the_pageable_bytes_of_the_raw_lines() -> None:
    import json

    folder = ROOT / "examples/captures/memcpy_heavy"
    raw = [json.loads(ln) for f in folder.glob("*.device.*.log") for ln in f.read_text().splitlines() if ln]
    pageable = [r for r in raw if r["type"] == "memcpy" and "Pageable" in (r["src_kind"], r["dst_kind"])]
    r = gpufl("summary", str(folder), "--format", "json", "--table", "insights")
    assert r.returncode == 0, r.stderr
    (doc,) = json.loads(r.stdout)["sessions"]
    rows = {row["rule"]: row for row in doc["tables"]["insights"]["rows"]}
    assert rows["pageable_copy"]["severity"] == "warning"
    assert f"pageable bytes: {sum(c['bytes'] for c in pageable):,} B" in rows["pageable_copy"]["evidence"]
    assert "launch_bound" not in rows and "tiny_kernels" not in rows
    text = gpufl("summary", str(folder)).stdout
    assert "Insights: 2 found" in text and "[warning] 40 copies" in text
    assert (
        "not checked: " in text
        and "warp_divergence (no SASS-metric samples" in text
        and "stall_reason (no PC-sampling samples" in text
        and "synchronisation (the session was recorded with contract v2" in text
    )

"""The documentation's commands work: every bash/sh/shell/console block of README.md and docs/*.md runs and
succeeds, except blocks marked ``<!-- doc-test: skip (reason) -->`` (listed with their reasons at the end of
the test run).

Each block runs with ``bash -euo pipefail`` in a fresh directory that mirrors the repository (a symlink
per top-level entry, so ``examples/...`` and ``scripts/...`` resolve and new files land in the temporary
directory), with this environment's programs first on PATH, no inherited GPUFL_* variables, GPUFL_PORT set
to a free port (so ``gpufl-backend keys`` never reaches another backend), a time limit, and its whole
process group killed afterwards (nothing a block starts outlives it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from . import clicheck
from .clicheck import BIN, ROOT
from .doctest_blocks import Block, MarkerError, extract

TIMEOUT_S = 180
# Running these from a test would recurse into CI or never return: they must carry a skip marker.
_NEVER_RUN = ("scripts/test.sh", "scripts/demo.sh", ".ci/run")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def command_blocks() -> list[Block]:
    out: list[Block] = []
    for path in doc_files():
        try:
            out += [b for b in extract(path) if b.runnable]
        except MarkerError:
            continue  # reported by test_markers_are_well_formed
    return out


SKIPPED: list[Block] = []


def _id(b: Block) -> str:
    return f"{b.path.relative_to(ROOT)}:{b.line}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mirror(tmp: Path) -> Path:
    work = tmp / "repo"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != ".git":
            (work / entry.name).symlink_to(entry)
    return work


def run_block(block: Block, tmp: Path) -> subprocess.CompletedProcess[str]:
    work = _mirror(tmp)
    (tmp / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFL_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(tmp / "home"),
        TMPDIR=str(tmp),
        GPUFL_PORT=str(_free_port()),
    )
    log = tmp / "output.txt"
    with open(log, "w") as out:
        # Output to a file, not a pipe: a background process still holding a pipe would stall the read.
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", block.script()],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=TIMEOUT_S)
            note = ""
        except subprocess.TimeoutExpired:
            rc, note = -9, f"\n[timed out after {TIMEOUT_S} s]"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever the block left running in the background
            except ProcessLookupError:
                pass
            proc.wait()
    return subprocess.CompletedProcess(proc.args, rc, log.read_text(errors="replace") + note)


def test_markers_are_well_formed() -> None:
    for path in doc_files():
        extract(path)  # raises MarkerError


def test_docs_have_command_blocks() -> None:
    blocks = command_blocks()
    assert any(b.skip is None for b in blocks), "no runnable command block found: the extraction is broken"
    assert any(b.path.name == "README.md" for b in blocks)


@pytest.mark.parametrize("block", command_blocks(), ids=_id)
def test_command_block(block: Block, tmp_path: Path) -> None:
    if block.skip is not None:
        SKIPPED.append(block)
        pytest.skip(f"doc-test: skip ({block.skip})")
    assert not any(s in block.script() for s in _NEVER_RUN), (
        f"{_id(block)} runs a long-running script: put <!-- doc-test: skip (reason) --> right before it"
    )
    res = run_block(block, tmp_path)
    assert res.returncode == 0, (
        f"{_id(block)} failed with exit code {res.returncode}:\n{block.script()}\n---\n{res.stdout}"
    )


def test_skipped_blocks_use_real_commands_and_flags() -> None:
    """A block that cannot run here still names only gpufl subcommands and flags that exist."""
    problems: list[str] = []
    for b in command_blocks():
        if b.skip is not None:
            for argv in clicheck.shell_commands(b.script()):
                if argv[0] in clicheck.console_scripts():
                    problems += clicheck.problems(argv, _id(b))
    assert problems == []


# ------------------------------------------------------------------------------- the machinery itself


def test_extract_markers_and_console(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    text = (
        "intro\n\n<!-- doc-test: skip (needs a GPU) -->\n```bash\nnvidia-smi\n```\n\n"
        "```console\n$ echo one \\\n  two\none two\n$ true\n```\n\n```python\nprint(1)\n```\n"
    )
    blocks = extract(md, text)
    assert [(b.lang, b.skip, b.line) for b in blocks] == [
        ("bash", "needs a GPU", 4),
        ("console", None, 8),
        ("python", None, 15),
    ]
    assert blocks[1].script() == "echo one \\\n  two\ntrue\n"
    assert not blocks[2].runnable


@pytest.mark.parametrize(
    "text",
    [
        "<!-- doc-test: skip -->\n```bash\nx\n```\n",  # no reason
        "<!-- doc-test: run (x) -->\n```bash\nx\n```\n",  # unknown verb
        "<!-- doc-test: skip (x) -->\n\nsome text\n```bash\nx\n```\n",  # not right before the block
        "<!-- doc-test: skip (x) -->\n```python\nx\n```\n",  # not a command block
        "<!-- doc-test: skip (x) -->\n",  # marks nothing
    ],
)
def test_bad_markers_are_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(MarkerError):
        extract(tmp_path / "x.md", text)


def test_a_failing_block_fails_and_leaves_nothing_running(tmp_path: Path) -> None:
    block = Block(tmp_path / "x.md", 1, "bash", "sleep 300 &\necho $! > pid\nfalse\necho unreachable\n", None)
    res = run_block(block, tmp_path)
    assert res.returncode != 0 and "unreachable" not in res.stdout
    pid = int((tmp_path / "repo" / "pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:  # SIGKILL is sent; give the kernel a moment
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"  # a zombie is dead, only not reaped yet
    except FileNotFoundError:
        return False

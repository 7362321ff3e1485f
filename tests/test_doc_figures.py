"""Figures the docs state are held to the code and the committed captures, so they cannot drift again
(issue #25: operations.md said schema version 1 and one migration, the kernel-line size was a stale
"median" where the bench computes a mean, api.md put every endpoint under /api/v1)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from gpufl.backend.app import API_PREFIX, create_app
from gpufl.backend.config import Settings
from gpufl.backend.store import open_store
from gpufl.backend.store.migrations import MIGRATIONS
from gpufl.contract import events

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GPT_CAPTURE = ROOT / "examples" / "captures" / "gpt_train"


def doc(name: str) -> str:
    # Markdown wraps sentences: compare on single spaces.
    return re.sub(r"\s+", " ", (DOCS / name).read_text())


def one(pattern: str, text: str) -> re.Match[str]:
    found = list(re.finditer(pattern, text))
    assert len(found) == 1, f"expected one match of {pattern!r}, found {len(found)}"
    return found[0]


def kernel_line_sizes() -> tuple[float, float]:
    """Mean bytes per kernel line of the committed GPT capture (with its newline), raw and gzip'd: what
    bench/client_writer.py's capture_bytes measures."""
    lines = [
        line
        for p in GPT_CAPTURE.glob("*.device.*.log")
        for line in p.read_bytes().splitlines()
        if line.startswith(b'{"type":"kernel"')
    ]
    assert len(lines) > 1000
    raw = b"\n".join(lines) + b"\n"
    return len(raw) / len(lines), len(gzip.compress(raw, 6)) / len(lines)


def test_log_schema_version_in_docs_is_the_contracts() -> None:
    v = events.SCHEMA_VERSION
    assert int(one(r"`schema_version` in `session_start`; today (\d+)", doc("operations.md"))[1]) == v
    assert int(one(r"^# Log format \(event contract, schema version (\d+)\)", doc("log-format.md"))[1]) == v


def test_store_migration_versions_in_docs_are_the_stores() -> None:
    ops = doc("operations.md")
    m = one(r"today versions (\d+) to (\d+)\)", ops)
    assert (int(m[1]), int(m[2])) == (min(MIGRATIONS), max(MIGRATIONS))
    assert sorted(MIGRATIONS) == list(range(1, max(MIGRATIONS) + 1))
    # Every "(migration N)" a doc cites names a version that exists.
    for name in ("operations.md", "architecture.md", "api.md"):
        for n in re.findall(r"\(migration (\d+)\)", doc(name)):
            assert int(n) in MIGRATIONS, f"{name} cites migration {n}"


def test_kernel_line_size_in_docs_is_the_captures_mean() -> None:
    mean, gz = kernel_line_sizes()
    log_format = doc("log-format.md")
    stated = one(
        r"`examples/captures/gpt_train`\): mean \*\*(\d+) B\*\* with its newline, \*\*([\d.]+) B gzip'd",
        log_format,
    )
    # Within 1%: a re-taken capture moves the figure; a doc left behind then fails here.
    assert abs(float(stated[1]) - mean) <= 0.01 * mean, (stated[1], mean)
    assert abs(float(stated[2]) - gz) <= 0.01 * gz, (stated[2], gz)
    arch = one(r"in the committed H100 capture takes (\d+) bytes on average", doc("architecture.md"))
    assert abs(float(arch[1]) - mean) <= 0.01 * mean, (arch[1], mean)
    later = one(
        r"`examples/captures/gpt_train`\) measures (\d+) B and ([\d.]+) B gzip'd", doc("benchmarks.md")
    )
    assert (later[1], later[2]) == (stated[1], stated[2])
    # The figures say "mean" because that is what the bench computes; no doc calls it a median again.
    for name in ("log-format.md", "architecture.md", "benchmarks.md"):
        assert not re.search(r"kernel line[^.|]*median|median[^.|]*kernel line", doc(name)), name


def test_api_doc_names_every_route_outside_the_prefix(tmp_path: Path) -> None:
    store = open_store(f"duckdb:///{tmp_path / 'store.duckdb'}")
    try:
        paths = create_app(Settings(), store, start_jobs=False).openapi()["paths"]
    finally:
        store.close()
    at_root = sorted(p for p in paths if not p.startswith(API_PREFIX + "/"))
    assert "/metrics" in at_root and "/healthz" in at_root  # the documented ones are real
    m = one(r"Endpoints are under `/api/v1` except ([^.]*?), which are at the root", doc("api.md"))
    named = sorted(re.findall(r"`(?:GET|POST|DELETE|PUT) (/[^`]*)`", m[1]))
    assert named == at_root

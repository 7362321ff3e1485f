"""The DuckDB store's own files: batch staging files live in a folder beside the store file (not the system
temp directory) and whatever a killed backend left there is swept when the store opens; the engine's memory
limit is the backend's setting."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from gpufl.backend import cli
from gpufl.backend.config import Settings
from gpufl.backend.ingest import ingest_body
from gpufl.backend.store import open_store
from gpufl.backend.store.duckdb_store import DuckDBStore
from gpufl.contract import events as ev

from .factory import SessionFactory


def _kernels(sid: str, n: int = 200) -> bytes:
    f = SessionFactory(sid)
    return ev.encode_lines([f.kernel(1, i * 1000, 10) for i in range(n)])


def test_batches_are_staged_beside_the_store_not_in_the_temp_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    staged: list[str] = []
    real = DuckDBStore._parse_json

    def spy(self: DuckDBStore, cur: Any, name: str, path: str, columns: Any) -> None:
        staged.append(path)
        assert Path(path).is_file()  # written, and in use by the engine right now
        real(self, cur, name, path, columns)

    monkeypatch.setattr(DuckDBStore, "_parse_json", spy)
    store = open_store(f"duckdb:///{tmp_path / 'data' / 'gpufl.duckdb'}")
    try:
        assert ingest_body(store, "device", _kernels("staged"), None, 50_000).stored == 200
    finally:
        store.close()
    assert len(staged) == 1
    assert Path(staged[0]).parent == tmp_path / "data" / "gpufl.duckdb.staging"
    assert not Path(staged[0]).exists()  # deleted once parsed
    assert list(tmp.iterdir()) == []


def test_staging_files_left_by_a_killed_backend_are_swept_when_the_store_opens(tmp_path: Path) -> None:
    db = tmp_path / "data" / "gpufl.duckdb"
    open_store(f"duckdb:///{db}").close()
    staging = tmp_path / "data" / "gpufl.duckdb.staging"
    stale = staging / "gpufl-batch-k9x2_1q.ndjson"  # what kill -9 mid-batch leaves behind
    stale.write_bytes(_kernels("stale"))
    other = staging / "notes.txt"  # not ours: left alone
    other.write_text("keep")
    store = open_store(f"duckdb:///{db}")
    try:
        assert not stale.exists() and other.exists()
        assert ingest_body(store, "device", _kernels("after"), None, 50_000).stored == 200
        assert sorted(p.name for p in staging.iterdir()) == ["notes.txt"]
    finally:
        store.close()


def test_files_of_earlier_versions_in_the_temp_directory_are_swept_once_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before staging moved beside the store, batches were staged in TMPDIR: an hour-old one there is
    nobody's (a batch file lives for the parse of one batch), a fresh one may be another backend's."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old, fresh = tmp_path / "gpufl-batch-old.ndjson", tmp_path / "gpufl-batch-new.ndjson"
    old.write_bytes(b"{}\n")
    fresh.write_bytes(b"{}\n")
    two_hours_ago = old.stat().st_mtime - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    open_store(f"duckdb:///{tmp_path / 'data' / 'gpufl.duckdb'}").close()
    assert not old.exists() and fresh.exists()


def test_duckdb_memory_limit_comes_from_the_backend_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", duckdb_memory_limit=300 << 20)
    store = cli._open_store(settings)
    try:
        (limit,) = store._one("SELECT current_setting('memory_limit')")
        assert limit in ("300.0 MiB", "314.5 MB"), limit
    finally:
        store.close()
    default = cli._open_store(Settings(data_dir=tmp_path / "data2"))
    try:
        (limit,) = default._one("SELECT current_setting('memory_limit')")
        assert limit in ("512.0 MiB", "536.8 MB"), limit
    finally:
        default.close()

"""The store as one object: every job's class (see ``engine``), assembled over the engine hooks."""

from __future__ import annotations

from gpufl.backend.store.captures import CaptureStore
from gpufl.backend.store.deep import DeepQueries
from gpufl.backend.store.diff import DiffQueries
from gpufl.backend.store.insights import InsightQueries
from gpufl.backend.store.json_ingest import JsonIngestStore
from gpufl.backend.store.keys import KeyStore
from gpufl.backend.store.launches import LaunchQueries
from gpufl.backend.store.ranges import RangeQueries
from gpufl.backend.store.records import RecordQueries
from gpufl.backend.store.scopes import ScopeQueries
from gpufl.backend.store.sessions import SessionStore
from gpufl.backend.store.write import WriteStore


class SqlStore(
    WriteStore,
    JsonIngestStore,
    SessionStore,
    RangeQueries,
    LaunchQueries,
    ScopeQueries,
    InsightQueries,
    DeepQueries,
    RecordQueries,
    DiffQueries,
    KeyStore,
    CaptureStore,
):
    """Shared implementation of every job. Subclasses (the dialects): DuckDBStore, PostgresStore."""

"""Fixtures: a store on each engine (DuckDB file, PostgreSQL schema), an app client, tokens per role.

PostgreSQL and Kafka come from scripts/test.sh via GPUFL_TEST_PG_DSN / GPUFL_TEST_KAFKA_BROKERS. Where
one is missing the tests needing it are skipped on a workstation, and fail in CI (CI=true): CI must run
the whole suite against both engines.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gpufl.backend import auth
from gpufl.backend.app import create_app
from gpufl.backend.config import Settings
from gpufl.backend.store import SqlStore, open_store


def need_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is not set but CI=true: scripts/test.sh must provide it")
        pytest.skip(f"{name} not set (run scripts/test.sh)")
    return value


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return need_env("GPUFL_TEST_PG_DSN")


def _with_search_path(dsn: str, schema: str) -> str:
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A fresh schema per test, so tests start from an empty store and can't see each other's rows."""
    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_search_path(pg_dsn, schema)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'store.duckdb'}"
    dsn: str = request.getfixturevalue("pg_schema")
    return dsn


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    s = open_store(store_url)
    yield s
    s.close()


class Api:
    """A test client plus one token per role (and a revoked one)."""

    def __init__(self, client: TestClient, store: SqlStore, app: FastAPI) -> None:
        self.client = client
        self.app = app
        self.store = store
        self.tokens: dict[str, str] = {}
        for role in auth.Role:
            self.tokens[role.value] = auth.create_key(store, role, f"test-{role.value}")[1]
        rid, self.tokens["revoked"] = auth.create_key(store, auth.Role.admin, "revoked")
        store.revoke_key(rid)

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def get(self, path: str, role: str = "read", **kw: Any) -> Any:
        return self.client.get(f"/api/v1{path}", headers=self.h(role), **kw)

    def post_events(self, stream: str, body: bytes, role: str = "ingest", **headers: str) -> Any:
        return self.client.post(
            f"/api/v1/events/{stream}",
            content=body,
            headers={**self.h(role), "Content-Type": "application/x-ndjson", **headers},
        )


def make_settings(**kw: Any) -> Settings:
    return Settings(**kw)


@pytest.fixture
def api(store: SqlStore) -> Iterator[Api]:
    app = create_app(make_settings(), store, start_jobs=False)
    with TestClient(app) as client:
        yield Api(client, store, app)

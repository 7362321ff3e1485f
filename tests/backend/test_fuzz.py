"""Schemathesis (an OpenAPI fuzzer) against the real backend, over HTTP, on both stores: every operation of
the OpenAPI document, positive and negative data. No response may be a 500 or a 429 (the default rate
limits must leave the suite alone), every response must conform to the document (status code, content type,
headers, body schema), and every token-protected operation must answer 401 without a token.

Bounded: MAX_EXAMPLES cases per operation and store (about 45 s per store on an idle 2-core machine; see
docs/operations.md, "Limits"). GPUFL_FUZZ_EXAMPLES raises it for a longer local run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from gpufl.backend.app import create_app
from gpufl.backend.config import Settings
from gpufl.contract import events as ev

from .conftest import need_env
from .factory import SessionFactory
from .server import Server

MAX_EXAMPLES = int(os.environ.get("GPUFL_FUZZ_EXAMPLES", "25"))
SEEDED = "fuzz-session"
"""A session the fixture stores, so generated requests also reach the code behind "session exists"."""

# The document, from the app itself (it does not depend on the store): tests are collected before any
# server runs; each case is then sent to the running server with base_url.
schema = schemathesis.openapi.from_dict(create_app(Settings(), None, start_jobs=False).openapi())  # type: ignore[arg-type]


@schema.auth()
class AdminToken:
    """Every case carries the fuzz backend's admin token (any role may call anything with it), except the
    negative cases that drop the Authorization header on purpose: schemathesis leaves those without."""

    def get(self, case: Any, context: Any) -> str:
        return Server.token

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    # Half the cases name the stored session (and one of its kernels) instead of a random id. Only
    # values the document allows are replaced, so a negative case stays negative; DELETE keeps its random
    # ids, or the first case would delete the session for every operation after it.
    params = dict(path_parameters or {})
    sid = params.get("session_id")
    if context.operation.method.upper() == "DELETE" or not isinstance(sid, str) or not 1 <= len(sid) <= 64:
        return st.just(path_parameters)
    hit = {**params, "session_id": SEEDED}
    if (
        isinstance(params.get("kernel_id"), str)
        and params["kernel_id"].isascii()
        and params["kernel_id"].isdigit()
    ):
        hit["kernel_id"] = "5"
    return st.sampled_from([path_parameters, hit])


@schema.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    # The agents' long poll (GET /agent/captures) holds a valid case up to wait_s (30 s): the fuzzer asks for
    # an immediate answer instead; an invalid wait_s stays as generated, so a negative case stays negative.
    w = (query or {}).get("wait_s")
    if context.operation.path == "/api/v1/agent/captures" and isinstance(w, int | float) and 0 <= w <= 30:
        return {**(query or {}), "wait_s": 0}
    return query


def _beyond_the_schema(path: str, q: dict[str, Any]) -> bool:
    """A query that breaks a rule OpenAPI cannot express (docs/api.md), rightly refused with 400/422: a
    cursor is an opaque token from a previous page (any other string is a 400); resolution_ns needs
    start_ns and end_ns, and window / resolution_ns <= 100,000 buckets; end_ns may not be before start_ns
    (nor equal to it for /system and /range); /search's at_kind and at_id come together or not at all."""

    def num(name: str) -> int | None:
        v = q.get(name)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    if (q.get("at_kind") is None) != (q.get("at_id") is None):
        return True
    start, end, res = num("start_ns"), num("end_ns"), num("resolution_ns")
    empty_refused = path.endswith(("/system", "/range"))  # an empty window: nothing to chart or sum
    if start is not None and end is not None and (end < start or (end == start and empty_refused)):
        return True
    no_window = start is None or end is None
    return "cursor" in q or (res is not None and (no_window or (end - start) // max(res, 1) > 100_000))


def _seed(base: str, token: str) -> None:
    f = SessionFactory(SEEDED)
    dev: list[ev.Record] = [f.start("device"), f.launch(1, "gemm"), f.stack(2, [("a.py", 1, "f")])]
    dev += [f.kernel(1, i * 1000, 400 + i, stack_id=2) for i in range(20)]
    scope: list[ev.Record] = [
        f.start("scope"),
        f.scope_path(1, "train"),
        f.scope_begin(1, 1, 0),
        f.scope_end(1, 9000),
    ]
    system = [f.start("system"), *(f.sample(i * 10**8, i, 100.0, 5) for i in range(10))]
    for stream, recs in (("device", dev), ("scope", scope), ("system", system)):
        r = httpx.post(
            f"{base}/api/v1/events/{stream}",
            content=ev.encode_lines(recs),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
            timeout=30,
        )
        assert r.status_code == 200 and not r.json()["rejected"], r.text


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fuzz_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    args = ["--log-level", "warning"]
    pg_schema = None
    if request.param == "postgresql":
        dsn = need_env("GPUFL_TEST_PG_DSN")
        pg_schema = "t_" + secrets.token_hex(6)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {pg_schema}")
        sep = "&" if "?" in dsn else "?"
        args += ["--database", f"{dsn}{sep}options=-csearch_path%3D{pg_schema}"]
    srv = Server(tmp, args).start()
    try:
        _seed(srv.base, srv.token)
        yield srv
    finally:
        srv.stop()
        if pg_schema is not None:
            with psycopg.connect(need_env("GPUFL_TEST_PG_DSN"), autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {pg_schema} CASCADE")
        log = (tmp / "backend.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-5000:]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz(case: Any, fuzz_server: Server) -> None:
    excluded = []
    body = case.body if isinstance(case.body, dict) else {}
    if (
        case.operation.path == "/api/v1/events/{stream}"
        or _beyond_the_schema(case.operation.path, case.query or {})
        or (
            case.operation.path == "/api/v1/keys"
            and body.get("host") is not None
            and body.get("role") != "ingest"
        )
    ):
        # Not every schema-valid request can be accepted. Ingest reads its body itself (NDJSON or a JSON
        # array of records, each validated on its own), so the document declares no body a fuzzer could
        # make valid: its "schema-valid" request is an empty body, rightly a 400. A key's "host" binds
        # ingest keys only (docs/api.md), rightly a 422 for other roles. Every other check still applies.
        excluded.append(positive_data_acceptance)
    response = case.call_and_validate(base_url=fuzz_server.base, timeout=30, excluded_checks=excluded)
    assert response.status_code != 429, "the default rate limits must leave the test suite alone"
    if case.operation.definition.raw.get("security") and case.method.upper() == case.operation.method.upper():
        anon = case.call(base_url=fuzz_server.base, headers={"Authorization": ""}, timeout=30)
        assert anon.status_code == 401, (case.method, case.formatted_path, anon.status_code, anon.text)

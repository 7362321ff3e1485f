"""Client mistakes at the edges of the HTTP API must never be a 500 (issue #16): path parameters, static
file names, the bootstrap admin token."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gpufl.backend import app as app_mod
from gpufl.backend import auth
from gpufl.backend.app import create_app
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from .conftest import Api, make_settings
from .factory import SessionFactory


def test_kernel_id_must_be_ascii_digits(api: Api) -> None:
    # '²' (U+00B2) and '٣' (ARABIC-INDIC THREE) pass str.isdigit() but int() refuses the first: it was a 500.
    f = SessionFactory("uni")
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "k"), f.kernel(1, 0, 10)]
    assert api.post_events("device", ev.encode_lines(recs)).status_code == 200
    seq = recs[-1].seq
    assert api.get(f"/sessions/uni/kernels/{seq}").status_code == 200
    for kid in ("%C2%B2", "%D9%A3", "1%C2%B2", "%EF%BC%91", "+1", "-1", "1_0", " 1"):
        r = api.get(f"/sessions/uni/kernels/{kid}")
        assert r.status_code == 404, (kid, r.status_code, r.text)
        assert "error" in r.json()


@pytest.fixture
def built_ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<html>spa</html>")
    (static / "assets" / "app.js").write_text("console.log(1)")
    monkeypatch.setattr(app_mod, "STATIC_DIR", static)
    return static


def test_static_paths_the_spa_cannot_serve_are_4xx_without_traceback(
    api: Api, built_ui: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A 256-byte name made stat() raise ENAMETOOLONG and a NUL made it raise ValueError: each was a 500 with
    # two tracebacks in the log (ours and uvicorn's), about 34 KB a request.
    caplog.set_level(logging.INFO)
    cases = {
        "/" + "a" * 256: 404,  # longer than any file name (NAME_MAX 255)
        "/assets/" + "é" * 128 + ".js": 404,  # 128 characters, 256+ bytes in UTF-8
        "/sessions/" + "/".join(["b" * 200] * 10): 404,  # each segment fits, the path does not
        "/x%00": 400,
        "/assets/app.js%00.html": 400,
        "/x%01y": 400,
        "/x%7Fy": 400,
    }
    for path, status in cases.items():
        r = api.client.get(path)
        assert r.status_code == status, (path[:40], r.status_code, r.text[:200])
        assert "error" in r.json()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    # What the SPA serves is unchanged: files, client-side routes, the longest plausible route.
    assert api.client.get("/assets/app.js").text == "console.log(1)"
    assert api.client.get("/sessions/abc/kernels/12").text == "<html>spa</html>"
    assert api.client.get("/sessions/" + "s" * 64 + "/kernels/" + "9" * 20).text == "<html>spa</html>"
    assert api.client.get("/" + "a" * 255).text == "<html>spa</html>"


# ---- the bootstrap admin token (GPUFL_ADMIN_TOKEN) ---------------------------------------------------


def _start(store: SqlStore, admin_token: str | None) -> TestClient:
    """What ``gpufl-backend`` does on start: install the bootstrap token, then serve."""
    auth.install_bootstrap(store, admin_token)
    return TestClient(create_app(make_settings(), store, start_jobs=False))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_bootstrap_token_in_the_generated_format_is_accepted(store: SqlStore) -> None:
    # A token printed by a backend (or `keys create`) used as GPUFL_ADMIN_TOKEN: it was stored under the id
    # "bootstrap" but looked up by the id inside it, so it was never accepted.
    _, token, _ = auth.new_token()
    with _start(store, token) as c:
        assert c.get("/api/v1/keys", headers=_bearer(token)).status_code == 200
    with _start(store, token) as c:  # a restart with the same environment changes nothing
        assert c.get("/api/v1/keys", headers=_bearer(token)).status_code == 200
    # A generated admin key (as printed on a first start) later set as GPUFL_ADMIN_TOKEN.
    key_id, generated = auth.create_key(store, auth.Role.admin, "printed")
    with _start(store, generated) as c:
        assert c.get("/api/v1/keys", headers=_bearer(generated)).status_code == 200
    assert [k["name"] for k in store.list_keys() if k["id"] == key_id] == ["printed"]  # not replaced


def test_bootstrap_token_naming_another_key_refuses_to_start(store: SqlStore) -> None:
    key_id, read_token = auth.create_key(store, auth.Role.read, "reader")
    with pytest.raises(auth.BootstrapError, match="role read"):
        auth.install_bootstrap(store, read_token)  # would have made a read key admin
    with pytest.raises(auth.BootstrapError, match="different secret"):
        auth.install_bootstrap(store, f"gpufl_{key_id}_" + "z" * 43)
    for bad in ("has space", "tab\there", "newline\n", "caf\u00e9"):
        with pytest.raises(auth.BootstrapError, match="cannot be sent"):
            auth.install_bootstrap(store, bad)
    assert store.get_key(key_id) == ("read", auth.hash_secret(read_token.split("_", 2)[2]), None)


@pytest.mark.parametrize("generated_format", [False, True])
def test_revoking_the_bootstrap_token_survives_a_restart(
    store: SqlStore, generated_format: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # The revoked bootstrap key was re-installed, active, on every start: a leaked token came back.
    token = auth.new_token()[1] if generated_format else "plain-bootstrap-admin-token"
    key_id = token.split("_")[1] if generated_format else auth.BOOTSTRAP_ID
    with _start(store, token) as c:
        r = c.delete(f"/api/v1/keys/{key_id}", headers=_bearer(token))
        assert r.json() == {"deleted": True}
        assert c.get("/api/v1/keys", headers=_bearer(token)).status_code == 401
    with caplog.at_level(logging.WARNING, logger="gpufl.backend"), _start(store, token) as c:
        r = c.get("/api/v1/keys", headers=_bearer(token))
        assert r.status_code == 401 and r.json()["error"] == "token revoked"
    assert any("GPUFL_ADMIN_TOKEN" in r.getMessage() and "revoked" in r.getMessage() for r in caplog.records)
    # Rotation: a new GPUFL_ADMIN_TOKEN replaces it (same id for a plain token, its own id otherwise).
    new = auth.new_token()[1] if generated_format else "rotated-bootstrap-admin-token"
    with _start(store, new) as c:
        assert c.get("/api/v1/keys", headers=_bearer(new)).status_code == 200
        assert c.get("/api/v1/keys", headers=_bearer(token)).status_code == 401


# ---- per-key request rate limits -------------------------------------------------------------------


def test_rate_limits_per_key_answer_429_with_retry_after(store: SqlStore) -> None:
    settings = make_settings(
        rate_limit_query=2, rate_limit_query_burst=3, rate_limit_ingest=1, rate_limit_ingest_burst=2
    )
    with TestClient(create_app(settings, store, start_jobs=False)) as client:
        api = Api(client, store, client.app)  # type: ignore[arg-type]
        assert [api.get("/sessions").status_code for _ in range(3)] == [200] * 3  # the burst
        r = api.get("/sessions")
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1 and "rate limit" in r.json()["error"]
        # Per key: another read key, and the admin key, still have their own buckets.
        other = auth.create_key(store, auth.Role.read, "other")[1]
        assert client.get("/api/v1/sessions", headers=_bearer(other)).status_code == 200
        assert api.get("/hosts", role="admin").status_code == 200
        # Ingest has its own limit, per key too: this key's queries are throttled, its ingests are not.
        assert [api.post_events("system", b"", role="admin").status_code for _ in range(2)] == [400, 400]
        r = api.post_events("system", b"", role="admin")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert api.post_events("system", b"").status_code == 400  # the ingest key's own bucket
        # Bad tokens are refused before any bucket is touched (401, never 429).
        assert client.get("/api/v1/sessions", headers=_bearer("nope")).status_code == 401
        # Tokens come back at the configured rate: Retry-After was honest. (Empty the bucket first: on a
        # slow store the steps above take long enough for it to refill.)
        for _ in range(10):
            r = api.get("/sessions")
            if r.status_code == 429:
                break
        assert r.status_code == 429, r.text
        time.sleep(int(r.headers["Retry-After"]))
        assert api.get("/sessions").status_code == 200


def test_rate_limits_zero_disables_and_defaults_are_generous(store: SqlStore) -> None:
    defaults = make_settings()
    assert defaults.rate_limit_query >= 100 and defaults.rate_limit_ingest >= 50
    off = make_settings(rate_limit_query=0, rate_limit_ingest=0)
    with TestClient(create_app(off, store, start_jobs=False)) as client:
        api = Api(client, store, client.app)  # type: ignore[arg-type]
        assert {api.get("/hosts").status_code for _ in range(300)} == {200}


def test_405_says_which_methods_are_allowed(api: Api) -> None:
    # Found by the fuzzer (ST204): the error handler dropped the exception's headers, so a 405 came without
    # the Allow header RFC 9110 requires.
    for method, path, allow in (
        ("TRACE", "/api/v1/events/device", {"POST"}),
        ("PUT", "/api/v1/sessions/x", {"GET", "DELETE"}),
        ("PATCH", "/api/v1/keys", {"GET", "POST"}),
    ):
        r = api.client.request(method, path, headers=api.h("admin"))
        assert r.status_code == 405 and "error" in r.json()
        assert {m.strip() for m in r.headers["Allow"].split(",")} >= allow, (path, r.headers)


def test_wrong_method_on_an_api_path_is_405_not_404(api: Api) -> None:
    # Found by the fuzzer (ST204): a GET on a POST-only API path fell through to the UI's catch-all GET
    # route, which answers 404 for every /api path.
    for path, allow in (("/api/v1/admin/prune", "POST"), ("/api/v1/events/device", "POST")):
        r = api.client.get(path, headers=api.h("admin"))
        assert r.status_code == 405 and r.headers["Allow"] == allow and "error" in r.json(), (path, r.text)
    assert api.client.get("/api/v1/nothing-here").status_code == 404


def test_a_body_is_not_read_before_the_token_is_checked(api: Api) -> None:
    # Found by the fuzzer: FastAPI parsed POST /keys' JSON body before the admin check, so without a token
    # a bad body got 422 (or 400 for bytes that are not UTF-8) describing the body, instead of 401.
    for body in (b"\xff{", b"{", b'{"role": "root"}', b'{"role": "read", "name": "ok"}'):
        for headers, status in (({}, 401), (api.h("read"), 403)):
            r = api.client.post(
                "/api/v1/keys", content=body, headers={**headers, "Content-Type": "application/json"}
            )
            assert r.status_code == status and "detail" not in r.json(), (body, status, r.text)
    for body in (b"\xff{", b"{", b'{"role": "root", "name": "x"}', b'{"role": "read"}', b""):
        r = api.client.post("/api/v1/keys", content=body, headers=api.h("admin"))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "body", (body, r.text)
    r = api.client.post("/api/v1/keys", json={"role": "read", "name": "ok"}, headers=api.h("admin"))
    assert r.status_code == 200 and r.json()["token"].startswith("gpufl_")
    doc = api.client.get("/api/v1/openapi.json").json()
    body_doc = doc["paths"]["/api/v1/keys"]["post"]["requestBody"]
    assert body_doc["required"] is True
    role = body_doc["content"]["application/json"]["schema"]["properties"]["role"]
    assert role["enum"] == ["ingest", "read", "operator", "admin"]


def test_documented_error_responses(api: Api) -> None:
    # Found by the fuzzer: /metrics documented its 401 as text/plain (it is JSON, like every error).
    doc = api.client.get("/api/v1/openapi.json").json()
    metrics = doc["paths"]["/metrics"]["get"]["responses"]
    assert list(metrics["200"]["content"]) == ["text/plain"]
    assert list(metrics["401"]["content"]) == ["application/json"]
    # Every token-protected operation documents 401, 403 and 429, and declares the bearer scheme.
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path != "/healthz":
                assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
                assert op["security"] == [{"HTTPBearer": []}], (method, path)

"""Client mistakes at the edges of the HTTP API must never be a 500 (issue #16): path parameters, static
file names, the bootstrap admin token."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gpufl import events as ev
from gpufl.backend import app as app_mod
from gpufl.backend.app import create_app

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

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

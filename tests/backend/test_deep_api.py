"""The /deep routes over HTTP (both stores): the structural session of ``deep_records`` posted through the
ingest endpoint, answers validated against their OpenAPI models, errors as 4xx with their body, the read role
required."""

from __future__ import annotations

from gpufl.backend.api import schemas as S
from gpufl.contract import events as ev

from . import deep_records as D
from .conftest import Api
from .factory import SessionFactory


def _post(api: Api) -> None:
    r = api.post_events("scope", ev.encode_lines(D.session()))
    assert r.status_code == 200, r.text


def test_summary_scope_and_lines(api: Api) -> None:
    _post(api)
    s = S.DeepSummary.model_validate(api.get(f"/sessions/{D.SID}/deep").json())
    assert s.has_data and [k.kernel for k in s.kernels] == ["kA", "kB", "kOld"]
    assert s.range_totals.pc_dropped == 2 and s.range_totals.error_ranges == 1
    attn = next(x for x in s.scopes if x.path == "train/attn")
    d = S.DeepScopeDetail.model_validate(api.get(f"/sessions/{D.SID}/deep/scopes/{attn.scope_id}").json())
    assert [i.inst for i in d.instances] == [10, 11]
    r = api.get(f"/sessions/{D.SID}/deep/lines", params={"kernel": "kA", "by": "pc", "limit": 1})
    lines = S.DeepLines.model_validate(r.json())
    assert lines.truncated and lines.lines_total == 2 and lines.items[0].pc_offset == 16
    assert lines.items[0].divergence == 16.0


def test_errors_are_4xx_with_a_body(api: Api) -> None:
    _post(api)
    for path, params, code in (
        ("/sessions/nosuch/deep", {}, 404),
        (f"/sessions/{D.SID}/deep/scopes/99", {}, 404),
        (f"/sessions/{D.SID}/deep/lines", {"kernel": "nosuch"}, 404),
        (f"/sessions/{D.SID}/deep/lines", {}, 422),
        (f"/sessions/{D.SID}/deep/lines", {"kernel": "kA", "by": "file"}, 422),
        (f"/sessions/{D.SID}/deep/lines", {"kernel": "kA", "limit": "0"}, 422),
    ):
        r = api.get(path, params=params)
        assert r.status_code == code, (path, params, r.text)
        assert r.json()["error"]
    assert api.get(f"/sessions/{D.SID}/deep", role="ingest").status_code == 403


def test_no_deep_data_is_said(api: Api) -> None:
    api.post_events("scope", ev.encode_lines([SessionFactory("plain").start("scope")]))
    s = S.DeepSummary.model_validate(api.get("/sessions/plain/deep").json())
    assert not s.has_data and s.kernels == [] and s.ranges == []

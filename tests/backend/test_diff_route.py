"""``GET /diff``: the store's profile of a session equals the one built from its log lines, and the route
answers what ``gpufl.diff.compare`` answers on the logs (DuckDB and PostgreSQL)."""

from __future__ import annotations

import math

import msgspec
import pytest
from tests.diff.captures import BASE, BF16, LAYER_REMOVED, REPEAT, profile

from gpufl.diff.compare import compare

from .conftest import Api
from .test_insights import ingest, lines


@pytest.mark.parametrize("folder", [BASE, LAYER_REMOVED], ids=lambda p: p.name)
def test_the_store_profile_equals_the_log_profile(api: Api, folder) -> None:  # type: ignore[no-untyped-def]
    sid = ingest(api, lines(folder))
    stored = api.store.diff_profile(sid)
    logged = profile(folder)
    a, b = msgspec.to_builtins(stored), msgspec.to_builtins(logged)
    for kind in b["rows"]:
        for key, st in b["rows"][kind].items():
            got = a["rows"][kind].pop(key)
            assert math.isclose(got.pop("sumsq"), st.pop("sumsq"), rel_tol=1e-9), (kind, key)
            assert got == st, (kind, key)
        assert a["rows"][kind] == {}, kind
    a.pop("rows"), b.pop("rows")
    assert a == b


def test_the_route_answers_the_diff_of_the_logs(api: Api) -> None:
    sids = {f.name: ingest(api, lines(f)) for f in (BASE, REPEAT, LAYER_REMOVED, BF16)}
    r = api.get("/diff", params={"base": sids["diff_base"], "target": sids["diff_layer_removed"]})
    assert r.status_code == 200, r.text
    doc = r.json()
    want = msgspec.to_builtins(compare(profile(BASE), profile(LAYER_REMOVED)))
    assert doc["counts"] == want["counts"] and doc["rows_total"] == len(want["rows"])
    assert [(x["kind"], x["key"], x["label"]) for x in doc["rows"]] == [
        (x["kind"], x["key"], x["label"]) for x in want["rows"]
    ]
    assert [(t["metric"], t["label"]) for t in doc["totals"]] == [
        (t["metric"], t["label"]) for t in want["totals"]
    ]
    assert doc["per_step"] and doc["base"]["steps"] == 12 and doc["base"]["app"] == "gpt_train"
    r = api.get("/diff", params={"base": sids["diff_base"], "target": sids["diff_repeat"]})
    assert r.json()["counts"]["unchanged"] == r.json()["rows_total"]
    r = api.get("/diff", params={"base": sids["diff_base"], "target": sids["diff_bf16"], "limit": 3})
    assert len(r.json()["rows"]) == 3 and r.json()["rows_total"] > 3


def test_unknown_sessions_and_bad_parameters_are_4xx(api: Api) -> None:
    sid = ingest(api, lines(REPEAT))
    assert api.get("/diff", params={"base": sid, "target": "nope"}).status_code == 404
    assert api.get("/diff", params={"base": sid}).status_code == 422
    assert api.get("/diff", params={"base": sid, "target": sid, "min_effect": -1}).status_code == 422
    assert api.client.get("/api/v1/diff", params={"base": sid, "target": sid}).status_code == 401


def test_the_response_models_mirror_the_diff_structs_field_for_field() -> None:
    """api/schemas.py restates gpufl.diff.compare's structs for the OpenAPI document (and the UI's types): a
    field added to one and not the other fails here, not silently (pydantic would drop it)."""
    from gpufl.backend.api import schemas as S
    from gpufl.diff import compare as C

    pairs = [
        (S.DiffSide, C.SideStat),
        (S.DiffRow, C.Row),
        (S.DiffTotal, C.TotalRow),
        (S.DiffSessionRef, C.SessionRef),
        (S.DiffNoise, C.Noise),
        (S.Diff, C.Diff),
    ]
    for model, struct in pairs:
        extra = {"rows_total"} if model is S.Diff else set()  # the route's own: rows cut at ``limit``
        assert set(model.model_fields) == set(struct.__struct_fields__) | extra, model.__name__

"""Search by name across the timeline's lanes (store.search, GET /search) on every engine, against brute force."""

from __future__ import annotations

import random

from gpufl.backend.api import schemas as S
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from .conftest import Api
from .factory import SessionFactory
from .helpers import feed


def _session(f: SessionFactory) -> tuple[list[ev.Record], list[ev.Kernel], list[tuple[int, str, int]]]:
    rng = random.Random(4)
    names = {1: "ampere_sgemm_128x64", 2: "void relu_kernel<float>(float*)", 3: "SoftmaxForward"}
    recs: list[ev.Record] = [f.start("device"), *(f.launch(i, n) for i, n in names.items())]
    kernels = []
    t = 0
    for _ in range(500):
        k = f.kernel(rng.choice([1, 2, 3]), t, rng.randrange(100, 5000))
        kernels.append(k)
        t += rng.randrange(1, 20_000)
    scope: list[ev.Record] = [
        f.start("scope"),
        f.scope_path(1, "train/Softmax_block"),
        f.scope_path(2, "eval"),
    ]
    begins = []
    for i in range(30):
        path = 1 + i % 2
        scope.append(f.scope_begin(i, path, i * 300_000 + 7))
        scope.append(f.scope_end(i, i * 300_000 + 100_000))
        begins.append((f.t0 + i * 300_000 + 7, "train/Softmax_block" if path == 1 else "eval", i))
    return [*recs, *kernels, *scope], kernels, begins


def test_search_counts_and_steps_through_kernels_and_scopes(store: SqlStore) -> None:
    f = SessionFactory("srch")
    recs, kernels, begins = _session(f)
    feed(store, recs)
    names = {1: "ampere_sgemm_128x64", 2: "void relu_kernel<float>(float*)", 3: "SoftmaxForward"}
    # "softmax" (any case) matches a kernel name and a scope path: step forward through both, in time order
    hits = sorted(
        [(k.start_ns, "kernel", str(k.seq)) for k in kernels if "softmax" in names[k.launch_id].lower()]
        + [(s, "scope", str(i)) for s, p, i in begins if "softmax" in p.lower()]
    )
    got = store.search("srch", "SOFTMAX", f.t0 - 1)
    assert got["kernels"] == sum(1 for h in hits if h[1] == "kernel")
    assert got["scopes"] == sum(1 for h in hits if h[1] == "scope")
    walked = []
    at = f.t0 - 1
    while (m := store.search("srch", "softmax", at)["match"]) is not None:
        walked.append((m["start_ns"], m["kind"], m["id"]))
        at = m["start_ns"]
    assert walked == hits
    # and backward from the end
    back = []
    at = hits[-1][0] + 1
    while (m := store.search("srch", "softmax", at, backward=True)["match"]) is not None:
        back.append((m["start_ns"], m["kind"], m["id"]))
        at = m["start_ns"]
    assert back == hits[::-1]
    # template characters and LIKE wildcards are plain text
    assert store.search("srch", "<float>", f.t0 - 1)["kernels"] == sum(1 for k in kernels if k.launch_id == 2)
    assert store.search("srch", "%", f.t0 - 1)["kernels"] == 0
    nothing = store.search("srch", "no such kernel", f.t0 - 1)
    assert (nothing["kernels"], nothing["scopes"], nothing["match"]) == (0, 0, None)


def test_search_route(api: Api) -> None:
    f = SessionFactory("sr")
    recs, _, _ = _session(f)
    api.post_events("device", ev.encode_lines([r for r in recs if r.stream == "device"]))
    r = api.get("/sessions/sr/search", params={"text": "relu", "at_ns": f.t0})
    body = S.SearchResult.model_validate(r.json(), strict=True)
    assert (
        body.match is not None
        and body.match.kind == "kernel"
        and body.match.name == "void relu_kernel<float>(float*)"
    )
    assert api.get("/sessions/sr/search", params={"text": "", "at_ns": 0}).status_code == 422
    assert (
        api.get("/sessions/sr/search", params={"text": "x", "at_ns": 0, "direction": "up"}).status_code == 422
    )

"""store/ranges.py on every engine, against brute force over the generated records: the area selection's
aggregates (store.range_summary, GET /range) and search by name across the timeline's lanes (store.search,
GET /search)."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

from gpufl.backend.api import schemas as S
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from .conftest import Api
from .factory import SessionFactory
from .helpers import feed

REPO = Path(__file__).resolve().parents[2]


def _clip(s: int, e: int, a: int, b: int) -> int:
    return min(e, b) - max(s, a)


def test_range_summary_per_name_kind_and_scope(store: SqlStore) -> None:
    f = SessionFactory("rng")
    rng = random.Random(11)
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "gemm"), f.launch(2, "relu")]
    kernels, copies = [], []
    t = 0
    for _ in range(2000):
        k = f.kernel(rng.choice([1, 2]), t, rng.randrange(100, 50_000))
        kernels.append(k)
        if rng.random() < 0.2:
            if rng.random() < 0.5:
                copies.append(
                    f.memcpy(
                        t,
                        rng.randrange(100, 9000),
                        rng.randrange(1, 1 << 20),
                        copy_kind=rng.choice(["HtoD", "DtoH"]),
                    )
                )
            else:
                copies.append(f.memset(t, rng.randrange(100, 9000), rng.randrange(1, 1 << 16)))
        t += rng.randrange(0, 30_000)
    scope = [f.start("scope"), f.scope_path(1, "train"), f.scope_path(2, "train/fwd")]
    spans = []
    for i in range(40):
        s0 = i * 1_500_000
        scope.append(f.scope_begin(2 * i, 1, s0))
        scope.append(f.scope_begin(2 * i + 1, 2, s0 + 100, depth=1, parent=2 * i))
        if i < 39:  # the last instance stays open
            scope.append(f.scope_end(2 * i + 1, s0 + 700_000))
            scope.append(f.scope_end(2 * i, s0 + 1_000_000))
            spans += [
                ("train", f.t0 + s0, f.t0 + s0 + 1_000_000),
                ("train/fwd", f.t0 + s0 + 100, f.t0 + s0 + 700_000),
            ]
        else:
            spans += [("train", f.t0 + s0, None), ("train/fwd", f.t0 + s0 + 100, None)]
    feed(store, [*recs, *kernels, *copies, *scope])
    a, b = f.t0 + 10_000_000, f.t0 + 59_000_000
    got = store.range_summary("rng", a, b)
    assert (got["start_ns"], got["end_ns"]) == (a, b)

    names = {1: "gemm", 2: "relu"}
    want_k: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for k in kernels:
        if k.start_ns < b and k.end_ns > a:
            w = want_k[names[k.launch_id]]
            w[0] += 1
            w[1] += k.end_ns - k.start_ns
            w[2] += _clip(k.start_ns, k.end_ns, a, b)
    assert {r["name"]: [r["count"], r["total_ns"], r["in_range_ns"]] for r in got["kernels"]} == want_k
    assert [r["in_range_ns"] for r in got["kernels"]] == sorted(
        (r["in_range_ns"] for r in got["kernels"]), reverse=True
    )
    assert got["kernels_total"] == len(want_k)

    want_c: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for c in copies:
        if c.start_ns < b and c.end_ns > a:
            w = want_c[c.copy_kind if isinstance(c, ev.Memcpy) else "memset"]
            w[0] += 1
            w[1] += c.bytes
            w[2] += c.end_ns - c.start_ns
            w[3] += _clip(c.start_ns, c.end_ns, a, b)
    assert {
        r["kind"]: [r["count"], r["bytes"], r["total_ns"], r["in_range_ns"]] for r in got["copies"]
    } == want_c

    want_s: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for path, s0, s1 in spans:
        if s0 < b and (s1 is None or s1 > a):
            w = want_s[path]
            w[0] += 1
            w[1] += (s1 - s0) if s1 is not None else 0
            w[2] += _clip(s0, s1 if s1 is not None else b, a, b)
            w[3] += s1 is None
    assert {
        r["path"]: [r["count"], r["total_ns"], r["in_range_ns"], r["open"]] for r in got["scopes"]
    } == want_s

    # a limit keeps the first rows and still says how many there were
    one = store.range_summary("rng", a, b, limit=1)
    assert len(one["kernels"]) == 1 and one["kernels_total"] == 2 and one["kernels"][0] == got["kernels"][0]
    empty = store.range_summary("rng", f.t0 - 100, f.t0 - 50)
    assert empty["kernels"] == [] and empty["copies"] == [] and empty["scopes"] == []


def test_range_route(api: Api) -> None:
    f = SessionFactory("rr")
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "gemm")]
    recs += [f.kernel(1, i * 1000, 500) for i in range(10)]
    api.post_events("device", ev.encode_lines(recs))
    r = api.get("/sessions/rr/range", params={"start_ns": f.t0 + 250, "end_ns": f.t0 + 5250})
    body = S.RangeSummary.model_validate(r.json(), strict=True)
    assert body.kernels[0].count == 6 and body.kernels[0].in_range_ns == 250 + 4 * 500 + 250
    assert api.get("/sessions/rr/range", params={"start_ns": 5, "end_ns": 5}).status_code == 422
    assert api.get("/sessions/nope/range", params={"start_ns": 0, "end_ns": 5}).status_code == 404


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


def _walk(api: Api, sid: str, text: str, at_ns: int, direction: str) -> list[tuple[int, str, str]]:
    """Every match of ``text`` from ``at_ns``, stepping from each match to the next as the UI does (the
    match's start, kind and id as the position)."""
    walked: list[tuple[int, str, str]] = []
    params: dict[str, object] = {"text": text, "at_ns": at_ns, "direction": direction}
    while (m := api.get(f"/sessions/{sid}/search", params=params).json()["match"]) is not None:
        walked.append((m["start_ns"], m["kind"], m["id"]))
        assert len(walked) <= 10_000, "the search does not move on"
        params = {"text": text, "at_ns": m["start_ns"], "direction": direction}
        params |= {"at_kind": m["kind"], "at_id": m["id"]}
    return walked


def test_search_visits_instances_with_equal_starts_once_each_on_a_real_capture(api: Api) -> None:
    # The committed H100 capture gpt_train, and over it a second copy of its kernels and scope instances at
    # the very same timestamps (seq and scope instance ids renumbered, as bench/ui_timeline.mjs's tiling does
    # with a zero shift): every match then has a twin that starts at the same nanosecond.
    cap = REPO / "examples" / "captures" / "gpt_train"
    for path in sorted(cap.glob("*.log")):
        stream = ev.parse_segment_name(path.name).stream  # type: ignore[union-attr]
        if stream == "system":
            continue
        recs = [json.loads(ln) for ln in path.read_bytes().splitlines() if ln.strip()]
        seq_off = 1 + max(r["seq"] for r in recs)
        inst_off = 1 + max((r["inst"] for r in recs if "inst" in r), default=0)
        twins = [
            r | {"seq": r["seq"] + seq_off} | ({"inst": r["inst"] + inst_off} if "inst" in r else {})
            for r in recs
            if r["type"] in ("kernel", "scope_begin", "scope_end")
        ]
        lines = [json.dumps(r).encode() for r in recs + twins]
        for i in range(0, len(lines), 1000):
            r = api.post_events(stream, b"\n".join(lines[i : i + 1000]))
            assert r.status_code == 200 and r.json()["rejected"] == [], r.text
    device = [
        json.loads(ln) for p in cap.glob("*.device.*.log") for ln in p.read_bytes().splitlines() if ln.strip()
    ]
    scope = [
        json.loads(ln) for p in cap.glob("*.scope.*.log") for ln in p.read_bytes().splitlines() if ln.strip()
    ]
    sid = device[0]["session_id"]
    names = {r["id"]: r["launch"]["name"] for r in device if r["type"] == "dict" and r["kind"] == "launch"}
    paths = {r["id"]: r["value"] for r in scope if r["type"] == "dict" and r["kind"] == "scope"}
    kernels = [r for r in device if r["type"] == "kernel"]
    begins = [r for r in scope if r["type"] == "scope_begin"]
    k_off = 1 + max(r["seq"] for r in device)
    i_off = 1 + max(r["inst"] for r in scope if "inst" in r)
    # "forward" matches kernel names (24 in the capture) and the scope path step/forward (12 instances)
    text = "forward"
    want = sorted(
        [
            (k["start_ns"], "kernel", seq)
            for k in kernels
            if text in names[k["launch_id"]].lower()
            for seq in (k["seq"], k["seq"] + k_off)
        ]
        + [
            (b["ts_ns"], "scope", inst)
            for b in begins
            if text in paths[b["path_id"]].lower()
            for inst in (b["inst"], b["inst"] + i_off)
        ],
        key=lambda h: (h[0], h[1], h[2]),
    )
    want_ids = [(s, kind, str(i)) for s, kind, i in want]
    assert len(want) == 2 * (24 + 12) and len({h[0] for h in want}) == len(want) // 2  # every start is tied
    first = min(k["start_ns"] for k in kernels)
    assert _walk(api, sid, text, first - 1, "next") == want_ids
    assert _walk(api, sid, text, want[-1][0] + 1, "prev") == want_ids[::-1]
    # without the position's kind and id, a step from a start leaves every instance at that start behind
    # (what the UI did before: each twin was skipped)
    m = api.get(f"/sessions/{sid}/search", params={"text": text, "at_ns": want[0][0]}).json()["match"]
    assert m["start_ns"] == want[2][0]
    assert (
        api.get(f"/sessions/{sid}/search", params={"text": text, "at_ns": 0, "at_kind": "kernel"}).status_code
        == 422
    )


def test_search_orders_a_kernel_before_a_scope_that_starts_with_it(store: SqlStore) -> None:
    # (start, kind, id): at one nanosecond, kernels (by seq) come before scope instances (by instance)
    f = SessionFactory("tie")
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "fused_forward_kernel")]
    k1, k2 = f.kernel(1, 1000, 50), f.kernel(1, 1000, 70)
    recs += [k1, k2, f.start("scope"), f.scope_path(1, "step/forward")]
    recs += [f.scope_begin(7, 1, 1000), f.scope_end(7, 5000), f.scope_begin(8, 1, 1000), f.scope_end(8, 6000)]
    feed(store, recs)
    order = [("kernel", k1.seq), ("kernel", k2.seq), ("scope", 7), ("scope", 8)]
    at: tuple[str, int] | None = None
    walked = []
    while (
        m := store.search("tie", "forward", f.t0 + 1000 - (1 if at is None else 0), at=at)["match"]
    ) is not None:
        walked.append((m["kind"], int(m["id"])))
        at = (m["kind"], int(m["id"]))
    assert walked == order
    at, back = None, []
    while (
        m := store.search("tie", "forward", f.t0 + 1000 + (1 if at is None else 0), backward=True, at=at)[
            "match"
        ]
    ) is not None:
        back.append((m["kind"], int(m["id"])))
        at = (m["kind"], int(m["id"]))
    assert back == order[::-1]

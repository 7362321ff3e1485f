"""The insights API (#27) over real captures: real DuckDB (and PostgreSQL where configured), real HTTP app.

Each rule has a capture where it fires and one where it must not. Expected numbers are computed here from
the raw log lines, independently of the rules' own code; the store's SQL and the log-record path
(``gpufl.insights.records``, which ``gpufl summary`` uses) must give the same insights on every capture.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gpufl.contract import events as ev
from gpufl.export.source import find_sessions
from gpufl.insights import gpu_rules, rules
from gpufl.insights.records import facts_from_records
from gpufl.insights.rules import run_rules

from .conftest import Api

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "examples" / "captures"
GPT = CAPTURES / "gpt_train"
MEMCPY = CAPTURES / "memcpy_heavy"
MULTI = CAPTURES / "multistream"
EDITED = REPO / "tests" / "fixtures" / "insights_edited_system"
ALL = [
    p for d in (CAPTURES, REPO / "tests" / "fixtures") for p in sorted(d.iterdir()) if any(p.glob("*.log"))
]


def lines(folder: Path, streams: tuple[str, ...] = ev.STREAMS) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for f in sorted(folder.glob("*.log")):
        seg = ev.parse_segment_name(f.name)
        assert seg is not None
        if seg.stream in streams:
            out[seg.stream] += [ln for ln in f.read_bytes().splitlines() if ln.strip()]
    return out


def ingest(api: Api, by_stream: dict[str, list[bytes]]) -> str:
    sids = set()
    for stream, ls in by_stream.items():
        for i in range(0, len(ls), 1000):
            r = api.post_events(stream, b"\n".join(ls[i : i + 1000]))
            assert r.status_code == 200 and r.json()["rejected"] == [], r.text
        sids |= {json.loads(ln)["session_id"] for ln in ls}
    (sid,) = sids
    return sid


def insights(api: Api, sid: str) -> dict[str, Any]:
    r = api.get(f"/sessions/{sid}/insights")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def fired(doc: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [i for i in doc["items"] if i["rule"] == rule]


def status(doc: dict[str, Any], rule: str) -> str:
    (s,) = [r["status"] for r in doc["rules"] if r["rule"] == rule]
    return str(s)


def facts(item: dict[str, Any]) -> dict[str, Any]:
    return {f["label"]: f["value"] for f in item["facts"]}


@pytest.mark.parametrize("capture", ALL, ids=[p.name for p in ALL])
def test_the_store_and_the_logs_give_the_same_insights(api: Api, capture: Path) -> None:
    sid = ingest(api, lines(capture))
    (session,) = find_sessions(capture).values()
    recs = [r for s in ev.STREAMS for r in session.records(s)]
    found, state = run_rules(facts_from_records(sid, recs))
    doc = insights(api, sid)
    assert doc["items"] == [dataclasses.asdict(i) for i in found]
    assert doc["rules"] == [dataclasses.asdict(s) for s in state]
    assert doc["counts"] == {s: sum(i.severity == s for i in found) for s in ("critical", "warning", "info")}


def test_pageable_copies_fire_on_memcpy_heavy_with_the_bytes_of_the_raw_lines(api: Api) -> None:
    raw = [json.loads(ln) for ln in lines(MEMCPY)["device"]]
    pageable = [
        r for r in raw if r["type"] == "memcpy" and "Pageable" in (r.get("src_kind"), r.get("dst_kind"))
    ]
    assert pageable, "memcpy_heavy records pageable copies"
    by_dir: dict[str, int] = defaultdict(int)
    for r in pageable:
        by_dir[r["copy_kind"]] += r["bytes"]
    doc = insights(api, ingest(api, lines(MEMCPY)))
    (item,) = fired(doc, "pageable_copy")
    f = facts(item)
    assert f["pageable copies"] == len(pageable)
    assert f["pageable bytes"] == sum(r["bytes"] for r in pageable) == sum(by_dir.values())
    assert f["GPU time of pageable copies"] == sum(r["end_ns"] - r["start_ns"] for r in pageable)
    assert {i["name"].split()[0]: facts(i)["bytes"] for i in item["involved"]} == by_dir
    assert item["start_ns"] == min(r["start_ns"] for r in pageable)
    assert item["end_ns"] == max(r["end_ns"] for r in pageable)
    assert item["severity"] == "warning"


def test_pageable_copies_do_not_fire_without_pageable_memory(api: Api) -> None:
    # memcpy_heavy's pinned and device-to-device copies only (its pageable ones dropped): copies, none pageable
    keep = [ln for ln in lines(MEMCPY)["device"] if b'"Pageable"' not in ln]
    assert any(b'"memcpy"' in ln for ln in keep)
    doc = insights(api, ingest(api, {"device": keep}))
    assert status(doc, "pageable_copy") == "clear"
    doc = insights(api, ingest(api, lines(MULTI)))
    assert status(doc, "pageable_copy") == "clear"


def test_launch_bound_fires_on_the_gpt_loop_and_not_on_memcpy_heavy(api: Api) -> None:
    doc = insights(api, ingest(api, lines(GPT)))
    hits = fired(doc, "launch_bound")
    assert hits
    raw = [json.loads(ln) for ln in lines(GPT)["device"]]
    kernels = [r for r in raw if r["type"] == "kernel"]
    for h in hits:
        inside = [k for k in kernels if h["start_ns"] <= k["start_ns"] < h["end_ns"]]
        f = facts(h)
        assert f["kernels"] == len(inside) >= rules.LAUNCH_BOUND_MIN_KERNELS
        assert f["mean kernel duration"] <= rules.LAUNCH_BOUND_MEAN_KERNEL_NS
        assert f["host wait share"] >= 100 * rules.LAUNCH_BOUND_HOST_WAIT
        threads = {i["name"]: facts(i) for i in h["involved"]}
        assert sum(t["launches"] for t in threads.values()) == len(inside)
        per_thread: dict[str, int] = defaultdict(int)
        for k in inside:
            per_thread[f"thread {k['thread_id']}"] += k.get("api_dur_ns", 0)
        assert {n: t["time in launch calls"] for n, t in threads.items()} == per_thread
    doc = insights(api, ingest(api, lines(MEMCPY)))
    assert status(doc, "launch_bound") == "clear"


def _idle_ns(acts: list[dict[str, Any]]) -> tuple[int, int]:
    """(idle, window) of one device: the window less the union of the activity intervals."""
    iv = sorted((a["start_ns"], a["end_ns"]) for a in acts)
    busy, cur_s, cur_e = 0, iv[0][0], iv[0][1]
    for s, e in iv[1:]:
        if s > cur_e:
            busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    window = max(e for _, e in iv) - iv[0][0]
    return window - busy, window


def test_gpu_idle_fires_with_its_breakdown_on_the_gpt_run(api: Api) -> None:
    raw = [json.loads(ln) for ln in lines(GPT)["device"]]
    acts = [r for r in raw if r["type"] in ("kernel", "memcpy", "memset")]
    idle, window = _idle_ns(acts)
    doc = insights(api, ingest(api, lines(GPT)))
    (item,) = fired(doc, "gpu_idle")
    f = facts(item)
    assert f["idle"] == idle and item["end_ns"] - item["start_ns"] == window
    parts = [
        "waiting for the host",
        "launch latency",
        "waiting for another stream, event or synchronisation",
        "cause not recorded (no API timing)",
    ]
    assert sum(f[p] for p in parts) == idle
    # Gaps ended by a memset (no API timing) are the unknown part, exactly.
    reach, unknown = None, 0
    for a in sorted(acts, key=lambda a: (a["start_ns"], a["seq"])):
        if reach is not None and a["start_ns"] > reach and a["type"] == "memset":
            unknown += a["start_ns"] - reach
        reach = a["end_ns"] if reach is None else max(reach, a["end_ns"])
    assert f["cause not recorded (no API timing)"] == unknown
    assert "host" in item["title"] and len(item["involved"]) == 3


def test_gpu_idle_does_not_fire_on_a_busy_stretch(api: Api) -> None:
    # memcpy_heavy's largest pageable round (the first scope instance moving 128 MiB in two copies): the copy engine
    # works almost throughout; the same records the capture holds, nothing else.
    raw = [json.loads(ln) for ln in lines(MEMCPY)["device"]]
    per_inst: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in raw:
        if r["type"] == "memcpy":
            per_inst[r["scope_inst"]].append(r)
    inst = min(
        i
        for i, cs in per_inst.items()
        if sum(c["bytes"] for c in cs) == 128 * 2**20 and cs[0]["src_kind"] == "Pageable"
    )
    keep = [
        ln
        for ln, r in zip(lines(MEMCPY)["device"], raw, strict=True)
        if r["type"] in ("session_start", "dict") or r.get("scope_inst") == inst
    ]
    idle, window = _idle_ns(per_inst[inst])
    assert idle < rules.GPU_IDLE_FRACTION * window
    doc = insights(api, ingest(api, {"device": keep}))
    assert status(doc, "gpu_idle") == "clear"


def test_tiny_kernels_fire_on_gpt_and_not_on_multistream(api: Api) -> None:
    raw = [json.loads(ln) for ln in lines(GPT)["device"]]
    tiny = [
        r
        for r in raw
        if r["type"] == "kernel"
        and r["end_ns"] - r["start_ns"] < rules.TINY_KERNEL_NS
        and r.get("graph_id") is None
    ]
    doc = insights(api, ingest(api, lines(GPT)))
    (item,) = fired(doc, "tiny_kernels")
    assert facts(item)["tiny kernels"] == len(tiny)
    assert facts(item)["host time launching them"] == sum(r.get("api_dur_ns", 0) for r in tiny)
    assert len(item["involved"]) == 5
    doc = insights(api, ingest(api, lines(MULTI)))
    assert status(doc, "tiny_kernels") == "clear"


def test_low_occupancy_fires_on_multistreams_gemm_and_not_on_gpt(api: Api) -> None:
    doc = insights(api, ingest(api, lines(MULTI)))
    (item,) = fired(doc, "low_occupancy")
    raw = [json.loads(ln) for ln in lines(MULTI)["device"]]
    launch = {r["id"]: r["launch"] for r in raw if r["type"] == "dict" and r["kind"] == "launch"}
    low = {i for i, lc in launch.items() if lc.get("occupancy", 1) < rules.LOW_OCCUPANCY}
    kernels = [r for r in raw if r["type"] == "kernel"]
    mine = [k for k in kernels if k["launch_id"] in low]
    (lc,) = [launch[i] for i in low]
    f = facts(item)
    assert f["theoretical occupancy"] == round(100 * lc["occupancy"], 1)
    assert f["limited by"] == lc["limiting_resource"] == "registers"
    assert f["registers per thread"] == lc["num_regs"]
    assert f["launches"] == len(mine)
    total = sum(k["end_ns"] - k["start_ns"] for k in kernels)
    assert f["share of kernel time"] == round(100 * sum(k["end_ns"] - k["start_ns"] for k in mine) / total, 1)
    doc = insights(api, ingest(api, lines(GPT)))
    assert status(doc, "low_occupancy") == "clear"


def test_throttling_and_memory_fire_on_the_edited_samples_only(api: Api) -> None:
    doc = insights(api, ingest(api, lines(GPT, ("system",))))
    assert status(doc, "throttling") == "clear" and status(doc, "memory_near_capacity") == "clear"
    edited = [json.loads(ln) for ln in lines(EDITED)["system"]]
    samples = [r for r in edited if r["type"] == "system_sample"]
    throttled = [r for r in samples if r["gpus"][0]["throttle_reasons"] & 0x20]
    full = [r for r in samples if r["gpus"][0]["mem_used_mib"] >= 0.95 * r["gpus"][0]["mem_total_mib"]]
    assert [r["seq"] for r in throttled] == [5, 6, 7] and [r["seq"] for r in full] == [9, 10]
    with api.store._write() as cur:  # the edited stream replaces the recorded one: same session id
        for table in (
            "system_points",
            "session_streams",
            "seq_ranges",
            "type_counts",
            "stream_ends",
            "sessions",
        ):
            api.store._exec(cur, f"DELETE FROM {table}")
    doc = insights(api, ingest(api, lines(EDITED)))
    (thr,) = fired(doc, "throttling")
    assert thr["severity"] == "warning"  # software slowdowns only
    assert (thr["start_ns"], thr["end_ns"]) == (throttled[0]["ts_ns"], throttled[-1]["ts_ns"])
    assert facts(thr)["throttled samples"] == 3 and facts(thr)["samples"] == len(samples)
    assert facts(thr)["software thermal slowdown"] == 3 and facts(thr)["software power cap"] == 3
    (mem,) = fired(doc, "memory_near_capacity")
    assert (mem["start_ns"], mem["end_ns"]) == (full[0]["ts_ns"], full[-1]["ts_ns"])
    assert facts(mem)["peak used"] == 79930.0 and facts(mem)["total"] == 81559.0
    assert mem["severity"] == "warning"


def test_rules_without_their_data_say_not_checked(api: Api) -> None:
    doc = insights(api, ingest(api, lines(MEMCPY, ("scope",))))
    for rule in ("launch_bound", "gpu_idle", "tiny_kernels", "low_occupancy", "throttling"):
        assert status(doc, rule) == "not_checked"
    for rule in ("warp_divergence", "stall_reason"):
        (deep,) = [r for r in doc["rules"] if r["rule"] == rule]
        assert deep["status"] == "not_checked" and "(0 profile samples recorded)" in deep["reason"]


def test_unknown_session_is_404_and_new_records_change_the_answer(api: Api) -> None:
    assert api.get("/sessions/nope/insights").status_code == 404
    sid = ingest(api, lines(GPT, ("system",)))
    assert status(insights(api, sid), "gpu_idle") == "not_checked"
    ingest(api, lines(GPT, ("device",)))
    assert fired(insights(api, sid), "gpu_idle")


def test_concurrent_requests_compute_each_session_once_and_one_at_a_time(api: Api) -> None:
    """The session list asks for every listed session's insights at once: each session's facts are read once
    (the others wait for that answer), and never two sessions' together (they would take every core from the
    timeline's queries). A spy around the real store's ``insight_facts`` counts calls and overlap."""
    sids = [ingest(api, lines(folder)) for folder in (GPT, MULTI, MEMCPY)]
    real = api.store.insight_facts
    calls: list[str] = []
    running = 0
    most = 0
    guard = threading.Lock()

    def spy(sid: str) -> Any:
        nonlocal running, most
        with guard:
            calls.append(sid)
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.2)  # long enough for every request below to arrive while one is computing
            return real(sid)
        finally:
            with guard:
                running -= 1

    api.store.insight_facts = spy  # type: ignore[method-assign]
    try:
        with ThreadPoolExecutor(9) as pool:
            answers = list(pool.map(lambda sid: insights(api, sid), sids * 3))
    finally:
        del api.store.insight_facts
    assert sorted(calls) == sorted(sids)
    assert most == 1
    for sid, doc in zip(sids * 3, answers, strict=True):
        assert doc == insights(api, sid)


def test_reads_need_a_token(api: Api) -> None:
    assert api.client.get("/api/v1/sessions/x/insights").status_code == 401


PHASES = CAPTURES / "phases"


def test_launch_bound_fires_on_the_launch_bound_phase_only(api: Api) -> None:
    """examples/captures/phases (H100): each step runs 1,000 tiny kernels in scope ``launch_bound``, then 20
    large bf16 matmuls in ``gpu_bound``. Every launch-bound insight holds (by kernel count, each kernel placed by
    the scope it was launched in) kernels of the launch-bound phase, and every step's launch-bound phase has one."""
    doc = insights(api, ingest(api, lines(PHASES)))
    hits = fired(doc, "launch_bound")
    raw = [json.loads(ln) for s in ("device", "scope") for ln in lines(PHASES)[s]]
    paths = {r["id"]: r["value"] for r in raw if r["type"] == "dict" and r["kind"] == "scope"}
    scope_of = {r["inst"]: paths[r["path_id"]] for r in raw if r["type"] == "scope_begin"}
    kernels = [r for r in raw if r["type"] == "kernel"]
    assert {scope_of.get(k.get("scope_inst")) for k in kernels} >= {"step/launch_bound", "step/gpu_bound"}
    covered = set()
    for h in hits:
        inside = [k for k in kernels if h["start_ns"] <= k["start_ns"] < h["end_ns"]]
        by_phase = defaultdict(int)
        for k in inside:
            by_phase[scope_of.get(k.get("scope_inst"))] += 1
        assert by_phase["step/launch_bound"] > 0.9 * len(inside), by_phase
        covered |= {
            k["scope_inst"] for k in inside if scope_of.get(k.get("scope_inst")) == "step/launch_bound"
        }
    launch_phases = {i for i, p in scope_of.items() if p == "step/launch_bound"}
    assert covered == launch_phases and len(launch_phases) == 5  # one warm-up step and four measured
    # the GPU-bound phases hold their matmuls back to back: no launch-bound insight is mostly theirs
    matmul_time = sum(
        k["end_ns"] - k["start_ns"] for k in kernels if scope_of.get(k.get("scope_inst")) == "step/gpu_bound"
    )
    assert matmul_time > 0.9 * sum(k["end_ns"] - k["start_ns"] for k in kernels)


SYNC_STALL = CAPTURES / "sync_stall"  # native record path
SYNC_STALL_PY = CAPTURES / "sync_stall_python"  # cupti-python record path, the same program


def _refill_from_lines(folder: Path) -> tuple[int, int]:
    """(idle gaps after context syncs, their summed length) from the raw lines: each sync's return to the next
    kernel/copy/memset start, one gap per next start (from the earliest return), none before the first start."""
    raw = [json.loads(ln) for ln in lines(folder)["device"]]
    starts = sorted(r["start_ns"] for r in raw if r["type"] in ("kernel", "memcpy", "memset"))
    ends = sorted(r["end_ns"] for r in raw if r["type"] == "sync" and r["sync_kind"] == "context")
    gaps: dict[int, int] = {}
    for e in ends:
        nxt = [s for s in starts if s >= e]
        if nxt and nxt[0] > starts[0]:
            gaps.setdefault(nxt[0], e)
    return len(gaps), sum(s - e for s, e in gaps.items())


@pytest.mark.parametrize("folder", [SYNC_STALL, SYNC_STALL_PY], ids=["native", "cupti-python"])
def test_synchronisation_fires_where_syncs_drain_the_gpu(api: Api, folder: Path) -> None:
    """phases.py --syncs 200 (H100, contract v3): a small matmul, torch.cuda.synchronize(), 0.3 ms of host work,
    200 times a step — the GPU idles after every sync until the host queues more."""
    doc = insights(api, ingest(api, lines(folder)))
    (hit,) = [h for h in fired(doc, "synchronisation") if h["severity"] == "warning"]
    gaps, idle = _refill_from_lines(folder)
    f = facts(hit)
    assert f["idle gaps after synchronisations"] == gaps >= 3 * 200  # three steps of 200 syncs, at least
    assert f["GPU idle after them"] == idle
    assert 10 < f["share of the activity window"] <= 100
    assert {i["name"] for i in hit["involved"]} >= {"device/context synchronise"}


@pytest.mark.parametrize("folder", [CAPTURES / "gpt_v3", CAPTURES / "memcpy_heavy_v3"], ids=lambda p: p.name)
def test_synchronisation_is_clear_where_syncs_do_not_drain_the_gpu(api: Api, folder: Path) -> None:
    """The GPT loop and the copy rounds synchronise too (95 and 57 syncs), but the GPU is refilled at once."""
    raw = [json.loads(ln) for ln in lines(folder)["device"]]
    assert sum(r["type"] == "sync" for r in raw) > 50
    doc = insights(api, ingest(api, lines(folder)))
    assert status(doc, "synchronisation") == "clear"


def test_synchronisation_is_not_checked_on_sessions_before_contract_v3(api: Api) -> None:
    doc = insights(api, ingest(api, lines(GPT)))
    assert status(doc, "synchronisation") == "not_checked"
    assert "contract v2" in next(r["reason"] for r in doc["rules"] if r["rule"] == "synchronisation")


def test_synchronous_copies_fire_on_copies_edited_to_sync(api: Api) -> None:
    """No committed capture has a synchronous copy: torch issues every copy as cudaMemcpyAsync and then
    synchronises (memcpy_heavy_v3: 60 copies, all ``async``). So memcpy_heavy_v3's copies are edited here to
    ``"mode":"sync"`` (the only change) to check the synchronous-copy half of the rule on real timings."""
    by_stream = lines(CAPTURES / "memcpy_heavy_v3")
    assert not any(b'"mode":"sync"' in ln for ln in by_stream["device"])
    by_stream["device"] = [ln.replace(b'"mode":"async"', b'"mode":"sync"') for ln in by_stream["device"]]
    doc = insights(api, ingest(api, by_stream))
    (hit,) = [h for h in fired(doc, "synchronisation") if h["severity"] == "info"]
    copies = [json.loads(ln) for ln in by_stream["device"] if b'"type":"memcpy"' in ln]
    f = facts(hit)
    assert f["synchronous copies"] == len(copies) and f["bytes"] == sum(c["bytes"] for c in copies)
    assert f["their GPU time"] == sum(c["end_ns"] - c["start_ns"] for c in copies)


GPM = CAPTURES / "gpu_activity"
EDITED_GPM = REPO / "tests" / "fixtures" / "insights_edited_gpm"


def test_sm_underused_is_clear_on_the_gpm_capture_and_not_checked_without_gpm(api: Api) -> None:
    doc = insights(api, ingest(api, lines(GPM, ("system",))))
    assert status(doc, "sm_underused") == "clear"  # every busy sample had ≥ 96 % of its SMs active
    doc = insights(api, ingest(api, lines(GPT, ("system",))))
    (r,) = [r for r in doc["rules"] if r["rule"] == "sm_underused"]
    assert r["status"] == "not_checked" and "NVML GPM" in r["reason"]


def test_sm_underused_fires_on_the_edited_samples_only(api: Api) -> None:
    edited = [json.loads(ln) for ln in lines(EDITED_GPM)["system"]]
    samples = [
        r for r in edited if r["type"] == "system_sample" and r["gpus"][0].get("sm_active_pct") is not None
    ]
    busy = [r for r in samples if r["gpus"][0]["util_gpu_pct"] >= gpu_rules.SM_UNDERUSED_BUSY_PCT]
    low = [r for r in busy if r["gpus"][0]["sm_active_pct"] < gpu_rules.SM_UNDERUSED_ACTIVE_PCT]
    assert [r["seq"] for r in low] == [9, 10, 11, 12, 13]  # the edited ones; every other busy sample ≥ 50 %
    doc = insights(api, ingest(api, lines(EDITED_GPM)))
    (ins,) = fired(doc, "sm_underused")
    assert ins["device_id"] == 0 and ins["severity"] == "warning"
    assert (ins["start_ns"], ins["end_ns"]) == (low[0]["ts_ns"], low[-1]["ts_ns"])
    f = facts(ins)
    assert f["samples busy with SMs mostly idle"] == 5 and f["busy samples"] == len(busy)
    assert f["samples"] == len(samples) and f["SMs active (GPM), mean over the same samples"] == 12.0
    assert sorted(i["start_ns"] for i in ins["involved"]) == [r["ts_ns"] for r in low]


DEEP_SASS = CAPTURES / "deep_sass"
DEEP_TRUTH = CAPTURES / "deep_truth"


def _deep_from_lines(folder: Path) -> tuple[dict[str, float], dict[str, Counter[str]], dict[str, float]]:
    """Per kernel name, from the raw lines: thread / warp instructions, PC samples per stall reason (CUPTI's
    prefix dropped, ``…_not_issued`` subsets left out) and the kernel's share of all kernels' GPU time."""
    raw = [json.loads(ln) for ls in lines(folder).values() for ln in ls]
    names = {r["id"]: r["value"] for r in raw if r["type"] == "dict" and r["kind"] == "kernel"}
    launch = {r["id"]: r["launch"]["name"] for r in raw if r["type"] == "dict" and r["kind"] == "launch"}
    inst: Counter[str] = Counter()
    thread: Counter[str] = Counter()
    stalls: dict[str, Counter[str]] = defaultdict(Counter)
    for r in raw:
        if r["type"] != "profile_sample":
            continue
        k = names[r["kernel_name_id"]]
        if r["source"] == "sass_metric":
            (inst if r["metric_name"] == "smsp__sass_inst_executed" else thread)[k] += r["metric_value"]
        elif not r["stall_reason"].endswith("_not_issued"):
            stalls[k][r["stall_reason"].removeprefix("smsp__pcsamp_warps_issue_stalled_")] += r[
                "sample_count"
            ]
    time: Counter[str] = Counter()
    for r in raw:
        if r["type"] == "kernel":
            time[launch[r["launch_id"]]] += r["end_ns"] - r["start_ns"]
    total = sum(time.values())
    return (
        {k: thread[k] / inst[k] for k in inst},
        stalls,
        {k: v / total for k, v in time.items()},
    )


def _most_lanes_lost(folder: Path, kernel: str) -> list[str]:
    """The kernel's three source lines that lost the most lanes (32 per warp instruction less the threads
    that ran), from the raw lines."""
    raw = [json.loads(ln) for ln in lines(folder)["scope"]]
    dicts = {(r["kind"], r["id"]): r["value"] for r in raw if r["type"] == "dict"}
    lost: Counter[str] = Counter()
    for r in raw:
        if r["type"] == "profile_sample" and dicts[("kernel", r["kernel_name_id"])] == kernel:
            at = f"{dicts[('source_file', r['source_file_id'])]}:{r['source_line']}"
            inst = r["metric_name"] == "smsp__sass_inst_executed"
            lost[at] += 32 * r["metric_value"] if inst else -r["metric_value"]
    return [at for at, n in sorted(lost.items(), key=lambda kv: (-kv[1], kv[0])) if n > 0][:3]


def test_warp_divergence_fires_on_the_divergent_kernels_of_deep_sass_only(api: Api) -> None:
    """deep_sass (H100): divergence 32.0 uniform, 16.36 parity, 8.21 quad, 16.24 early exit (ncu agrees)."""
    div, _, share = _deep_from_lines(DEEP_SASS)
    assert {k.split("(")[0]: round(v, 2) for k, v in div.items()} == {
        "div_uniform": 32.0,
        "div_parity": 16.36,
        "div_quad": 8.21,
        "div_early_exit": 16.24,
    }
    doc = insights(api, ingest(api, lines(DEEP_SASS)))
    got = fired(doc, "warp_divergence")
    # most GPU time first; uniform (all 32 lanes) never
    assert [i["involved"][0]["name"] for i in got] == sorted(
        (k for k in div if div[k] < 24), key=lambda k: -share[k]
    )
    assert [i["involved"][0]["name"].split("(")[0] for i in got] == [
        "div_quad",
        "div_parity",
        "div_early_exit",
    ]
    for i in got:
        k = i["involved"][0]["name"]
        f = facts(i)
        assert f["active threads per warp instruction"] == round(div[k], 2)
        assert f["share of kernel time"] == round(100 * share[k], 1)
        assert i["severity"] == ("warning" if share[k] >= 0.25 else "info")
        hot = [x["name"] for x in i["involved"] if x["kind"] == "line"]
        assert hot == _most_lanes_lost(DEEP_SASS, k)
    assert status(doc, "stall_reason") == "not_checked"
    assert "no PC-sampling samples" in next(r for r in doc["rules"] if r["rule"] == "stall_reason")["reason"]


def test_stall_reason_fires_on_mem_bound_and_not_on_compute_bound(api: Api) -> None:
    """deep_truth (H200): mem_bound long_scoreboard 96.4 %, compute_bound not_selected 82.3 % (ncu agrees)."""
    _, stalls, share = _deep_from_lines(DEEP_TRUTH)
    mem = next(k for k in stalls if k.startswith("mem_bound"))
    compute = next(k for k in stalls if k.startswith("compute_bound"))
    assert stalls[compute].most_common(1)[0][0] == "not_selected"
    doc = insights(api, ingest(api, lines(DEEP_TRUTH)))
    got = {i["involved"][0]["name"]: i for i in fired(doc, "stall_reason")}
    assert mem in got and compute not in got
    f = facts(got[mem])
    n = sum(stalls[mem].values())
    assert f["top stall reason"] == "long_scoreboard"
    assert f["its samples"] == stalls[mem]["long_scoreboard"]
    assert f["PC samples of the kernel"] == n
    assert f["its share of the samples"] == round(100 * stalls[mem]["long_scoreboard"] / n, 1) == 96.4
    assert f["share of kernel time"] == round(100 * share[mem], 1)
    # the divergence kernels were PC-sampled too, but none takes 5 % of the GPU time: not judged
    assert set(got) == {mem}
    assert all(share[k] < 0.05 for k in stalls if k.startswith("div_"))
    assert status(doc, "warp_divergence") == "not_checked"
    assert (
        "no SASS-metric samples" in next(r for r in doc["rules"] if r["rule"] == "warp_divergence")["reason"]
    )

"""#25's Scopes tab numbers from a real capture (gpt_train, H100): a scope's kernels with its children's,
by name, self and total; per-call min/median/max. Expected values recomputed from the capture's lines."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from pathlib import Path

from gpufl.contract import events as ev
from gpufl.export.source import find_sessions

from .conftest import Api

CAPTURE = Path(__file__).resolve().parents[2] / "examples" / "captures" / "gpt_train"


def _flat(nodes: list[dict]) -> list[dict]:
    return [x for n in nodes for x in (n, *_flat(n["children"]))]


def test_a_scope_owns_its_childrens_kernels_and_states_its_calls(api: Api) -> None:
    (s,) = find_sessions(CAPTURE).values()
    device, scope = list(s.records("device")), list(s.records("scope"))
    for stream, recs in (("device", device), ("scope", scope)):
        for i in range(0, len(recs), 2000):
            r = api.post_events(stream, ev.encode_lines(recs[i : i + 2000]))
            assert r.status_code == 200 and r.json()["rejected"] == [], r.text
    paths = {r.id: r.value for r in scope if isinstance(r, ev.DictEntry) and r.kind == "scope"}
    begins = {r.inst: r for r in scope if isinstance(r, ev.ScopeBegin)}
    ends = {r.inst: r for r in scope if isinstance(r, ev.ScopeEnd)}
    names = {r.id: r.launch.name for r in device if isinstance(r, ev.DictEntry) and r.launch is not None}
    kernels = [r for r in device if isinstance(r, ev.Kernel)]

    nodes = _flat(api.get(f"/sessions/{s.session_id}/scopes").json()["roots"])
    assert nodes
    for node in nodes:
        path, pid = node["path"], node["scope_id"]
        calls = sorted(ends[i].ts_ns - b.ts_ns for i, b in begins.items() if b.path_id == pid and i in ends)
        assert node["wall_min_ns"] == calls[0] and node["wall_max_ns"] == calls[-1]
        assert node["wall_p50_ns"] == statistics.median(calls)

        inside = {
            i
            for i, b in begins.items()
            if paths[b.path_id] == path or paths[b.path_id].startswith(path + "/")
        }
        mine = [k for k in kernels if k.scope_inst in inside]
        own = [k for k in mine if begins[k.scope_inst].path_id == pid]  # type: ignore[index]
        got = api.get(f"/sessions/{s.session_id}/scopes/{pid}/kernels", params={"limit": 10_000}).json()
        assert got["path"] == path and got["kernels"] == len(mine) == node["kernels_total"]
        assert got["gpu_ns"] == sum(k.end_ns - k.start_ns for k in mine) == node["gpu_total_ns"]
        want = Counter(names[k.launch_id] for k in mine)
        assert {i["name"]: i["count"] for i in got["items"]} == dict(want)
        self_by_name: dict[str, int] = defaultdict(int)
        for k in own:
            self_by_name[names[k.launch_id]] += 1
        assert {i["name"]: i["self_count"] for i in got["items"] if i["self_count"]} == dict(self_by_name)
        assert sum(i["self_count"] for i in got["items"]) == node["kernels"]
    step = next(n for n in nodes if n["path"] == "step")
    assert step["kernels"] == 0 < step["kernels_total"]  # the case the Scopes tab said "no kernels" for
    assert api.get(f"/sessions/{s.session_id}/scopes/999999/kernels").status_code == 404

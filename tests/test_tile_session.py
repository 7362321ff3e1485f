"""bench/tile_session.py is the JS builder's twin: the same tiled session, record for record and byte for byte
(frontend/e2e/harness.mjs's tilePlan + tiledLines, written to a file by bench/tile_lines.mjs), and it lands
whole in a real backend."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "examples" / "captures"
NODE = shutil.which("node")
need_node = pytest.mark.skipif(
    NODE is None, reason="node is not installed (CI has it): no JS builder to compare with"
)


@functools.cache
def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def tile() -> Any:
    return _load("tile_session")


def js_session(
    tmp_path: Path, capture: Path, kernels: int, overlay: bool
) -> tuple[list[bytes], dict[str, Any]]:
    out = tmp_path / "js.ndjson"
    cmd = [
        str(NODE),
        str(ROOT / "bench" / "tile_lines.mjs"),
        "--capture",
        str(capture),
        "--kernels",
        str(kernels),
    ]
    r = subprocess.run(
        [*cmd, *(["--overlay"] if overlay else []), "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    return out.read_bytes().split(b"\n"), json.loads(r.stdout)


@need_node
@pytest.mark.parametrize(
    ("capture", "copies", "overlay"),
    [
        ("memcpy_heavy", 3, False),  # kernels and copies (with float throughput), a 1.0 in session_start
        ("deep_sass", 3, False),  # kernels and memsets
        ("memcpy_heavy", 2, True),  # laid over each other
    ],
)
def test_the_python_session_is_the_js_session_byte_for_byte(
    tmp_path: Path, capture: str, copies: int, overlay: bool
) -> None:
    cap = CAPTURES / capture
    per = sum(
        json.loads(x)["type"] == "kernel"
        for f in cap.glob("*.device.*.log")
        for x in f.read_text().splitlines()
    )
    # a target just past copies - 1 whole captures: both round it up to `copies`
    js, js_made = js_session(tmp_path, cap, per * (copies - 1) + 1, overlay)
    plan = tile().tile_plan(cap, per * (copies - 1) + 1, overlay)
    # small batches: the lines must not depend on where a body ends
    py = b"".join(body for body, _ in tile().batches(plan, 7)).split(b"\n")
    assert py[-1] == js[-1] == b"", "every line ends with a newline"
    assert len(py) == len(js) == plan.made["records"] + 1
    for i, (a, b) in enumerate(zip(py, js, strict=True)):
        assert a == b, f"line {i} differs:\n python {a[:400]!r}\n js     {b[:400]!r}"
    assert json.loads(tile().made_json(plan.made)) == js_made
    assert js_made["copies"] == copies and js_made["kernels"] == per * copies
    recs = [json.loads(x) for x in js[:-1]]
    assert [r["seq"] for r in recs] == list(range(len(recs)))
    assert {r["session_id"] for r in recs} == {js_made["sid"]}
    assert recs[-1]["type"] == "session_end" and recs[-1]["records"] == len(recs)


@need_node
def test_numbers_are_written_as_javascript_writes_them(tmp_path: Path) -> None:
    rng = random.Random(24)
    xs = [0.0, -0.0, 1.0, 7.9, 0.5, 1e-6, 1e-7, 1.5e-7, 1e20, 1e21, 1.2e21, 123456789.125, 5e-324]
    xs += [1.7976931348623157e308, 2.0**53, 2.0**53 + 2, 0.1 + 0.2, 1 / 3, 100.0, 1e16, 12345e-10]
    xs += [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 25) for _ in range(400)]
    xs += [float(rng.randint(0, 2**60)) for _ in range(50)]
    (tmp_path / "in").write_text("".join(f"{x!r}\n" for x in xs))
    r = subprocess.run(
        [
            str(NODE),
            str(ROOT / "bench" / "tile_lines.mjs"),
            "--js-numbers",
            str(tmp_path / "in"),
            str(tmp_path / "out"),
        ]
    )
    assert r.returncode == 0
    want = (tmp_path / "out").read_text().splitlines()
    got = [tile().js_number(x) for x in xs]
    assert [(x, g) for x, g, w in zip(xs, got, want, strict=True) if g != w] == []


def test_values_the_js_would_not_copy_exactly_are_refused() -> None:
    jsify = tile().jsify
    assert jsify({"start_ns": 2**62, "clock": {"measured_at_ns": 2**62}, "bytes": 2**53}, (), "r") == {
        "start_ns": 2**62,
        "clock": {"measured_at_ns": 2**62},
        "bytes": 2**53,
    }
    with pytest.raises(ValueError, match="past 2\\^53"):
        jsify({"corr_id": 2**53 + 1}, (), "r")  # JSON.parse rounds it
    with pytest.raises(ValueError, match="as a string"):
        jsify({"launch": {"start_ns": 5}}, (), "r")  # the JS's regex quotes it, BigInt only at the top
    with pytest.raises(ValueError, match="not an integer"):
        jsify({"end_ns": 1.5}, (), "r")


def test_it_lands_whole_in_a_real_backend_once(tmp_path: Path) -> None:
    bench = _load("backend_memory")  # its real backend process (own port, data dir, admin token)
    b = bench.Backend(tmp_path / "data", env={"PYTHONPATH": str(ROOT / "src")})
    try:
        cmd = [sys.executable, str(ROOT / "bench" / "tile_session.py"), "--url", b.url, "--capture"]
        cmd += [str(CAPTURES / "memcpy_heavy"), "--kernels", "60", "--batch", "50"]  # first, 5 middle, last
        env = {**os.environ, "GPUFL_TOKEN": bench.ADMIN}
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        made = json.loads(r.stdout)
        assert made["ingested"] and made["records"] == 2 + 4 + 120 * 3
        d = httpx.get(
            f"{b.url}/api/v1/sessions/{made['sid']}", headers={"Authorization": f"Bearer {bench.ADMIN}"}
        ).json()
        dev = next(s for s in d["streams"] if s["stream"] == "device")
        assert (dev["received"], dev["written"], dev["missing"], dev["ended"]) == (366, 366, 0, True)
        assert (d["totals"]["kernels"], d["totals"]["memcpys"]) == (60, 300)
        assert d["header"]["app"] == "memcpy_heavy-tiled"
        again = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert again.returncode == 0 and not json.loads(again.stdout)["ingested"], again.stderr
        # a key that may not ingest: the build stops, loudly
        key = httpx.post(
            f"{b.url}/api/v1/keys",
            json={"role": "read", "name": "ro"},
            headers={"Authorization": f"Bearer {bench.ADMIN}"},
        ).json()["token"]
        cmd[cmd.index("60")] = "100"
        refused = subprocess.run(cmd, capture_output=True, text=True, env={**env, "GPUFL_TOKEN": key})
        assert refused.returncode != 0 and "ingest: 403" in refused.stderr, refused.stderr
    finally:
        assert "Traceback" not in b.stop()

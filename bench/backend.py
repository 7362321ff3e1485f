"""Backend benchmark: HTTP ingest rate into the store and p95 latency of the UI's heavy queries on a
10M-kernel session, on DuckDB (embedded) and PostgreSQL.

    .venv/bin/python bench/backend.py [--kernels 10000000] [--engines duckdb,postgresql]
                                      [--pg-dsn postgresql://postgres@127.0.0.1:5432/postgres]

The session is made by tiling a committed capture (``examples/captures/<name>/*.device.*.log``: its
kernels and launch dict entries, repeated with timestamps shifted by the capture's span and seqs
renumbered) when one exists; otherwise by a synthetic training-loop generator (the same record types,
50 kernel names with log-normal durations on 4 CUDA streams). Each run starts a real ``gpufl-backend``
process on a fresh store and POSTs NDJSON batches of 50,000 records from two concurrent clients. The
batches are rendered to files before the timed phase (as a real agent's input is already-serialized log
lines), byte for byte what ``device_batches`` encodes, so the timed phase only reads the files and POSTs
them; ``--encode-inline`` encodes them while posting instead, as earlier versions of this benchmark did
(the client's encoding then shares the cores with the backend). Then each query is timed ``--runs``
times over HTTP: the kernels' summary, a timeline window, the system series, and the thread tracks'
``/launches`` as the Kernels tab asks for it (its window: the view widened by half a span each side, at a
power-of-two resolution of one or two buckets per pixel of a 1,500 px plot) for the whole session and for
views zoomed to 2^19, 2^21, 2^23 and 2^26 ns per bucket. ``--copies`` tiles the capture's copies and memsets
too (the same ``--kernels`` kernels, plus theirs), and times ``/memory/timeline`` the same way.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import platform
import queue
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from gpufl.contract import events as ev

TOKEN = "bench-admin-token"
BATCH = 50_000
PLOT_PX = 1_500  # the Kernels tab's plot width the /launches and /memory/timeline windows are made for

Activity = ev.Kernel | ev.Memcpy | ev.Memset
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the session ---------------------------------------------------------------------------------------


def load_capture(
    name: str = "gpt_train", copies: bool = False
) -> tuple[str, list[ev.DictEntry], list[Activity]] | None:
    """The committed capture ``name`` (a real training loop by default: the first folder in name order was
    tiled before, which changed whenever a capture was added): its kernels, and with ``copies`` its copies
    and memsets too, in start order."""
    files = sorted(glob.glob(str(ROOT / f"examples/captures/{name}/*.device.*.log")))
    if not files:
        return None
    files = [f for f in files if Path(f).parent.name == name]
    dicts: dict[int, ev.DictEntry] = {}
    kernels: list[Activity] = []
    kinds = (ev.Kernel, ev.Memcpy, ev.Memset) if copies else (ev.Kernel,)
    for path in files:
        with open(path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                rec = ev.decode(line)
                if isinstance(rec, ev.DictEntry) and rec.kind == "launch":
                    dicts.setdefault(rec.id, rec)
                elif isinstance(rec, kinds):
                    kernels.append(rec)
    n = sum(isinstance(k, ev.Kernel) for k in kernels)
    if not n:
        return None
    kernels.sort(key=lambda k: k.start_ns)
    extra = f" and {len(kernels) - n:,} copies and memsets" if copies else ""
    return f"tiled capture {name} ({n:,} kernels{extra})", list(dicts.values()), kernels


def synthetic(n: int = 200_000) -> tuple[str, list[ev.DictEntry], list[Activity]]:
    rng = random.Random(42)
    dicts = [
        ev.DictEntry(
            session_id="x",
            stream="device",
            kind="launch",
            id=i,
            launch=ev.LaunchConfig(
                name=f"kernel_{i}_gemm_bf16",
                device_id=0,
                grid=(132 * (1 + i % 4), 1, 1),
                block=(256, 1, 1),
                num_regs=32 + i % 64,
                occupancy=0.5,
            ),
        )
        for i in range(50)
    ]
    mu = [rng.uniform(8, 13) for _ in range(50)]
    kernels: list[Activity] = []
    t = 1_700_000_000_000_000_000
    for i in range(n):
        lid = min(49, int(rng.expovariate(0.15)))
        dur = int(rng.lognormvariate(mu[lid], 0.4))
        s = rng.randrange(4)
        kernels.append(
            ev.Kernel(
                session_id="x",
                stream="device",
                launch_id=lid,
                device_id=0,
                stream_id=7 + s,
                corr_id=i,
                start_ns=t,
                end_ns=t + dur,
                api_start_ns=t - 5000,
                api_dur_ns=3000,
                thread_id=1234,
                scope_inst=i // 200,
            )
        )
        t += dur // 4 + rng.randrange(500, 3000)
    return "synthetic training loop (50 kernel names, 4 streams)", dicts, kernels


def records_for(template: list[Activity], kernels: int) -> int:
    """How many records of ``template``, tiled, hold ``kernels`` kernels (up to and with the last of them)."""
    at = [i for i, r in enumerate(template) if isinstance(r, ev.Kernel)]
    tiles, rest = divmod(kernels, len(at))
    return tiles * len(template) + (at[rest - 1] + 1 if rest else 0)


def device_batches(
    sid: str, dicts: list[ev.DictEntry], template: list[Activity], total: int
) -> Iterator[bytes]:
    """NDJSON batches of the session's device stream: session_start, then the template tiled (``total``
    records)."""
    t0 = template[0].start_ns
    span = template[-1].end_ns - t0 + 1000
    replace = msgspec.structs.replace
    enc = msgspec.json.Encoder()
    buf = bytearray(_session_head(sid, dicts, t0))
    seq = 1 + len(dicts)
    in_batch = 1 + len(dicts)
    made = 0
    tile = 0
    while made < total:
        shift = tile * span
        for k in template:
            if made >= total:
                break
            api = getattr(k, "api_start_ns", None)  # memsets have none
            rec = replace(
                k,
                session_id=sid,
                seq=seq,
                start_ns=k.start_ns + shift,
                end_ns=k.end_ns + shift,
                **({} if api is None else {"api_start_ns": api + shift}),
            )
            enc.encode_into(rec, buf, len(buf))
            buf += b"\n"
            seq += 1
            made += 1
            in_batch += 1
            if in_batch == BATCH:
                yield bytes(buf)
                buf.clear()
                in_batch = 0
        tile += 1
    if buf:
        yield bytes(buf)


def _bench_start(sid: str, stream: str, t0: int, **kw: Any) -> ev.SessionStart:
    """The session_start of the bench session's ``stream``."""
    return ev.SessionStart(
        session_id=sid,
        stream=stream,  # type: ignore[arg-type]
        seq=0,
        app="bench",
        host="bench-host",
        pid=1,
        start_ns=t0,
        gpufl_version="bench",
        **kw,
    )


def _session_head(sid: str, dicts: list[ev.DictEntry], t0: int) -> bytes:
    """The first lines of the device stream: session_start, then the launch dict entries."""
    start = _bench_start(
        sid, "device", t0, devices=[ev.DeviceProperties(device_id=0, name="NVIDIA H100 80GB HBM3")]
    )
    enc = msgspec.json.Encoder()
    lines = [enc.encode(start)]
    lines += [enc.encode(msgspec.structs.replace(d, session_id=sid, seq=i + 1)) for i, d in enumerate(dicts)]
    return b"\n".join(lines) + b"\n"


# Sentinels standing for the fields that change from tile to tile (seq, start_ns, end_ns, api_start_ns):
# each template kernel is encoded once with them, and split around them into constant pieces.
_SENTINELS = (9_111_111_111_111_111_101, 9_111_111_111_111_111_102, 9_111_111_111_111_111_103,
              9_111_111_111_111_111_104)  # fmt: skip
_SPLIT = re.compile(b"(" + b"|".join(str(s).encode() for s in _SENTINELS) + b")")


def render_batches(
    sid: str, dicts: list[ev.DictEntry], template: list[Activity], total: int, folder: Path
) -> list[Path]:
    """The batches of ``device_batches``, byte for byte, written to files in ``folder``: the tiles are made
    column-wise with Arrow (each template kernel's line split around its variable fields, the fields shifted
    per tile and joined back in C), not a Python loop per record."""
    enc = msgspec.json.Encoder()
    t0 = template[0].start_ns
    span = template[-1].end_ns - t0 + 1000
    pieces: list[list[bytes]] = [[] for _ in range(5)]
    has_api = []
    for k in template:
        api = getattr(k, "api_start_ns", None)  # memsets have none
        line = (
            enc.encode(
                msgspec.structs.replace(
                    k,
                    session_id=sid,
                    seq=_SENTINELS[0],
                    start_ns=_SENTINELS[1],
                    end_ns=_SENTINELS[2],
                    **({} if api is None else {"api_start_ns": _SENTINELS[3]}),
                )
            )
            + b"\n"
        )
        parts = _SPLIT.split(line)
        slots = [int(x) for x in parts[1::2]]
        consts = parts[0::2]
        want = list(_SENTINELS[: len(slots)])
        if slots != want or len(slots) < 3:
            raise SystemExit("template kernel does not encode its fields in the expected order")
        if len(slots) == 3:
            consts = [*consts[:3], b"", consts[3]]
        for i, c in enumerate(consts):
            pieces[i].append(c)
        has_api.append(api is not None)
    consts_a = [pa.array(p, pa.binary()) for p in pieces]
    starts = pa.array([k.start_ns for k in template], pa.int64())
    ends = pa.array([k.end_ns for k in template], pa.int64())
    apis = pa.array([getattr(k, "api_start_ns", None) for k in template], pa.int64())
    nt = len(template)
    offsets_a = pa.array(range(nt), pa.int64())
    head = _session_head(sid, dicts, t0)
    first_seq = 1 + len(dicts)
    in_first = 1 + len(dicts)
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    out = None
    in_batch = BATCH  # open the first file below
    made = 0
    tile = 0

    def new_file() -> Any:
        path = folder / f"batch-{len(files):05d}.ndjson"
        files.append(path)
        return open(path, "wb")

    out = new_file()
    out.write(head)
    in_batch = in_first
    while made < total:
        n = min(nt, total - made)
        shift = tile * span
        seq0 = first_seq + made
        cols = [
            pc.add(offsets_a.slice(0, n), seq0),
            pc.add(starts.slice(0, n), shift),
            pc.add(ends.slice(0, n), shift),
            pc.add(apis.slice(0, n), shift),
        ]
        strs = [pc.fill_null(pc.cast(pc.cast(c, pa.string()), pa.binary()), b"") for c in cols]
        lines = pc.binary_join_element_wise(
            consts_a[0].slice(0, n), strs[0], consts_a[1].slice(0, n), strs[1], consts_a[2].slice(0, n),
            strs[2], consts_a[3].slice(0, n), strs[3], consts_a[4].slice(0, n), b"",
        )  # fmt: skip
        assert lines.offset == 0
        offsets = memoryview(lines.buffers()[1]).cast("i")  # int32: a tile's lines are far below 2 GiB
        data = memoryview(lines.buffers()[2])
        pos = 0
        while pos < n:
            take = min(n - pos, BATCH - in_batch)
            if take == 0:
                out.close()
                out = new_file()
                in_batch = 0
                continue
            out.write(data[offsets[pos] : offsets[pos + take]])
            pos += take
            in_batch += take
        made += n
        tile += 1
    out.close()
    return files


def system_batch(sid: str, t0: int, t1: int, hz: float = 10) -> bytes:
    step = int(1e9 / hz)
    recs: list[ev.Record] = [_bench_start(sid, "system", t0)]
    rng = random.Random(1)
    for i, t in enumerate(range(t0, t1, step)):
        recs.append(
            ev.SystemSample(
                session_id=sid,
                stream="system",
                seq=i + 1,
                ts_ns=t,
                host=ev.HostSample(cpu_pct=rng.uniform(0, 100), ram_used_mib=20000),
                gpus=[
                    ev.GpuSample(
                        device_id=0,
                        util_gpu_pct=rng.uniform(0, 100),
                        power_mw=rng.uniform(1e5, 7e5),
                        temp_c=60,
                        mem_used_mib=40000,
                        clk_sm_mhz=1980,
                    )
                ],
            )
        )
    return ev.encode_lines(recs)


# ---- one engine ----------------------------------------------------------------------------------------


def serve(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufl.backend.cli", "--port", str(port), "--log-level", "warning", *args],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"backend exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit("backend did not start")


def read_files(files: list[Path]) -> Iterator[bytes]:
    for f in files:
        yield f.read_bytes()


def post_all(url: str, batches: Iterable[bytes], clients: int = 2) -> tuple[int, float]:
    q: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    stored = [0]
    errors: list[str] = []
    lock = threading.Lock()

    def producer() -> None:
        for b in batches:
            q.put(b)
        for _ in range(clients):
            q.put(None)

    def client() -> None:
        with httpx.Client(
            timeout=600, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
        ) as c:
            while (body := q.get()) is not None:
                r = c.post(f"{url}/api/v1/events/device", content=body)
                if r.status_code == 503:
                    time.sleep(0.1)
                    q.put(body)
                    continue
                if r.status_code != 200 or r.json()["rejected"]:
                    errors.append(r.text[:300])
                with lock:
                    stored[0] += r.json().get("stored", 0)

    t = time.perf_counter()
    threads = [threading.Thread(target=producer)] + [threading.Thread(target=client) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise SystemExit(f"ingest errors: {errors[:3]}")
    return stored[0], time.perf_counter() - t


def p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def ui_window(v0: int, v1: int) -> dict[str, int]:
    """The window and resolution the Kernels tab asks /launches and /memory/timeline for when it shows
    [v0, v1) on a PLOT_PX-wide plot (frontend loader.ts, lod.ts sideResolution): the view widened by half
    its span each side, at the power of two nearest above one bucket per two pixels of that window."""
    span = v1 - v0
    w0, w1 = max(0, v0 - span // 2), v1 + span // 2
    res = 1 << max(0, math.ceil(math.log2(max(1, span * 2) / (2 * PLOT_PX))))
    return {"start_ns": w0, "end_ns": w1, "resolution_ns": res}


def time_queries(
    url: str, sid: str, t0: int, t1: int, runs: int, copies: bool = False, side_queries: bool = True
) -> dict[str, tuple[float, float]]:
    rng = random.Random(7)
    h = {"Authorization": f"Bearer {TOKEN}"}
    out = {}
    with httpx.Client(timeout=120, headers=h) as c:

        def window() -> dict[str, int]:
            w = (t1 - t0) // 10
            s = rng.randrange(t0, t1 - w)
            return {"start_ns": s, "end_ns": s + w, "resolution_ns": max(1, w // 2000)}

        def zoomed(shift: int) -> dict[str, int]:
            # a view of PLOT_PX * 0.75 * 2^shift ns at a random place: ui_window gives resolution 2^shift
            v = PLOT_PX * 3 * (1 << shift) // 4
            s = rng.randrange(t0, t1 - v)
            return ui_window(s, s + v)

        side = [] if not side_queries else ["launches", *(["memory/timeline"] if copies else [])]
        routes: dict[str, Any] = {}
        for route in side:
            routes[f"{route}, whole session"] = lambda r=route: (
                f"/api/v1/sessions/{sid}/{r}",
                ui_window(t0, t1),
            )
            for shift in (19, 21, 23, 26):
                routes[f"{route}, zoomed (2^{shift} ns buckets)"] = lambda r=route, k=shift: (
                    f"/api/v1/sessions/{sid}/{r}",
                    zoomed(k),
                )

        cases = {
            "kernels/summary": lambda: (f"/api/v1/sessions/{sid}/kernels/summary", {}),
            "timeline window (10% of session, 2000 px)": lambda: (
                f"/api/v1/sessions/{sid}/kernels",
                window(),
            ),
            "system (all series, 300 points)": lambda: (f"/api/v1/sessions/{sid}/system", {"points": 300}),
            **routes,
        }
        for name, make in cases.items():
            times = []
            for i in range(runs + 2):
                path, params = make()
                t = time.perf_counter()
                r = c.get(url + path, params=params)
                dt = time.perf_counter() - t
                if r.status_code != 200:
                    raise SystemExit(f"{name}: HTTP {r.status_code} {r.text[:200]}")
                if i >= 2:  # two warm-up requests
                    times.append(dt * 1000)
            out[name] = (p(times, 0.5), p(times, 0.95))
    return out


def run_engine(
    engine: str, a: argparse.Namespace, source: tuple[str, list[ev.DictEntry], list[Activity]]
) -> dict:
    env = {**os.environ, "GPUFL_ADMIN_TOKEN": TOKEN}
    schema = None
    tmp = tempfile.mkdtemp(prefix="gpufl-bench-")
    rendered = tempfile.mkdtemp(prefix="gpufl-bench-batches-")
    if engine == "duckdb":
        args = ["--data-dir", tmp]
    else:
        schema = "bench_" + secrets.token_hex(4)
        with psycopg.connect(a.pg_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in a.pg_dsn else "?"
        args = ["--database", f"{a.pg_dsn}{sep}options=-csearch_path%3D{schema}"]
    proc, url = serve(args, env)
    try:
        sid = "bench-" + secrets.token_hex(4)
        _, dicts, template = source
        total = records_for(template, a.kernels)
        if a.encode_inline:
            batches: Iterable[bytes] = device_batches(sid, dicts, template, total)
        else:
            batches = read_files(render_batches(sid, dicts, template, total, Path(rendered)))
        stored, secs = post_all(url, batches)
        d = httpx.get(f"{url}/api/v1/sessions/{sid}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        streams = {s["stream"]: s for s in d["streams"]}
        t0, t1 = streams["device"]["first_ns"], streams["device"]["last_ns"]
        # In batches within the backend's record limit (a 10M-kernel session spans ~1.5 h: ~53k samples).
        lines = system_batch(sid, t0, t1).splitlines(keepends=True)
        for i in range(0, len(lines), BATCH):
            r = httpx.post(
                f"{url}/api/v1/events/system",
                content=b"".join(lines[i : i + BATCH]),
                timeout=600,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"},
            )
            assert r.status_code == 200, r.text
        assert d["totals"]["kernels"] == a.kernels, d["totals"]
        q = time_queries(url, sid, t0, t1, a.runs, a.copies, not a.no_side_queries)
        size = (
            sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) if engine == "duckdb" else None
        )
        return {
            "engine": engine,
            "stored": stored,
            "secs": secs,
            "rate": stored / secs,
            "queries": q,
            "span_s": (t1 - t0) / 1e9,
            "size": size,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(rendered, ignore_errors=True)
        if schema:
            with psycopg.connect(a.pg_dsn, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", type=int, default=10_000_000)
    ap.add_argument("--engines", default="duckdb,postgresql")
    ap.add_argument(
        "--pg-dsn",
        default=os.environ.get("GPUFL_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument(
        "--capture", default="gpt_train", help="the committed capture to tile (examples/captures/)"
    )
    ap.add_argument(
        "--copies",
        action="store_true",
        help="tile the capture's copies and memsets too, and time /memory/timeline",
    )
    ap.add_argument(
        "--no-side-queries",
        action="store_true",
        help="leave out /launches and /memory/timeline (a tree from before their stored levels, #24, takes "
        "seconds per whole-session query)",
    )
    ap.add_argument(
        "--encode-inline",
        action="store_true",
        help="encode the batches while posting (the client's encoding shares the cores with the backend)",
    )
    a = ap.parse_args()
    source = load_capture(a.capture, a.copies) or synthetic()
    print(f"session: {a.kernels:,} kernels from {source[0]}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    results = [run_engine(e, a, source) for e in a.engines.split(",")]
    print()
    print(
        f"| {'engine':<10} | {'ingest events/s (HTTP)':>22} | {'query':<42} | {'p50 ms':>8} | {'p95 ms':>8} |"
    )
    print(f"|{'-' * 12}|{'-' * 24}|{'-' * 44}|{'-' * 10}|{'-' * 10}|")
    for r in results:
        first = True
        for name, (p50, p95) in r["queries"].items():
            rate = f"{r['rate']:,.0f}" if first else ""
            print(
                f"| {r['engine'] if first else '':<10} | {rate:>22} | {name:<42} | {p50:>8.1f} | {p95:>8.1f} |"
            )
            first = False
    what = "records (kernels, copies, memsets)" if a.copies else "kernels"
    for r in results:
        extra = f", store {r['size'] / 2**20:,.0f} MiB" if r["size"] else ""
        print(
            f"{r['engine']}: {r['stored']:,} {what} in {r['secs']:.1f} s, session span {r['span_s']:.0f} s{extra}"
        )


if __name__ == "__main__":
    main()

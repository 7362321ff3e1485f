"""Backend memory under concurrent worst-case ingest bodies (issue #16's bar: <= 1 GiB RSS while 8 such
bodies arrive at once, back within 20 % of idle after).

    .venv/bin/python bench/backend_memory.py [--shapes kernel,sync,...] [--clients 8] [--flag=--max-inflight-bytes=...]

Each run starts a real ``gpufl-backend`` process (DuckDB store, default limits unless ``--flag`` says
otherwise) on a fresh data dir and reads its memory from /proc/<pid>/status: ``VmRSS`` sampled every 10 ms
and ``VmHWM`` (reset through /proc/<pid>/clear_refs before each load, so it is that load's peak).

The bodies are records of the committed captures (``examples/captures/*/*.<stream>.*.log``), byte for byte,
one record type per body, cycled over every capture that has it, with only ``session_id`` and ``seq``
rewritten so that every record of every body is a new record (stored, not a duplicate). Each shape is as
large as the limits admit: ``max_batch_records`` records (50,000) unless ``max_decompressed_bytes`` (64 MiB)
or the in-flight memory budget (``gpufl.backend.limits.decode_cost`` of the body <= ``max_inflight_bytes``)
stops it first. The shapes span the two ingest paths and the densest records:

- ``scope_end`` (115 B): the most records per byte of any record in the captures (the engine's path);
- ``sync`` (184 B): the device stream's smallest record (the engine's path);
- ``kernel`` (266 B): the agent's everyday batch (the engine's path);
- ``system_sample`` (~600 B, nested host and GPU objects: the most values per record of the bulk types;
  the Python path);
- ``dict`` (kernel names, up to 6 KB each: the largest text a batch of records reaches; the Python path);
- ``session_start`` (~1.4 KB, argv and options: the most values per record; one session per record, as
  many as ``max_batch_sessions`` (1,000) admits);
- ``kernel_sessions``: a kernel batch spread over ``max_batch_sessions`` sessions (the store's work per
  session: seq ranges, summaries).

Two hostile bodies are refused before their decode (413, or 503 while others hold the budget) and are there
to show that they cost nothing: ``over_records`` (kernel lines up to the decompressed limit: ~250,000
records, 5x the batch limit) and ``bomb`` (a gzip of newlines inflating to 16x the decompressed limit).

``N`` clients (8) each send one body of the shape at once and, like the agent, retry a 503 after its
``Retry-After``. "idle" is read after a warm-up (every committed capture ingested once, 8 at a time) and
2 s of quiet; "after" once the process has been quiet for ``--quiet`` seconds after the load (the backend
hands memory back 1 s and 15 s after the last big ingest ends).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gpufl.backend.config import Settings
from gpufl.backend.limits import decode_cost

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "examples" / "captures"
ADMIN = "bench-memory-admin-token"
MIB = 1 << 20

# record type -> stream
SHAPES: dict[str, str] = {
    "scope_end": "scope",
    "sync": "device",
    "kernel": "device",
    "system_sample": "system",
    "dict": "device",
    "session_start": "device",
    "kernel_sessions": "device",
}
# shape -> the record type its lines are of (the shape's name where it is one)
RECORD_TYPE = {"kernel_sessions": "kernel"}
HOSTILE: dict[str, str] = {"over_records": "device", "bomb": "device"}


# ---- bodies ------------------------------------------------------------------------------------------------


def capture_lines(stream: str, rtype: str) -> list[bytes]:
    """Every line of type ``rtype`` in the committed captures' ``stream`` logs, in path order."""
    tag = b'{"type":"%s",' % rtype.encode()
    return [
        line
        for p in sorted(CAPTURES.glob(f"*/*.{stream}.*.log"))
        for line in p.read_bytes().splitlines()
        if line.startswith(tag)
    ]


_SID = re.compile(rb'"session_id":"[^"]*"')
_SEQ = re.compile(rb'"seq":\d+')


def _renamed(line: bytes, sid: str, seq: int) -> bytes:
    """``line`` with its session id and seq replaced (once each: the first occurrence is the record's own)."""
    line = _SID.sub(b'"session_id":"%s"' % sid.encode(), line, count=1)
    return _SEQ.sub(b'"seq":%d' % seq, line, count=1)


def gzip_parts(parts: Sequence[bytes]) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return b"".join(c.compress(x) for x in parts) + c.flush()


def shape_lines(rtype: str, sid: str, settings: Settings) -> list[bytes]:
    """The NDJSON lines (newline included) of the largest body of ``rtype`` records the limits admit."""
    stream = SHAPES[rtype]
    source = capture_lines(stream, RECORD_TYPE.get(rtype, rtype))
    if not source:
        raise SystemExit(f"no {rtype} records in {CAPTURES}")
    out: list[bytes] = []
    size = cost = 0
    # A session_start opens a session (seq 0), one per record up to the sessions a batch may hold;
    # kernel_sessions spreads the batch's kernels over that many sessions; any other shape continues
    # ``sid``'s stream from seq 1.
    n = settings.max_batch_sessions if rtype == "session_start" else settings.max_batch_records
    spread = settings.max_batch_sessions
    for i in range(n):
        src = source[i % len(source)]
        if rtype == "session_start":
            line = _renamed(src, f"{sid}-{i}", 0)
        elif rtype == "kernel_sessions":
            line = _renamed(src, f"{sid}-{i % spread}", i // spread + 1)
        else:
            line = _renamed(src, sid, i + 1)
        line += b"\n"
        c = decode_cost(line)
        if size + len(line) > settings.max_decompressed_bytes or cost + c > settings.max_inflight_bytes:
            break
        out.append(line)
        size += len(line)
        cost += c
    return out


def hostile_body(name: str, sid: str, settings: Settings) -> bytes:
    limit = settings.max_decompressed_bytes
    if name == "bomb":
        return gzip_parts([b"\n" * MIB] * (16 * limit // MIB))
    kernels = capture_lines("device", "kernel")
    lines, size, i = [], 0, 0
    while True:
        line = _renamed(kernels[i % len(kernels)], sid, i + 1) + b"\n"
        if size + len(line) > limit:
            break
        lines.append(line)
        size += len(line)
        i += 1
    return gzip_parts(lines)


@dataclass
class Body:
    shape: str
    stream: str
    gz: bytes
    records: int
    inflated: int


def bodies(shape: str, clients: int, settings: Settings, tag: str = "") -> list[Body]:
    """``clients`` bodies of ``shape``, each of its own session(s)."""
    out = []
    for k in range(clients):
        sid = f"mem-{shape.replace('_', '-')}{tag}-{k}"
        if shape in HOSTILE:
            gz = hostile_body(shape, sid, settings)
            out.append(Body(shape, HOSTILE[shape], gz, 0, 0))
            continue
        lines = shape_lines(shape, sid, settings)
        out.append(Body(shape, SHAPES[shape], gzip_parts(lines), len(lines), sum(map(len, lines))))
    return out


# ---- the process -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Backend:
    """``gpufl-backend`` on loopback, its own process (so its memory is its own), on a fresh ``data_dir``."""

    def __init__(self, data_dir: Path, flags: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        penv = {k: v for k, v in os.environ.items() if not k.startswith(("GPUFL_", "MALLOC_"))}
        penv.update(GPUFL_ADMIN_TOKEN=ADMIN, **(env or {}))
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gpufl.backend.cli", "--port", str(self.port)),
                *("--data-dir", str(data_dir), "--log-level", "warning", *flags),
            ],
            env=penv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited: {self.proc.communicate()[1]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("backend did not come up")
            time.sleep(0.1)

    def status(self) -> dict[str, str]:
        lines = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        return {k: v.strip() for k, _, v in (x.partition(":") for x in lines)}

    def rss(self) -> int:
        return int(self.status()["VmRSS"].split()[0]) * 1024

    def hwm(self) -> int:
        return int(self.status()["VmHWM"].split()[0]) * 1024

    def reset_hwm(self) -> bool:
        """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False where refused."""
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def kinds(self) -> str:
        s = self.status()
        return " ".join(f"{k}={s[k]}" for k in ("RssAnon", "RssFile", "Threads"))

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


# ---- the load ----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    statuses: list[int] = field(default_factory=list)
    retries: int = 0
    stored: int = 0
    seconds: float = 0.0


def post_concurrently(url: str, items: Sequence[Body], retry_for: float = 120.0) -> Outcome:
    """Each body from its own client, all at once; a 503 is retried after its Retry-After (as the agent
    does) until ``retry_for`` seconds have passed."""
    out = Outcome()
    lock = threading.Lock()
    hdr = {
        "Authorization": f"Bearer {ADMIN}",
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
    }
    start = threading.Barrier(len(items))

    def client(b: Body) -> None:
        deadline = time.monotonic() + retry_for
        with httpx.Client(timeout=300, headers=hdr) as c:
            start.wait()
            while True:
                r = c.post(f"{url}/api/v1/events/{b.stream}", content=b.gz)
                if r.status_code == 503 and time.monotonic() < deadline:
                    with lock:
                        out.retries += 1
                    time.sleep(float(r.headers.get("retry-after", "1")))
                    continue
                with lock:
                    out.statuses.append(r.status_code)
                    if r.status_code == 200:
                        out.stored += int(r.json()["stored"])
                return

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(b,)) for b in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.seconds = time.perf_counter() - t0
    out.statuses.sort()
    return out


def warm_up(url: str, clients: int = 8) -> None:
    """Every committed capture's streams, as captured, ``clients`` requests at a time: the process then
    holds what serving at all keeps (code, worker threads and their DuckDB cursors)."""
    logs = sorted(CAPTURES.glob("*/*.log"))
    items = [
        Body("warm", p.name.split(".")[-3], gzip_parts([p.read_bytes()]), 0, p.stat().st_size) for p in logs
    ]
    for i in range(0, len(items), clients):
        o = post_concurrently(url, items[i : i + clients])
        if set(o.statuses) != {200}:
            raise RuntimeError(f"warm-up: {o.statuses}")


class Sampler:
    """RSS every 10 ms while the load runs (beside VmHWM, which catches what falls between samples)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.peak = 0
        self._done = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.backend.rss())
            time.sleep(0.01)

    def __enter__(self) -> Sampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._t.join()


@dataclass
class Reading:
    shape: str
    records: int
    inflated_mib: float
    gzip_kib: float
    outcome: Outcome
    idle: int
    peak: int
    after: int
    after_kinds: str


def measure(backend: Backend, items: Sequence[Body], idle: int, quiet: float) -> Reading:
    """One load of ``items`` at once: its peak (VmHWM reset first, and sampled RSS), then RSS after
    ``quiet`` seconds."""
    hwm_ok = backend.reset_hwm()
    with Sampler(backend) as s:
        outcome = post_concurrently(backend.url, items)
    peak = max(s.peak, backend.hwm() if hwm_ok else 0)
    time.sleep(quiet)
    return Reading(
        items[0].shape,
        items[0].records,
        items[0].inflated / MIB,
        max(len(b.gz) for b in items) / 1024,
        outcome,
        idle,
        peak,
        backend.rss(),
        backend.kinds(),
    )


def settled_idle(backend: Backend, quiet: float = 2.0) -> int:
    time.sleep(quiet)
    return backend.rss()


# ---- the report --------------------------------------------------------------------------------------------


def table(rows: Sequence[Reading]) -> Iterator[str]:
    yield (
        "| shape | records/body | MiB inflated | gzip KiB | answers | 503 retries | s | idle MiB | peak MiB "
        "| after MiB | after/idle |"
    )
    yield "|---|---|---|---|---|---|---|---|---|---|---|"
    for r in rows:
        counts: dict[int, int] = {}
        for s in r.outcome.statuses:
            counts[s] = counts.get(s, 0) + 1
        answers = ", ".join(f"{n}x{s}" for s, n in sorted(counts.items()))
        yield (
            f"| {r.shape} | {r.records:,} | {r.inflated_mib:.1f} | {r.gzip_kib:.0f} | {answers} "
            f"| {r.outcome.retries} | {r.outcome.seconds:.1f} | {r.idle / MIB:.0f} | {r.peak / MIB:.0f} "
            f"| {r.after / MIB:.0f} | {r.after / r.idle:.2f} |"
        )


def settings_from_flags(flags: Sequence[str]) -> Settings:
    """The limits the backend runs with: the defaults, or what ``--max-...=N`` flags set."""
    kw: dict[str, int] = {}
    for f in flags:
        name, _, value = f.lstrip("-").partition("=")
        if value:
            kw[name.replace("-", "_")] = int(value)
    return Settings(**kw)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default=",".join([*SHAPES, *HOSTILE]))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--quiet", type=float, default=20.0, help="seconds idle before 'after' is read")
    ap.add_argument(
        "--flag", action="append", default=[], help="a backend flag, e.g. --flag=--max-inflight-bytes=1e9"
    )
    ap.add_argument("--fresh", action="store_true", help="a fresh backend per shape (default: one for all)")
    args = ap.parse_args()
    settings = settings_from_flags(args.flag)
    shapes = args.shapes.split(",")
    print(
        f"# {platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}; {args.clients} clients; limits: max_decompressed_bytes="
        f"{settings.max_decompressed_bytes}, max_inflight_bytes={settings.max_inflight_bytes}, "
        f"max_batch_records={settings.max_batch_records}, duckdb_memory_limit={settings.duckdb_memory_limit}",
        flush=True,
    )
    rows: list[Reading] = []
    with tempfile.TemporaryDirectory(prefix="gpufl-bench-mem-") as tmp:
        backend: Backend | None = None
        idle = 0
        for i, shape in enumerate(shapes):
            items = bodies(shape, args.clients, settings)
            if backend is None or args.fresh:
                if backend is not None:
                    backend.stop()
                backend = Backend(Path(tmp) / f"data{i}", args.flag)
                cold = settled_idle(backend)
                warm_up(backend.url, args.clients)
                idle = settled_idle(backend)
                print(
                    f"# cold idle {cold / MIB:.0f} MiB, idle after warm-up {idle / MIB:.0f} MiB ({backend.kinds()})",
                    flush=True,
                )
            r = measure(backend, items, idle, args.quiet)
            rows.append(r)
            print(
                f"# {shape}: {r.outcome.statuses} stored {r.outcome.stored:,}; after: {r.after_kinds}",
                flush=True,
            )
        if backend is not None:
            err = backend.stop()
            if "Traceback" in err:
                print(err, file=sys.stderr)
    for line in table(rows):
        print(line)


if __name__ == "__main__":
    main()

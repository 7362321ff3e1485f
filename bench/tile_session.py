"""A tiled session for the UI bench, built in Python: the twin of ``buildTiledSession`` in
frontend/e2e/harness.mjs, byte for byte the same NDJSON records, POSTed by two concurrent clients.

    GPUFL_TOKEN=<admin or agent key> .venv/bin/python bench/tile_session.py --url http://127.0.0.1:PORT \\
        --kernels 100000000 [--capture examples/captures/gpt_train] [--overlay] [--clients 2] [--batch 50000]
    .venv/bin/python bench/tile_session.py --kernels N --capture DIR --out FILE   (the NDJSON to a file)

The session: the capture's device-stream session_start and dict records once, then its kernel/memcpy/memset
records in the capture's order, repeated ``ceil(N / kernels in the capture)`` times with start_ns, end_ns and
api_start_ns shifted by k × (capture span + 1 ms) and seq renumbered, then one session_end whose ``records``
counts them all. Session id ``<capture's id[:40]>-tiled<copies>``, app ``<capture's app>-tiled`` (``-overlaid``
with ``--overlay``: copies laid over each other, not shifted). bench/ui_timeline.mjs measures such a session; it
runs this script (``--build python``) because the JS builder (one connection, JSON.stringify with a BigInt
replacer per record) ingests ~40k records/s: 10M kernels in ~4.5 min, 100M in ~50.

Why it is exactly the JS's records: the capture's lines are decoded once with msgspec (ints exact); the
three shifted fields are Python ints (exact int64 arithmetic); every other number is written as JavaScript's
``JSON.stringify`` writes the double ``JSON.parse`` made of it (``1.0`` → ``1``: a float is pre-rendered to a
``msgspec.Raw``); strings are escaped alike by both. Where the JS would not copy a value exactly (an integer
past 2^53 outside its BigInt fields: rounded; a nested ``*_ns`` field its regex quotes: a string), this
refuses the capture rather than differ. tests/test_tile_session.py compares both outputs line by line.

Streamed: the capture is held once, the session is generated batch by batch as the clients take them (100M
kernels is ~115M records, ~35 GB of JSON). The first batch (session_start) is acknowledged before the others
are sent and the last (session_end) only after all of them, so a stream that says it ended is complete. A 503
(the backend's ingest budget is held) or a dropped connection is retried, as the JS and the agent do
(duplicates are counted, not stored twice); any other refusal or a rejected record stops the build. A
session already stored whole is not sent again; one stored in part (an interrupted build) is sent again.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import math
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
SEGMENT = re.compile(r"^[^.]+\.[^.]+\.[^.]+\.(device|scope|system)\.\d{6,}\.log(\.gz)?$")
SHIFTED = ("start_ns", "end_ns", "api_start_ns")
"""The fields shifted by the copy's offset (the JS's NS_FIELDS)."""
EXACT: set[tuple[str, ...]] = {
    (k,) for k in ("start_ns", "end_ns", "api_start_ns", "ts_ns", "first_ns", "last_ns")
}
EXACT.add(("clock", "measured_at_ns"))
"""Where the JS keeps an integer exact (a BigInt): its deviceRecords's top-level fields and clock's."""
QUOTED = {"start_ns", "end_ns", "api_start_ns", "ts_ns", "measured_at_ns", "first_ns", "last_ns"}
"""Keys whose numbers the JS's line regex turns into strings wherever they are (BigInt'd only at EXACT)."""
WORK = ("kernel", "memcpy", "memset")
MAX_BATCH = 50_000
"""The backend's max_batch_records default."""
JS_SAFE = 2**53


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- JavaScript's numbers --------------------------------------------------------------------------------

_REPR = re.compile(r"(\d+)(?:\.(\d+))?(?:e([+-]\d+))?")


def js_number(x: float) -> str:
    """``JSON.stringify(x)`` for a finite double (ECMA-262 Number::toString): the same shortest round-trip
    digits as Python's repr, but integral values without ``.0``, and exponents only below 1e-6 or from 1e21."""
    if x == 0:
        return "0"
    m = _REPR.fullmatch(repr(abs(x)))
    if m is None:
        raise ValueError(f"not a finite number: {x!r}")
    whole, frac, exp = m.group(1), m.group(2) or "", m.group(3)
    digits = whole + frac
    n = len(whole) + (int(exp) if exp else 0)  # the decimal point sits after n digits
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        s = digits + "0" * (n - k)
    elif 0 < n <= 21:
        s = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        s = "0." + "0" * -n + digits
    else:
        e = n - 1
        s = digits[0] + (f".{digits[1:]}" if k > 1 else "") + f"e{'+' if e >= 0 else '-'}{abs(e)}"
    return "-" + s if x < 0 else s


def jsify(v: Any, path: tuple[str, ...], where: str) -> Any:
    """A decoded record's value as the JS holds it: floats pre-rendered as JSON.stringify writes them; the
    values the JS would not copy exactly are refused (``where``: the record, for the message)."""
    if isinstance(v, dict):
        return {k: jsify(x, (*path, k), where) for k, x in v.items()}
    if isinstance(v, list):
        return [jsify(x, (*path, "[]"), where) for x in v]
    name = ".".join(path)
    if path in EXACT:
        if v is None or (isinstance(v, int) and not isinstance(v, bool)):
            return v
        raise ValueError(
            f"{where}: {name} is {v!r}, not an integer: the JS builder would not copy it exactly"
        )
    if path and path[-1] in QUOTED and isinstance(v, int | float) and not isinstance(v, bool):
        raise ValueError(f"{where}: {name} (nested) would be written as a string by the JS builder")
    if isinstance(v, float):
        return msgspec.Raw(js_number(v).encode())
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > JS_SAFE:
        raise ValueError(f"{where}: {name} = {v} is past 2^53: the JS builder would round it")
    return v


# ---- the session -----------------------------------------------------------------------------------------


def segment_files(capture: Path) -> list[Path]:
    return sorted(p for p in capture.iterdir() if SEGMENT.match(p.name))


def device_records(capture: Path) -> list[dict[str, Any]]:
    """The capture's device-stream records in file order, as the JS's deviceRecords holds them."""
    out = []
    for f in segment_files(capture):
        if f.name.split(".")[3] != "device":
            continue
        raw = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
        for i, line in enumerate(raw.split(b"\n")):
            if line.strip():
                out.append(jsify(msgspec.json.decode(line), (), f"{f.name}:{i + 1}"))
    return out


@dataclass
class Plan:
    made: dict[str, Any]
    """What the JS's tilePlan returns as ``made`` (sid, kernels, copies, spanNs, denseT, densePerS, records)."""
    start: dict[str, Any]
    dicts: list[dict[str, Any]]
    work: list[dict[str, Any]]
    period: int
    base: int
    end: int
    tag: str


def tile_plan(capture: Path, target: int, overlay: bool = False) -> Plan:
    """The JS's tilePlan: the same session id, span and densest 20 ms (in JS's double arithmetic)."""
    recs = device_records(capture)
    start = next((r for r in recs if r.get("type") == "session_start"), None)
    if start is None:
        raise SystemExit(f"{capture}: no session_start in the device stream")
    dicts = [r for r in recs if r.get("type") == "dict"]
    work = [r for r in recs if r.get("type") in WORK]
    kernels_per = sum(r["type"] == "kernel" for r in work)
    if not kernels_per:
        raise SystemExit(f"{capture}: no kernels")
    first = min(r["start_ns"] for r in work)
    last = max(r["end_ns"] for r in work)
    period = 0 if overlay else last - first + 1_000_000
    starts = sorted(float(r["start_ns"] - first) for r in work if r["type"] == "kernel")
    dense, best_n, j = 0.0, 0, 0
    for i, s in enumerate(starts):
        while s - starts[j] > 20e6:
            j += 1
        if i - j + 1 > best_n:
            best_n, dense = i - j + 1, starts[j]
    copies = math.ceil(target / kernels_per)
    tag = "overlaid" if overlay else "tiled"
    sid = f"{str(start['session_id'])[:40]}-{tag}{copies}"
    base = min(start["start_ns"], first)
    dense_t = float(first - base) + float(period) * (copies // 2) + dense
    end = last + period * (copies - 1)
    made = {
        "sid": sid,
        "kernels": kernels_per * copies,
        "copies": copies,
        "spanNs": float(end - base),
        "denseT": dense_t,
        "densePerS": best_n,
        "records": 2 + len(dicts) + len(work) * copies,
    }
    return Plan(made, start, dicts, work, period, base, end, tag)


def tiled_records(plan: Plan) -> Iterator[dict[str, Any]]:
    """The session's records in the JS's order, made one at a time (the JS's tiledLines)."""
    sid = plan.made["sid"]
    # The JS stamps {...o, session_id, seq}: a key the record has keeps its place, a missing one goes last.
    head = dict(plan.start)
    head["app"] = f"{head['app']}-{plan.tag}"
    head["start_ns"] = plan.base
    head["session_id"] = sid
    head["seq"] = 0
    yield head
    seq = 1
    for d in plan.dicts:
        o = dict(d)
        o["session_id"] = sid
        o["seq"] = seq
        seq += 1
        yield o
    templates = []
    for r in plan.work:
        t = dict(r)
        t["session_id"] = sid
        t["seq"] = 0
        # a shifted field is shifted only where it is an integer (the JS: where it is a BigInt)
        templates.append((t, [(k, t[k]) for k in SHIFTED if isinstance(t.get(k), int)]))
    for c in range(plan.made["copies"]):
        shift = plan.period * c
        for t, ns in templates:
            o = t.copy()
            for k, v in ns:
                o[k] = v + shift
            o["seq"] = seq
            seq += 1
            yield o
    yield {
        "type": "session_end",
        "session_id": sid,
        "stream": "device",
        "seq": seq,
        "end_ns": plan.end,
        "records": seq + 1,
    }


def batches(plan: Plan, size: int) -> Iterator[tuple[bytes, int]]:
    """NDJSON bodies of ``size`` records (every line newline-terminated, as the JS joins them)."""
    enc = msgspec.json.Encoder()
    it = tiled_records(plan)
    while chunk := list(itertools.islice(it, size)):
        yield enc.encode_lines(chunk), len(chunk)


# ---- posting ---------------------------------------------------------------------------------------------


class Poster:
    """POSTs NDJSON bodies to /events/device: a 503 or a dropped connection is waited out and sent again, as
    buildTiledSession does (up to 8 tries, 1 s × the try between them); anything else not stored is fatal."""

    def __init__(self, url: str, token: str) -> None:
        import httpx  # the server extra's client; --out needs only msgspec

        self.httpx = httpx
        self.url = f"{url}/api/v1/events/device"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}

    def client(self) -> Any:
        return self.httpx.Client(timeout=600, headers=self.headers)

    def post(self, c: Any, body: bytes, n: int) -> int:
        for attempt in range(1, 9):
            try:
                r = c.post(self.url, content=body)
            except self.httpx.TransportError as e:
                if attempt >= 8:
                    raise
                log(f"ingest: {type(e).__name__}: {e}, retry {attempt}")
            else:
                if r.status_code != 503 or attempt >= 8:
                    break
                log(f"ingest: 503, retry {attempt} after {r.headers.get('retry-after', 1)} s")
            time.sleep(attempt)
        res = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code != 200 or res.get("rejected"):
            raise RuntimeError(f"ingest: {r.status_code} {r.text[:300]}")
        if res["stored"] + res["duplicates"] != n:
            raise RuntimeError(
                f"ingest: {n} records sent, {res['stored']} stored + {res['duplicates']} duplicates"
            )
        return int(res["stored"] + res["duplicates"])


def post_session(poster: Poster, bodies: Iterator[tuple[bytes, int]], clients: int) -> int:
    """Send the first body, then the middle ones through ``clients`` concurrent connections, then the last."""
    first = next(bodies)
    with poster.client() as c:
        done = poster.post(c, *first)
    nxt = next(bodies, None)
    if nxt is None:
        return done
    q: queue.Queue[tuple[bytes, int] | None] = queue.Queue(maxsize=2 * clients)
    failed: list[BaseException] = []
    counts = [0] * clients

    def sender(i: int) -> None:
        try:
            with poster.client() as c:
                while (item := q.get()) is not None:
                    counts[i] += poster.post(c, *item)
        except BaseException as e:
            failed.append(e)
            while q.get() is not None:  # drain so the producer never blocks on a dead sender
                pass

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    last = nxt
    for body in bodies:
        if failed:
            break
        q.put(last)
        last = body
    for _ in threads:
        q.put(None)
    for t in threads:
        t.join()
    if failed:
        raise failed[0]
    with poster.client() as c:
        return done + sum(counts) + poster.post(c, *last)


def stored_records(url: str, token: str, sid: str) -> int | None:
    """Distinct device records the backend holds for ``sid`` (None: no such session)."""
    import httpx

    r = httpx.get(f"{url}/api/v1/sessions/{sid}", headers={"Authorization": f"Bearer {token}"}, timeout=120)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return next((int(s["received"]) for s in r.json()["streams"] if s["stream"] == "device"), 0)


def made_json(made: dict[str, Any]) -> str:
    """``made`` as the JS prints it (its doubles in JavaScript's notation)."""
    return msgspec.json.encode(
        {k: msgspec.Raw(js_number(v).encode()) if isinstance(v, float) else v for k, v in made.items()}
    ).decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capture", type=Path, default=ROOT / "examples/captures/gpt_train")
    ap.add_argument("--kernels", type=int, required=True, help="about this many kernels (whole copies)")
    ap.add_argument("--overlay", action="store_true", help="copies laid over each other, not shifted")
    ap.add_argument("--url", help="the backend (token in $GPUFL_TOKEN: an admin or agent key)")
    ap.add_argument("--out", type=Path, help="write the NDJSON here instead of posting it")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--batch", type=int, default=MAX_BATCH, help=f"records per POST (≤ {MAX_BATCH})")
    args = ap.parse_args()
    if not 0 < args.batch <= MAX_BATCH:
        ap.error(f"--batch must be 1..{MAX_BATCH}")
    plan = tile_plan(args.capture, args.kernels, args.overlay)
    made = plan.made
    if args.out:
        with args.out.open("wb") as f:
            for body, _ in batches(plan, args.batch):
                f.write(body)
        print(made_json(made))
        return
    if not args.url:
        ap.error("--url or --out")
    token = os.environ.get("GPUFL_TOKEN")
    if not token:
        ap.error("set GPUFL_TOKEN to an admin or agent key of the backend")
    url = args.url.rstrip("/")
    sid = made["sid"]
    have = stored_records(url, token, sid)
    if have == made["records"]:
        log(f"session {sid} is already in the store ({have} records): not ingested again")
        print(made_json({**made, "ingested": False}))
        return
    if have is not None:
        log(f"session {sid} is stored in part ({have} of {made['records']} records): sending it all again")
    kernels_per = made["kernels"] // made["copies"]
    log(
        f"tiling {args.capture.name}: {kernels_per} kernels × {made['copies']} copies, period "
        f"{plan.period / 1e6} ms → session {sid} ({made['records']} records, {args.clients} clients)"
    )
    t0 = time.perf_counter()
    n = post_session(Poster(url, token), batches(plan, args.batch), args.clients)
    secs = time.perf_counter() - t0
    have = stored_records(url, token, sid)
    if n != made["records"] or have != made["records"]:
        raise SystemExit(f"{sid}: {made['records']} records made, {n} acknowledged, {have} stored")
    log(f"ingested {n} records in {secs:.1f} s ({n / secs:,.0f} records/s)")
    print(made_json({**made, "ingested": True, "ingest_s": round(secs, 1)}))


if __name__ == "__main__":
    main()

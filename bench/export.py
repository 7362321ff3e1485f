"""`gpufl export` speed and memory: a long session to Perfetto (and JSON), in a fresh process per run.

The session is the real gpt_train capture (H100) repeated: its device stream's kernels, copies and memsets
again and again, shifted in time by the capture's span and in correlation id, with its scope and system
streams once — so names, launch configurations and streams are real, only the length is multiplied.
Peak RSS is the export process's maximum resident set (getrusage); bounded memory means it does not grow
with the session's length.

    python bench/export.py --kernels 100000,1000000 [--formats perfetto,chrome-json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import msgspec  # noqa: E402

from gpufl.contract import events  # noqa: E402

CAPTURE = ROOT / "examples" / "captures" / "gpt_train"

EXPORT = """
import sys
from pathlib import Path
from gpufl.export.source import find_sessions
from gpufl.export import perfetto, chrome_json
(s,) = find_sessions(Path(sys.argv[1])).values()
fmt, out = sys.argv[2], sys.argv[3]
if fmt == "perfetto":
    with open(out, "wb") as f:
        c = perfetto.export(s, f)
else:
    with open(out, "w") as f:
        c = chrome_json.export(s, f)
import resource
print(c.kernels, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def build(folder: Path, kernels: int) -> int:
    """Write a session of about ``kernels`` kernels into ``folder``; returns the exact count."""
    for p in CAPTURE.glob("*.log"):
        if ".device." not in p.name:
            shutil.copy(p, folder)
    (dev,) = CAPTURE.glob("*.device.*.log")
    recs = [events.decode(line) for line in dev.read_bytes().splitlines() if line.strip()]
    head = [
        r
        for r in recs
        if not isinstance(r, events.Kernel | events.Memcpy | events.Memset | events.SessionEnd)
    ]
    body = [r for r in recs if isinstance(r, events.Kernel | events.Memcpy | events.Memset)]
    per_round = sum(isinstance(r, events.Kernel) for r in body)
    span = max(r.end_ns for r in body) - min(r.start_ns for r in body) + 1000
    max_corr = max(r.corr_id for r in body) + 1
    rounds = max(1, kernels // per_round)
    lines = [events.encode(r) + b"\n" for r in head]
    seq = len(head)
    with (folder / dev.name).open("wb") as f:
        f.write(b"".join(lines))
        for i in range(rounds):
            chunk = []
            for r in body:
                shifted = msgspec.structs.replace(
                    r, seq=seq, start_ns=r.start_ns + i * span, end_ns=r.end_ns + i * span,
                    corr_id=r.corr_id + i * max_corr,
                )  # fmt: skip
                seq += 1
                chunk.append(events.encode(shifted) + b"\n")
            f.write(b"".join(chunk))
    return rounds * per_round


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", default="100000,1000000")
    ap.add_argument("--formats", default="perfetto,chrome-json")
    ap.add_argument("--json", help="write the table's rows here too")
    args = ap.parse_args()
    rows = []
    print(
        f"{'kernels':>10} {'format':<12} {'seconds':>8} {'kernels/s':>10} {'peak RSS MiB':>13} {'out MB':>8}"
    )
    for n in [int(x) for x in args.kernels.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "logs"
            folder.mkdir()
            exact = build(folder, n)
            for fmt in args.formats.split(","):
                out = Path(tmp) / f"out.{fmt}"
                t = time.perf_counter()
                r = subprocess.run(
                    [sys.executable, "-c", EXPORT, str(folder), fmt, str(out)],
                    capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
                )  # fmt: skip
                secs = time.perf_counter() - t
                got, maxrss_kib = (int(x) for x in r.stdout.split()) if r.returncode == 0 else (-1, 0)
                if got != exact:
                    raise SystemExit(f"export failed: {r.stderr[-2000:]}")
                peak_mib = maxrss_kib / 1024
                row = {"kernels": exact, "format": fmt, "seconds": round(secs, 1), "kernels_per_s": round(exact / secs),
                       "peak_rss_mib": round(peak_mib), "out_mb": round(out.stat().st_size / 1e6, 1)}  # fmt: skip
                rows.append(row)
                print(
                    f"{exact:>10} {fmt:<12} {secs:>8.1f} {exact / secs:>10.0f} {peak_mib:>13.0f} {row['out_mb']:>8}"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""``gpufl export``: a recorded session to a file Perfetto (or any trace-event viewer) opens."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpufl.contract import events
from gpufl.export.source import LogSession, find_sessions

FORMATS = ("perfetto", "chrome-json")


def _pick(target: Path, session: str | None) -> LogSession:
    folder = target.parent if target.is_file() else target
    if target.is_file():
        name = events.parse_segment_name(target.name)
        session = session or (name.session_id if name else None)
    found = find_sessions(folder)
    if not found:
        raise SystemExit(f"gpufl export: no gpufl log segments in {folder}")
    if session is None:
        if len(found) > 1:
            ids = ", ".join(sorted(found))
            raise SystemExit(
                f"gpufl export: {folder} holds {len(found)} sessions ({ids}); pick one with --session"
            )
        return next(iter(found.values()))
    if session not in found:
        raise SystemExit(f"gpufl export: no session {session} in {folder}")
    return found[session]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="gpufl export", description=(__doc__ or "").replace("``", ""))
    ap.add_argument("target", type=Path, help="a log folder, or one segment file of the session")
    ap.add_argument("--session", help="the session id, when the folder holds several")
    ap.add_argument("--format", choices=FORMATS, default="perfetto",
                    help="perfetto: protobuf (.pftrace, any size); chrome-json: trace-event JSON (small sessions)")  # fmt: skip
    ap.add_argument("-o", "--output", type=Path, required=True, help="the file to write")
    args = ap.parse_args(argv)
    session = _pick(args.target, args.session)
    try:
        if args.format == "perfetto":
            from gpufl.export import perfetto

            with args.output.open("wb") as f:
                counts = perfetto.export(session, f)
        else:
            from gpufl.export import chrome_json

            with args.output.open("w") as f:
                counts = chrome_json.export(session, f)
    except (events.ContractError, RuntimeError) as e:
        print(f"gpufl export: {e}", file=sys.stderr)
        return 1
    print(
        f"{args.output}: session {session.session_id}: {counts.kernels} kernels, {counts.memcpys} copies, "
        f"{counts.memsets} memsets, {counts.launches} launch calls, {counts.scopes} scopes, "
        f"{counts.counters} counter samples, {counts.gaps} capture gaps, {counts.windows} capture windows, "
        f"{counts.instants} notices",
        file=sys.stderr,
    )
    return 0

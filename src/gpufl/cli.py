"""``gpufl``: the umbrella command. ``gpufl demo`` runs the whole stack locally; ``gpufl replay`` re-writes
recorded sessions as new ones; ``gpufl export`` writes a session for Perfetto; ``gpufl schema`` prints the event JSON Schema; ``gpufl agent ...`` and
``gpufl backend ...`` forward to ``gpufl-agent`` and ``gpufl-backend``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("agent", "backend"):
        # Long-running servers: a broken pipe there is a socket's business, not the terminal's.
        return _forward(argv)
    try:
        return _main(argv)
    except BrokenPipeError:
        # `gpufl schema | head`: the reader left. Exit quietly as Unix tools do (no traceback); stdout goes
        # to devnull so that the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe


def _forward(argv: list[str]) -> int:
    if argv[0] == "agent":
        from gpufl.agent.cli import main as forward
    else:
        from gpufl.backend.cli import main as forward  # type: ignore[assignment]
    rc: object = forward(argv[1:])
    return rc if isinstance(rc, int) else 0


def _from_archives(argv: list[str], main: Any, prog: str) -> int:
    """``gpufl summary s3://BUCKET/PREFIX/host/app/session``, ``gpufl diff s3://… s3://…``: each archived
    session (the agent's archiver) downloaded, checked against its sha256, into a temporary folder that stands
    for its URL in ``argv``. The endpoint comes from AWS_ENDPOINT_URL, the credentials from boto3's usual places
    (AWS_ACCESS_KEY_ID, ...). Exit 1 (summary) or 2 (diff: its code for unreadable input) when one cannot be
    read."""
    import shutil
    import tempfile

    failed = 2 if prog == "gpufl diff" else 1
    try:
        from gpufl.agent.archiver import ArchiveSettings, s3_client
        from gpufl.agent.replay import ReplayError, fetch, parse_url
    except ImportError as e:  # boto3 comes with the server extra
        print(f"{prog}: reading s3:// needs the server extra (boto3): {e}", file=sys.stderr)
        return 2
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    work = tempfile.mkdtemp(prefix="gpufl-archive-")
    try:
        local = []
        for i, a in enumerate(argv):
            if not a.startswith("s3://"):
                local.append(a)
                continue
            folder = os.path.join(work, str(i))
            os.makedirs(folder)
            try:
                client = s3_client(ArchiveSettings(endpoint or None, parse_url(a)[0]))  # type: ignore[arg-type]
                fetch(client, a, folder, endpoint or "AWS")
            except ReplayError as e:
                print(f"{prog}: {e}", file=sys.stderr)
                return failed
            local.append(folder)
        rc: int = main(local)
        return rc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="gpufl", description="GPU Flight: always-on GPU observability")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("schema", help="print the JSON Schema of one log record")
    sub.add_parser("demo", help="run the whole stack locally on real data (see README)", add_help=False)
    sub.add_parser("run", help="profile an unmodified program: gpufl run -- python train.py", add_help=False)
    sub.add_parser("summary", help="terminal report of a log folder or session", add_help=False)
    sub.add_parser("export", help="a session to Perfetto (.pftrace) or trace-event JSON", add_help=False)
    sub.add_parser("diff", help="what changed between two runs; a CI gate with --fail-if", add_help=False)
    rp = sub.add_parser("replay", help="write recorded sessions into a log folder as new sessions, now")
    rp.add_argument("capture", nargs="+", help="folders holding one recorded session each")
    rp.add_argument("--log-dir", required=True, help="the log folder to write the new sessions into")
    sub.add_parser("agent", help="run the log shipper (gpufl-agent)")
    sub.add_parser("backend", help="run the backend (gpufl-backend)")
    if argv and argv[0] == "demo":
        from gpufl.demo import main as demo_main

        return demo_main(argv[1:])
    if argv and argv[0] == "run":
        from gpufl.client.run import main as run_main

        return run_main(argv[1:])
    if argv and argv[0] == "export":
        from gpufl.export.cli import main as export_main

        return export_main(argv[1:])
    if argv and argv[0] == "diff":
        from gpufl.diff.cli import main as diff_main

        if any(a.startswith("s3://") for a in argv[1:]):
            return _from_archives(argv[1:], diff_main, "gpufl diff")
        return diff_main(argv[1:])
    if argv and argv[0] == "summary":
        from gpufl.client.summary import main as summary_main

        if any(a.startswith("s3://") for a in argv[1:]):
            return _from_archives(argv[1:], summary_main, "gpufl summary")
        return summary_main(argv[1:])
    args = ap.parse_args(argv)
    if args.cmd == "replay":
        from pathlib import Path

        from gpufl.client.replay import replay

        for folder in args.capture:
            print(replay(Path(folder), Path(args.log_dir)))
    if args.cmd == "schema":
        from gpufl.contract import events

        json.dump(events.json_schema(), sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``gpufl diff BASE TARGET``: what changed between two runs, in the terminal or as a CI gate.

BASE and TARGET are log folders (or one segment file of a session, where a folder holds several), archived
sessions (``s3://BUCKET/PREFIX/host/app/session``, as the agent's archiver wrote them; endpoint from
AWS_ENDPOINT_URL) or session ids stored in a backend (``--server``, token from ``--token`` or ``GPUFL_TOKEN``).
Exit status: 0 when every ``--fail-if`` holds, 1 when one fails (the offending rows are printed), 2 when the
input cannot be read.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import msgspec

from gpufl.contract import events
from gpufl.diff import gate, render
from gpufl.diff.compare import MIN_EFFECT, compare
from gpufl.diff.profile import STEP_SCOPE, Profile, profile_from_records
from gpufl.export.source import find_sessions

DEFAULT_SERVER = "http://127.0.0.1:8080"
OFFENDERS_SHOWN = 20


class InputError(Exception):
    """A side that cannot be read: the message names it and says why."""


def _local_profile(path: Path, step_scope: str) -> Profile:
    folder = path.parent if path.is_file() else path
    session = None
    if path.is_file():
        name = events.parse_segment_name(path.name)
        if name is None:
            raise InputError(f"{path} is not a gpufl log segment")
        session = name.session_id
    found = find_sessions(folder)
    if not found:
        raise InputError(f"no gpufl log segments in {folder}")
    if session is None:
        if len(found) > 1:
            raise InputError(
                f"{folder} holds {len(found)} sessions ({', '.join(sorted(found))}): name one of its segment files"
            )
        session = next(iter(found))
    s = found[session]
    try:
        return profile_from_records(
            s.session_id, itertools.chain(*(s.records(x) for x in ("device", "scope"))), step_scope
        )
    except events.ContractError as e:
        raise InputError(str(e)) from None


def _remote_diff(args: argparse.Namespace) -> dict[str, Any]:
    query = urllib.parse.urlencode(
        {
            "base": args.base,
            "target": args.target,
            "min_effect": args.min_effect,
            "step_scope": args.step_scope,
            "limit": 100_000,
        }
    )
    url = f"{args.server.rstrip('/')}/api/v1/diff?{query}"
    req = urllib.request.Request(url)
    token = args.token or os.environ.get("GPUFL_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            doc: dict[str, Any] = json.load(resp)
            return doc
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")[:500]
        raise InputError(f"{args.server} answered {e.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise InputError(f"cannot reach {args.server}: {e}") from None


def diff_document(args: argparse.Namespace) -> dict[str, Any]:
    """The diff in its JSON form, from two log folders or from the backend."""
    local = [Path(x).exists() for x in (args.base, args.target)]
    if all(local):
        b = _local_profile(Path(args.base), args.step_scope)
        t = _local_profile(Path(args.target), args.step_scope)
        doc: dict[str, Any] = msgspec.to_builtins(compare(b, t, args.min_effect))
        doc["rows_total"] = len(doc["rows"])
        return doc
    if any(local):
        which = args.base if local[0] else args.target
        raise InputError(
            f"{which} is a local path but the other side is not: give two log folders, or two session ids "
            "stored in the backend"
        )
    return _remote_diff(args)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="gpufl diff",
        description=(__doc__ or "").replace("``", ""),
        epilog="Conditions: " + (gate.__doc__ or "").split("A condition is", 1)[1].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "base", help="the reference run: a log folder, a segment file, s3://…, or a stored session id"
    )
    ap.add_argument("target", help="the run to judge: same forms as base")
    ap.add_argument("--fail-if", action="append", default=[], metavar="COND",
                    help="exit 1 when COND holds for a change beyond noise, e.g. 'total_gpu_time > +5%%' (repeatable)")  # fmt: skip
    ap.add_argument("--format", choices=("text", "json", "junit"), default="text",
                    help="text (default), json (the API's answer) or junit (one test case per --fail-if)")  # fmt: skip
    ap.add_argument("-o", "--output", type=Path, help="write the report here instead of standard output")
    ap.add_argument("--min-effect", type=float, default=MIN_EFFECT,
                    help=f"smallest relative change called a change (default {MIN_EFFECT})")  # fmt: skip
    ap.add_argument("--step-scope", default=STEP_SCOPE,
                    help=f"top-level scope name that marks a step (default {STEP_SCOPE!r})")  # fmt: skip
    ap.add_argument("--rows", type=int, default=30, help="changed rows shown in text (default 30)")
    ap.add_argument("--server", default=os.environ.get("GPUFL_SERVER", DEFAULT_SERVER),
                    help=f"backend for session ids (default $GPUFL_SERVER or {DEFAULT_SERVER})")  # fmt: skip
    ap.add_argument("--token", help="API key for the backend (default $GPUFL_TOKEN)")
    ap.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the backend (default 60)"
    )
    args = ap.parse_args(argv)
    try:
        conditions = [gate.parse(c) for c in args.fail_if]
    except gate.GateError as e:
        print(f"gpufl diff: {e}", file=sys.stderr)
        return 2
    if not 0 <= args.min_effect < 10:
        print(f"gpufl diff: --min-effect {args.min_effect} is not a fraction in [0, 10)", file=sys.stderr)
        return 2
    try:
        doc = diff_document(args)
    except InputError as e:
        print(f"gpufl diff: {e}", file=sys.stderr)
        return 2
    verdicts = gate.evaluate(doc, conditions)
    if args.format == "json":
        doc["gate"] = [
            {"condition": v.condition.text, "passed": v.passed, "offenders": v.offenders} for v in verdicts
        ]
        report = json.dumps(doc, indent=1) + "\n"
    elif args.format == "junit":
        report = gate.junit(doc, verdicts)
    else:
        report = render.text(doc, rows=args.rows)
        for v in verdicts:
            report += f"\n{'PASS' if v.passed else 'FAIL'}  {v.condition.text}\n"
            report += "".join(f"      {render.shorten(o, 150)}\n" for o in v.offenders[:OFFENDERS_SHOWN])
            if len(v.offenders) > OFFENDERS_SHOWN:
                report += (
                    f"      … {len(v.offenders) - OFFENDERS_SHOWN} more (--format json or junit lists all)\n"
                )
    if args.output:
        args.output.write_text(report)
    else:
        sys.stdout.write(report)
    failed = [v for v in verdicts if not v.passed]
    if failed and (args.output or args.format != "text"):
        # the report went to a file or a machine format: the reason still reaches a human on stderr
        for v in failed:
            print(f"gpufl diff: FAIL {v.condition.text}: {len(v.offenders)} beyond the bar", file=sys.stderr)
    return 1 if failed else 0

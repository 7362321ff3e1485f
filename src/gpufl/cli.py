"""``gpufl``: the umbrella command. ``gpufl schema`` prints the event JSON Schema; ``gpufl agent ...`` and
``gpufl backend ...`` forward to ``gpufl-agent`` and ``gpufl-backend``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("agent", "backend"):
        if argv[0] == "agent":
            from gpufl.agent.cli import main as agent_main

            return int(agent_main(argv[1:]) or 0)
        from gpufl.backend.cli import main as backend_main

        return int(backend_main(argv[1:]) or 0)
    ap = argparse.ArgumentParser(prog="gpufl", description="GPU Flight: always-on GPU observability")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("schema", help="print the JSON Schema of one log record")
    sub.add_parser("agent", help="run the log shipper (gpufl-agent)")
    sub.add_parser("backend", help="run the backend (gpufl-backend)")
    args = ap.parse_args(argv)
    if args.cmd == "schema":
        from gpufl import events

        json.dump(events.json_schema(), sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# The whole stack on this machine: installs what is needed (Python venv, the built UI), starts the backend
# on its embedded store and the agent over HTTP, loads real sessions, prints the dashboard URL and a read
# token. Ctrl-C stops everything. Options: --port N (or GPUFL_PORT); GPUFL_ADMIN_TOKEN is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  python3 -m venv .venv || { echo "demo: could not create a Python venv (python3 -m venv)" >&2; exit 1; }
fi
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q -e '.[server]'
if [ ! -f src/gpufl/backend/static/index.html ]; then
  if command -v npm >/dev/null 2>&1; then
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build >/dev/null)
  else
    echo "demo: Node.js/npm not found, so the dashboard UI cannot be built (apt-get install nodejs npm);" \
         "the API still runs" >&2
  fi
fi
exec .venv/bin/gpufl demo "$@"

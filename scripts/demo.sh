#!/usr/bin/env bash
# The whole stack on this machine: installs what is needed (Python venv, the built UI), starts the backend
# on its embedded store and the agent over HTTP, loads real sessions, prints the dashboard URL and a read
# token. Ctrl-C stops everything. Options: --port N (or GPUFL_PORT); GPUFL_ADMIN_TOKEN is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --extras server --ui-if-missing
exec .venv/bin/gpufl demo "$@"

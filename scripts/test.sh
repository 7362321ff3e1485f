#!/usr/bin/env bash
# Every test, on a fresh machine: installs what it needs, starts the real servers, runs lint, types,
# the Python suite (client, agent, backend), the UI's unit tests and its end-to-end tests in Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
export PY=${PY:-$PWD/.venv/bin/python}

step() { printf '\n=== %s ===\n' "$*"; }

step "system packages"
source scripts/services.sh
apt_install chromium chromium
apt_install npm nodejs npm
apt_install docker-compose docker-compose
apt_install curl curl

step "python environment"
bash scripts/install.sh --extras server,dev

step "lint and types"
"$PY" -m ruff check src tests bench examples
"$PY" -m ruff format --check src tests bench examples
"$PY" -m mypy

step "servers: PostgreSQL, Kafka protocol (Tansu), S3 (radosgw)"
trap services_stop EXIT  # set first: a start that fails half-way still stops what it started
services_start

step "python tests"
# a private pytest temp root: concurrent runs sharing /tmp/pytest-of-$USER clean each other's directories
"$PY" -m pytest -q -p no:cacheprovider --basetemp="$GPUFL_SERVICES_DIR/pytest" "$@"

step "installable wheel: built, installed in a clean venv, client tests and the demo from it"
bash scripts/test_wheels.sh python3

step "frontend"
(
  cd frontend
  npm ci --no-audit --no-fund --loglevel=error
  npm run lint
  npm run typecheck
  npm test
  npm run build
  GPUFL_PYTHON="$PY" npm run e2e
)
echo "ALL TESTS PASSED"

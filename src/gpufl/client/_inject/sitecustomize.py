"""Loaded by every Python started under ``gpufl run`` (this folder is put first on PYTHONPATH): initialises
gpufl before user code, then hands over to any sitecustomize the environment already had."""

from __future__ import annotations

import importlib.util
import os
import sys


def _chain_previous() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sys.path:
        if not path or os.path.abspath(path) == here:
            continue
        candidate = os.path.join(path, "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_gpufl_previous_sitecustomize", candidate)
            if spec and spec.loader:
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


_chain_previous()
if os.environ.get("GPUFL_RUN_ACTIVE") == "1":
    try:
        import gpufl

        gpufl.init()
    except Exception as e:  # profiling must never stop the program from running
        print(f"gpufl: not profiling this process: {e}", file=sys.stderr)

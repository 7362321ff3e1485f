"""Builds the native record path (``gpufl.client._native``, a small C extension) against NVIDIA's CUPTI headers.

libcupti itself is loaded at run time, so only the headers are needed here: from ``$GPUFL_CUDA_INCLUDE``,
``$CUDA_HOME/include``, ``/usr/local/cuda/include`` or NVIDIA's pip wheels (``nvidia-cuda-cupti`` +
``nvidia-cuda-runtime``). Without them (or without a C compiler) the package installs without the extension
and the client uses the cupti-python path, saying so once.
"""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

from setuptools import Extension, setup


def _include_dirs() -> list[str]:
    candidates: list[Path] = []
    for var in ("GPUFL_CUDA_INCLUDE", "CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            p = Path(os.environ[var])
            candidates += [p, p / "include"]
    candidates.append(Path("/usr/local/cuda/include"))
    for sp in [*site.getsitepackages(), site.getusersitepackages(), *sys.path]:
        for sub in ("nvidia/cu13/include", "nvidia/cuda_cupti/include", "nvidia/cuda_runtime/include"):
            candidates.append(Path(sp) / sub)
    dirs: list[str] = []
    for want in ("cupti.h", "cuda.h"):
        for c in candidates:
            if (c / want).is_file():
                if str(c) not in dirs:
                    dirs.append(str(c))
                break
        else:
            return []
    return dirs


def _sources() -> list[str]:
    """The native record path's C files (the list scripts/build_native.sh reads too)."""
    native = Path("src/gpufl/client/native")
    lines = (native / "sources.txt").read_text().splitlines()
    names = [line.split("#", 1)[0].strip() for line in lines]
    return [str(native / n) for n in names if n]


includes = _include_dirs()
ext_modules = []
if includes and sys.platform.startswith("linux"):
    flags = ["-O2", "-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wno-unused-function"]
    ext_modules.append(
        Extension(
            "gpufl.client._native",
            sources=_sources(),
            include_dirs=includes,
            depends=[str(p) for p in Path("src/gpufl/client/native").glob("*.h")],
            extra_compile_args=flags,
            libraries=["dl", "pthread"],
            optional=True,  # never fail the install: the cupti-python path is the fallback
        )
    )
    # The same record path without Python: the library CUDA loads into non-Python programs through
    # CUDA_INJECTION64_PATH (`gpufl run -- ./app`). Not a Python module; it exports InitializeInjection.
    ext_modules.append(
        Extension(
            "gpufl.client._cuda_inject",
            sources=_sources(),
            include_dirs=includes,
            depends=[str(p) for p in Path("src/gpufl/client/native").glob("*.h")],
            define_macros=[("GPUFL_INJECTION", "1")],
            extra_compile_args=[*flags, "-Wno-unused-variable"],
            libraries=["dl", "pthread"],
            optional=True,
        )
    )
else:
    print("gpufl: CUPTI headers not found; building without the native record path", file=sys.stderr)

setup(ext_modules=ext_modules)

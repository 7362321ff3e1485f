"""C++ symbol demangling through the C++ runtime's own ``__cxa_demangle`` (libstdc++ ships it everywhere
CUDA runs), so names read exactly as ``c++filt`` and Nsight print them. Cached: a program has few kernels."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_cxa_demangle = None
_free = None
try:
    _lib = ctypes.CDLL(ctypes.util.find_library("stdc++") or "libstdc++.so.6")
    _cxa_demangle = _lib.__cxa_demangle
    _cxa_demangle.restype = ctypes.c_void_p
    _cxa_demangle.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    _libc = ctypes.CDLL(None)
    _free = _libc.free
    _free.argtypes = [ctypes.c_void_p]
except (OSError, AttributeError):  # no C++ runtime: names stay mangled
    _cxa_demangle = None


@functools.lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """The demangled form of an Itanium C++ ABI name; other names (extern "C") are returned unchanged."""
    if _cxa_demangle is None or not name.startswith("_Z"):
        return name
    status = ctypes.c_int(0)
    ptr = _cxa_demangle(name.encode(), None, None, ctypes.byref(status))
    if status.value != 0 or not ptr:
        return name
    try:
        return ctypes.string_at(ptr).decode(errors="replace")
    finally:
        if _free is not None:
            _free(ptr)

"""Is a session's writing process gone? Decides when a trailing partial line is final.

The writer's host and pid come from ``session_start`` (seq 0, first line of segment 000000). Only a
process on this host can be checked; for another host the caller relies on rotation alone. A pid can be
reused, so a live pid counts only if that process started before the session did.
"""

from __future__ import annotations

import os
import socket

import msgspec

from gpufl.agent.cursor import WriterInfo
from gpufl.contract.events import ContractError, SessionStart, decode

_HOST = socket.gethostname()
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


_BOOT = _boot_time()


def read_writer(segment_zero_path: str) -> WriterInfo | None:
    """Host/pid/start of the writer from the first line of a stream's segment 000000, if readable."""
    try:
        with open(segment_zero_path, "rb") as f:
            line = f.readline(1 << 20)
    except OSError:
        return None
    if not line.endswith(b"\n"):
        return None
    try:
        rec = decode(line)
    except (ContractError, msgspec.DecodeError):
        return None
    if not isinstance(rec, SessionStart):
        return None
    return WriterInfo(rec.host, rec.pid, rec.start_ns)


def is_local(info: WriterInfo) -> bool:
    return info.host == _HOST


def writer_gone(info: WriterInfo) -> bool:
    """True when ``info`` names a process of this host that no longer runs. False when alive or when it
    cannot be told (another host)."""
    if not is_local(info):
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by someone else
    started = _process_start(info.pid)
    # 2 s of slack: the session's start_ns is taken after the process started, never before.
    return started is not None and started > info.start_ns / 1e9 + 2.0


def _process_start(pid: int) -> float | None:
    if _BOOT is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22 (starttime, clock ticks since boot) follows the parenthesised command name.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return _BOOT + int(fields[19]) / _CLK_TCK
    except (IndexError, ValueError):
        return None

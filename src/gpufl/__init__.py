"""GPU Flight client: ``gpufl.init()`` at program start, ``with gpufl.scope("phase"):`` around phases,
``with gpufl.step():`` around each training step.

The plain install holds only what runs inside the user's process (msgspec). GPU capture needs the
``[cuda]`` extra; the agent and backend need ``[server]``.
"""

from __future__ import annotations

from gpufl._version import __version__
from gpufl.client.scope import scope, step
from gpufl.client.session import Session, active_session, capture, capture_stop, init, shutdown

__all__ = [
    "Session",
    "__version__",
    "active_session",
    "capture",
    "capture_stop",
    "init",
    "scope",
    "shutdown",
    "step",
]

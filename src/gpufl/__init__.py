"""GPU Flight client: ``gpufl.init()`` at program start, ``with gpufl.scope("phase"):`` around phases.

The plain install holds only what runs inside the user's process (msgspec). GPU capture needs the
``[cuda]`` extra; the agent and backend need ``[server]``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from gpufl.scope import scope
from gpufl.session import Session, active_session, init, shutdown

__all__ = ["Session", "__version__", "active_session", "init", "scope", "shutdown"]

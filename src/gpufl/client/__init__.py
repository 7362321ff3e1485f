"""The client: what runs inside the profiled program (session, scopes, capture engines, writers, native code),
and what the ``gpufl`` command runs for it (run, replay, summary). Imports nothing from ``gpufl.agent`` or ``gpufl.backend``."""

"""The client: what runs inside the profiled program (session, scopes, capture engines, writers, native code),
and the ``gpufl`` command (run, replay, summary, demo). Imports nothing from ``gpufl.agent`` or ``gpufl.backend``."""

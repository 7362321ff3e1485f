"""Sessions out to other tools: Perfetto's protobuf trace format and the Chrome trace-event JSON.

Reads contract records (``gpufl.contract``) one at a time and writes as it goes, so memory stays bounded by
the session's dictionaries (kernel names, launch configurations, threads), not its length. Used by
``gpufl export`` on log folders; imports nothing from the client, agent or backend.
"""

"""The raw-log archive in S3-compatible storage (issue #23): what the agent, which writes it, and the backend
and ``gpufl summary|diff s3://…``, which read it, share. Imports neither of those parts (tests/test_architecture.py)."""

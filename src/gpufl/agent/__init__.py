"""gpufl-agent: tails GPU Flight log segments and ships them to the backend (HTTP) or Kafka.

Entry point: :func:`gpufl.agent.cli.main`. The pipeline lives in :mod:`gpufl.agent.runner`.
"""

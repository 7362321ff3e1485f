"""Run-vs-run diff (issue #26): two sessions reduced to ``Profile``s, compared row by row with a noise test,
and gated for CI. Imports the contract only, so the backend's API and the ``gpufl diff`` command share it."""

"""Delivery targets: HTTP (the backend's ingest API) and Kafka."""

"""Backend settings: every command-line flag is also an environment variable (prefix ``GPUFL_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GPUFL_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("./gpufl-data")
    database: str | None = None
    """``postgresql://...`` for the shared store; default: DuckDB file ``<data_dir>/gpufl.duckdb``."""
    kafka_brokers: str | None = None
    kafka_topic_prefix: str = "gpufl"
    kafka_group: str = "gpufl-backend"
    retention_days: float | None = Field(None, gt=0)
    max_store_bytes: int | None = Field(None, gt=0)
    retention_interval_s: float = Field(600.0, gt=0)
    retention_quiet_s: float = Field(3600.0, ge=0)
    """Retention never deletes a session that stored records within this many seconds (0: no quiet
    period); keep in step with ``gpufl.backend.retention.DEFAULT_QUIET_S``."""
    admin_token: str | None = None
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0)
    max_batch_records: int = Field(50_000, gt=0)
    max_batch_sessions: int = Field(1_000, gt=0)
    """The most sessions one ingest batch may hold records of (over it, 413: the agent's batch holds one
    session's). A batch's store work and memory grow with its sessions past the memory budget's estimate of
    its body: one body of ~38,000 session_start records took the backend past 1 GiB."""
    max_inflight_ingests: int = Field(8, gt=0)
    """Ingest requests beyond this many in progress get 503 + Retry-After (the agent retries)."""
    # Memory limits of the ingest path and the store (docs/operations.md, "Limits").
    max_decompressed_bytes: int = Field(64 * 1024 * 1024, gt=0)
    """A body's size once decompressed (every gzip member together), or as sent: over it, 413."""
    max_inflight_bytes: int = Field(512 * 1024 * 1024, gt=0)
    """Memory budget of the ingests in progress, all together (``gpufl.backend.limits``): a request that
    does not fit gets 503 + Retry-After, one that alone is over it 413."""
    duckdb_memory_limit: int = Field(512 * 1024 * 1024, gt=0)
    """DuckDB's ``memory_limit`` in bytes (its own default is 80 % of the machine's memory)."""
    # Per-key request rate limits (backend/ratelimit.py): a token bucket per API key, refilled at this
    # many requests/s and holding up to *_burst; beyond it 429 + Retry-After. 0 turns a limit off. The
    # defaults are far above what an agent (a few batches a second), the dashboard, the benches and the
    # test suite's fuzzer send; they stop a runaway loop from taking a backend for itself.
    tls_cert: Path | None = None
    """PEM certificate (chain) to serve HTTPS with; needs tls_key. Without both: plain HTTP."""
    tls_key: Path | None = None
    rate_limit_ingest: float = Field(100.0, ge=0)
    rate_limit_ingest_burst: int = Field(200, ge=1)
    rate_limit_query: float = Field(500.0, ge=0)
    rate_limit_query_burst: int = Field(1000, ge=1)

    # The raw-log archive the agents write (issue #23, docs/operations.md "Archive"): the dashboard lists its
    # sessions and an admin restores one into the store. Off without archive_url. Credentials are never
    # settings (they would show in the environment dump of a crash report): boto3's own places
    # (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials) or archive_credentials_file.
    archive_url: str | None = None
    """``s3://BUCKET[/PREFIX]``: where the agents' ``--archiver-bucket``/``--archiver-prefix`` put segments."""
    archive_endpoint: str | None = None
    """The S3 endpoint (``http://radosgw:7480``); none: AWS's."""
    archive_region: str = "us-east-1"
    archive_credentials_file: Path | None = None
    """An AWS shared-credentials file ([default] aws_access_key_id, aws_secret_access_key)."""

    @field_validator("archive_url")
    @classmethod
    def _s3_url(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("s3://") or not v.removeprefix("s3://").split("/")[0]):
            raise ValueError("must be s3://BUCKET or s3://BUCKET/PREFIX")
        return v

    def database_url(self) -> str:
        if self.database:
            return self.database
        return f"duckdb:///{self.data_dir / 'gpufl.duckdb'}"

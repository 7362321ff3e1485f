"""The S3 side of the archive: the object layout's metadata keys, the client, and S3 failures in words.

Objects are ``<prefix>/<host>/<app>/<session>/<segment>.gz`` (``gpufl.agent.archiver`` writes them); each
carries the sha256 and size of its uncompressed and compressed bytes in its metadata.
"""

from __future__ import annotations

import configparser
from typing import Any

EXT = ".gz"
# metadata keys (S3 sends them as x-amz-meta-*; lower case survives every server)
META_SHA256 = "gpufl-sha256"
META_SIZE = "gpufl-size"
META_GZ_SHA256 = "gpufl-gz-sha256"
META_GZ_SIZE = "gpufl-gz-size"


class ArchiveError(Exception):
    """An S3 call failed; ``kind`` says how (connect, auth, bucket, verify, error): the agent's metrics label
    it, the backend's API chooses its status code by it."""

    def __init__(self, reason: str, kind: str = "error") -> None:
        super().__init__(reason)
        self.kind = kind


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, ``some/prefix/``); the prefix is "" for a whole bucket."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


def read_credentials_file(path: str) -> tuple[str, str]:
    """An AWS shared-credentials file: ``[default]`` with aws_access_key_id and aws_secret_access_key."""
    cp = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as f:
            cp.read_file(f)
        sect = cp["default"] if cp.has_section("default") else cp[cp.sections()[0]]
        return sect["aws_access_key_id"].strip(), sect["aws_secret_access_key"].strip()
    except (OSError, configparser.Error, KeyError, IndexError) as e:
        raise ValueError(
            f"{path}: expected an AWS credentials file ([default] aws_access_key_id = ..., "
            f"aws_secret_access_key = ...): {e}"
        ) from None


def client(
    endpoint: str | None,
    region: str = "us-east-1",
    access_key: str | None = None,
    secret_key: str | None = None,
    connect_timeout: float = 5,
) -> Any:
    """A boto3 S3 client, path-style (radosgw, MinIO). Without keys boto3 looks in its usual places
    (AWS_ACCESS_KEY_ID, ~/.aws/credentials, ...)."""
    import boto3
    from botocore.config import Config

    # Callers retry with backoff of their own; botocore's retries would only hide an outage for longer.
    cfg = Config(
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=60,
        s3={"addressing_style": "path"},
    )
    # A session of its own: boto3's default one resolves credentials once per process and keeps them.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=cfg,
    )


NO_CREDENTIALS = "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --archiver-credentials-file"


def classify(e: BaseException, endpoint: str, bucket: str, where_keys: str = NO_CREDENTIALS) -> ArchiveError:
    """One clear line for an S3 failure; ``where_keys`` says where credentials come from (the agent's flags by
    default)."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(e, ArchiveError):
        return e
    if isinstance(e, NoCredentialsError):
        return ArchiveError(f"no S3 credentials: {where_keys}", "auth")
    if isinstance(e, EndpointConnectionError):
        return ArchiveError(f"cannot reach S3 endpoint {endpoint}: {e}", "connect")
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403") or status == 403:
            return ArchiveError(f"S3 endpoint {endpoint} refused the credentials ({code or status})", "auth")
        if code in ("NoSuchBucket", "404") and bucket:
            return ArchiveError(f"bucket {bucket!r} does not exist at {endpoint}", "bucket")
        return ArchiveError(f"S3 error from {endpoint}: {code or status}: {err.get('Message', '')}")
    name = type(e).__name__
    kind = "connect" if "Connect" in name or "Timeout" in name or isinstance(e, OSError) else "error"
    return ArchiveError(f"S3 endpoint {endpoint}: {name}: {e}", kind)

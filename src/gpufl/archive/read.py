"""Reading the archive: its sessions listed (one S3 listing, grouped), and one session's segments downloaded,
checked against the sha256 they were stored with, and decompressed under their original names."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gpufl.archive.s3 import EXT, META_GZ_SHA256, META_SHA256, classify, parse_url
from gpufl.contract.events import parse_segment_name


class ArchiveReadError(Exception):
    """An archived session that cannot be read: a damaged object, nothing under the URL, or (``unreachable``)
    the S3 server or its credentials failing; the message says which."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass
class ArchivedSession:
    """One session's archived segments, as the bucket lists them (no object is read)."""

    host: str
    app: str
    session_id: str
    prefix: str
    """The key prefix that holds exactly this session's objects (``…/<host>/<app>/<session>/``)."""
    segments: int = 0
    bytes: int = 0
    """Compressed bytes, as stored."""
    last_modified_ns: int = 0


def _segments(client: Any, bucket: str, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, listing entry) of every archived segment under ``prefix``, in key order; other tools' objects
    under the same prefix are passed over."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            base = key.rsplit("/", 1)[-1]
            if base.endswith(EXT) and parse_segment_name(base[: -len(EXT)]) is not None:
                yield key, obj


def list_sessions(client: Any, bucket: str, prefix: str) -> list[ArchivedSession]:
    """Every session archived under ``prefix`` (``parse_url``'s form), in key order (host, app, session).
    Raises the S3 client's errors (``classify`` words them)."""
    out: dict[str, ArchivedSession] = {}
    for key, obj in _segments(client, bucket, prefix):
        parts = key[len(prefix) :].split("/")
        if len(parts) != 4:
            continue  # not the archiver's <host>/<app>/<session>/<segment> layout
        host, app, sid, _ = parts
        s = out.get(key.rsplit("/", 1)[0])
        if s is None:
            s = out[key.rsplit("/", 1)[0]] = ArchivedSession(host, app, sid, key.rsplit("/", 1)[0] + "/")
        s.segments += 1
        s.bytes += int(obj.get("Size", 0))
        modified = obj.get("LastModified")
        if modified is not None:
            s.last_modified_ns = max(s.last_modified_ns, int(modified.timestamp() * 1e9))
    return list(out.values())


def download(client: Any, bucket: str, prefix: str, dest: str) -> list[str]:
    """Every archived segment under ``prefix``, verified and decompressed into ``dest``. Returns names."""
    names = []
    for key, _ in _segments(client, bucket, prefix):
        got = client.get_object(Bucket=bucket, Key=key)
        gz = got["Body"].read()
        meta = got.get("Metadata", {})
        if META_GZ_SHA256 in meta and hashlib.sha256(gz).hexdigest() != meta[META_GZ_SHA256]:
            raise ArchiveReadError(
                f"s3://{bucket}/{key}: its bytes do not match the sha256 it was stored with"
            )
        try:
            data = gzip.decompress(gz)
        except (OSError, EOFError) as e:
            raise ArchiveReadError(f"s3://{bucket}/{key}: not readable gzip ({e})") from None
        if META_SHA256 in meta and hashlib.sha256(data).hexdigest() != meta[META_SHA256]:
            raise ArchiveReadError(
                f"s3://{bucket}/{key}: decompressed bytes do not match the archived sha256"
            )
        name = key.rsplit("/", 1)[-1][: -len(EXT)]
        with open(os.path.join(dest, name), "wb") as f:
            f.write(data)
        names.append(name)
    return names


def fetch(client: Any, url: str, dest: str, endpoint: str, **words: str) -> list[str]:
    """``download`` of the archived session at ``url``, each failure one ``ArchiveReadError`` in words (S3
    errors classified against ``endpoint``; ``words`` go to ``classify``)."""
    bucket, prefix = parse_url(url)
    try:
        names = download(client, bucket, prefix, dest)
    except ArchiveReadError:
        raise
    except Exception as e:
        raise ArchiveReadError(str(classify(e, endpoint, bucket, **words)), unreachable=True) from None
    if not names:
        raise ArchiveReadError(f"no archived segments under {url}")
    return names

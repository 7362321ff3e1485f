"""The archiver: copies each closed log segment, compressed, to an S3-compatible bucket, beside delivery.

A segment is closed once a later segment of its stream exists (rotation), its last record is the
stream's ``session_end``, its local writer is gone, or nothing was appended to it for ``idle_s`` seconds
(a session cut short on another host). It is stored at ``<prefix>/<host>/<app>/<session>/<segment>.gz``.

Codec: gzip (zlib level 3, header mtime 0, no file name) — in the standard library, read by every
tool and by S3 consoles, and deterministic: the same segment gives the same bytes, so a repeat upload
(a kill between the upload and the cursor write) writes identical bytes to the same key. Level 3: on a
gpt_train device segment it compresses 8.3× at ~220 MB/s, level 6 9.7× at ~90 MB/s, level 1 7.6× at
~260 MB/s (one core); the agent shares the GPU host's CPU, so speed wins over the last 15 %. zstd would
do better on both, but is not a dependency of the project.

The archiver's thread runs at a lower CPU priority (nice +10, Linux) than delivery: archiving may lag,
delivery should not.

Each object carries the sha256 and size of the uncompressed and compressed bytes in its metadata; after
an upload a HEAD must show the same size and metadata before the cursor records the segment as archived
(size and sha256). A segment that grew after it was archived (an idle-closed segment whose writer came
back) is uploaded again to the same key. Failures (endpoint down, credentials refused) are retried with
backoff in this thread only: delivery to the backend goes on regardless.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpufl.agent import discovery, liveness
from gpufl.agent.cursor import Archived, Cursor
from gpufl.agent.metrics import Metrics
from gpufl.agent.sinks.base import Backoff
from gpufl.archive import s3

# The object layout, its metadata keys and S3 failures in words are shared with the archive's readers
# (gpufl.archive); named here too, where the agent's code and tests have always found them.
from gpufl.archive.s3 import (  # noqa: F401 - re-exported
    EXT,
    META_GZ_SHA256,
    META_GZ_SIZE,
    META_SHA256,
    META_SIZE,
    ArchiveError,
    classify,
    read_credentials_file,
)
from gpufl.contract.events import segment_name

log = logging.getLogger("gpufl.agent")

GZIP_LEVEL = 3


@dataclass
class ArchiveSettings:
    endpoint: str
    bucket: str
    region: str = "us-east-1"
    prefix: str = ""
    access_key: str | None = None
    secret_key: str | None = None
    idle_s: float = 300.0
    delete: bool = False
    multipart_bytes: int = 8 << 20
    poll_interval: float = 1.0
    backoff_base: float = 0.5
    backoff_cap: float = 60.0


def compress(data: bytes) -> bytes:
    """Deterministic gzip: no timestamp, no file name, a fixed level."""
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def object_key(prefix: str, seg: discovery.Segment) -> str:
    parts = [p for p in prefix.strip("/").split("/") if p]
    return "/".join([*parts, seg.host, seg.app, seg.session_id, seg.name + EXT])


def s3_client(s: ArchiveSettings) -> Any:
    return s3.client(s.endpoint, s.region, s.access_key, s.secret_key)


def _ends_session(path: str) -> bool:
    """Whether the segment's last complete line is its stream's ``session_end`` (the stream is over)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            tail = f.read()
    except OSError:
        return False
    if not tail.endswith(b"\n"):
        return False
    last = tail[:-1].rsplit(b"\n", 1)[-1]
    return b'"type":"session_end"' in last.replace(b" ", b"")


class Archiver:
    """Archives the closed segments of ``folder``; runs in a thread of its own (``start``/``stop``).

    ``delivered(seg, size)``: whether delivery acknowledged all of the segment (for ``delete``); None in
    archive-only mode, where a segment may go once it is archived.
    """

    def __init__(
        self,
        s: ArchiveSettings,
        folder: str,
        cursor: Cursor,
        metrics: Metrics,
        delivered: Callable[[discovery.Segment, int], bool] | None = None,
        client: Any = None,
    ) -> None:
        self.s = s
        self.folder = folder
        self.cursor = cursor
        self.metrics = metrics
        self.delivered = delivered
        self.client = client if client is not None else s3_client(s)
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(s.backoff_base, s.backoff_cap)
        self._retry_at = 0.0
        self._closed_since: dict[str, float] = {}
        self.pending = 0
        """Closed segments not yet archived, as of the last pass."""
        self.last_error: ArchiveError | None = None

    # ------------------------------------------------------------ thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gpufl-agent-archiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        try:
            # Linux: a thread's nice value is its own (its native id is a pid for setpriority).
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (OSError, AttributeError):
            pass
        try:
            # Here, not before delivery starts: an endpoint that drops packets must not delay delivery.
            self.probe()
        except ArchiveError as e:
            log.error("archiver: %s; delivery goes on, archiving is retried", e)
        while not self.stop_event.is_set():
            try:
                self.run_pass()
            except Exception:  # never let the archiver take delivery down with it
                log.exception("archiver: unexpected failure; retrying")
            self.stop_event.wait(self.s.poll_interval)

    def drain(self, stop: threading.Event) -> bool:
        """Pass until every closed segment is archived (``--exit-when-idle``); False if stopped first."""
        while not stop.is_set():
            self.run_pass()
            if self.pending == 0:
                if self.s.delete:
                    self.run_pass()  # removes what this pass archived (removal waits for a pass)
                return True
            stop.wait(min(self.s.poll_interval, max(0.05, self._retry_at - time.monotonic())))
        return False

    # ------------------------------------------------------------ one pass

    def run_pass(self, forget: bool = False) -> None:
        """Archive (and with ``delete`` remove) what is closed now; update the archive-lag gauges.

        ``forget``: drop cursor entries of segments gone from the folder (archive-only mode; otherwise
        the delivery loop does it)."""
        found = discovery.scan(self.folder)
        if forget:
            present = {seg.name for segs in found.values() for seg in segs}
            self.cursor.forget(present, {k[0] for k in found})
        now = time.monotonic()
        todo: list[tuple[discovery.Segment, int, bool]] = []
        for segs in found.values():
            # Deletion goes in index order: a segment is never removed while an earlier one of its stream
            # is still here, or the earlier one, now the last, would no longer count as rotated.
            deletable = True
            for i, seg in enumerate(segs):
                try:
                    st = os.stat(seg.path)
                except FileNotFoundError:
                    continue
                done = self.cursor.archived(seg.name)
                if done is not None and done.size == st.st_size and not self.s.delete:
                    continue  # archived, unchanged: no need to read it again (passes stay cheap)
                rotated = i + 1 < len(segs)
                final = rotated or _ends_session(seg.path) or self._writer_gone(seg)
                if not final and time.time() - st.st_mtime < self.s.idle_s:
                    deletable = False
                    continue
                if done is not None and done.size == st.st_size:
                    self._closed_since.pop(seg.name, None)
                    deletable = deletable and final and self._maybe_delete(seg, st.st_size)
                    continue
                deletable = False
                self._closed_since.setdefault(seg.name, now)
                todo.append((seg, st.st_size, final))
        self._set_lag(todo, now)
        if not todo or now < self._retry_at:
            return
        while todo and not self.stop_event.is_set():
            seg = todo[0][0]
            try:
                self.archive(seg)
            except Exception as e:
                self._failed(classify(e, self.s.endpoint, self.s.bucket))
                return
            self._backoff.reset()
            self.last_error = None
            self._closed_since.pop(seg.name, None)
            todo.pop(0)
            self._set_lag(todo, time.monotonic())
            # (with --archiver-delete it goes on the next pass, in index order)

    def _set_lag(self, todo: list[tuple[discovery.Segment, int, bool]], now: float) -> None:
        self.pending = len(todo)
        self.metrics.archive_lag_segments.set(len(todo))
        self.metrics.archive_lag_bytes.set(sum(size for _, size, _ in todo))
        oldest = max((now - self._closed_since.get(seg.name, now) for seg, _, _ in todo), default=0.0)
        self.metrics.archive_lag_seconds.set(oldest)

    def _failed(self, err: ArchiveError) -> None:
        self.metrics.archive_errors.labels(err.kind).inc()
        delay = self._backoff.next()
        self._retry_at = time.monotonic() + delay
        self.last_error = err
        n = self._backoff.attempt
        if n in (1, 5) or n % 20 == 0:
            log.error("archiver: %s; retry %d in %.1fs (delivery goes on)", err, n, delay)

    def _writer_gone(self, seg: discovery.Segment) -> bool:
        info = self.cursor.writer(seg.session_id)
        if info is None:
            zero = os.path.join(self.folder, segment_name(seg.host, seg.app, seg.session_id, seg.stream, 0))
            info = liveness.read_writer(zero)
            if info is not None:
                # remembered: segment 0 may be removed (--archiver-delete, the session byte cap) before the last
                self.cursor.set_writer(seg.session_id, info)
        return info is not None and liveness.writer_gone(info)

    def _maybe_delete(self, seg: discovery.Segment, size: int) -> bool:
        """Remove an archived, closed segment once delivered. Whether it is gone."""
        if not self.s.delete:
            return False
        if self.delivered is not None and not self.delivered(seg, size):
            return False
        try:
            os.remove(seg.path)
            log.info("archiver: removed %s (archived and delivered)", seg.name)
        except FileNotFoundError:
            pass
        return True

    # ------------------------------------------------------------ one segment

    def archive(self, seg: discovery.Segment) -> int | None:
        """Upload one segment, check it, record it in the cursor (saved). Returns the archived size, or
        None if the segment vanished first."""
        try:
            with open(seg.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        sha = hashlib.sha256(data).hexdigest()
        key = object_key(self.s.prefix, seg)
        meta = {META_SHA256: sha, META_SIZE: str(len(data))}
        head = self._head(key)
        if head is None or head.get("Metadata", {}).get(META_SHA256) != sha:
            gz = compress(data)
            meta[META_GZ_SHA256] = hashlib.sha256(gz).hexdigest()
            meta[META_GZ_SIZE] = str(len(gz))
            self._upload(key, gz, meta)
            head = self._head(key)
            got = {} if head is None else head.get("Metadata", {})
            if (
                head is None
                or head.get("ContentLength") != len(gz)
                or any(got.get(k) != v for k, v in meta.items())
            ):
                # a proxy or gateway that dropped metadata or truncated the body: never record it as done
                raise ArchiveError(f"{key}: the stored object does not match what was uploaded", "verify")
            self.metrics.archived(len(data), len(gz))
        # else: already there with these exact bytes (a restart after an upload whose record was lost)
        self.cursor.set_archived(seg.name, Archived(len(data), sha))
        self.cursor.save()
        return len(data)

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            out: dict[str, Any] = self.client.head_object(Bucket=self.s.bucket, Key=key)
            return out
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _upload(self, key: str, body: bytes, meta: dict[str, str]) -> None:
        if len(body) < self.s.multipart_bytes:
            self.client.put_object(Bucket=self.s.bucket, Key=key, Body=body, Metadata=meta)
            return
        import io

        from boto3.s3.transfer import TransferConfig

        cfg = TransferConfig(
            multipart_threshold=self.s.multipart_bytes,
            multipart_chunksize=max(5 << 20, self.s.multipart_bytes),
            use_threads=False,
        )
        self.client.upload_fileobj(
            io.BytesIO(body), self.s.bucket, key, ExtraArgs={"Metadata": meta}, Config=cfg
        )

    def probe(self) -> None:
        """Check the bucket is reachable with our credentials; raises ArchiveError (one line)."""
        try:
            self.client.head_bucket(Bucket=self.s.bucket)
        except Exception as e:
            raise classify(e, self.s.endpoint, self.s.bucket) from None

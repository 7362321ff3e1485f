"""HTTP sink: ``POST {url}{stream}`` NDJSON to the backend's ingest API (docs/ingest-protocol.md).

httpx gives a pooled keep-alive client with explicit timeouts; the body is the segment lines as read
(no re-encoding), gzip-compressed at a low level by default (level 1 costs ~0.8 µs per record and cuts
the bytes ~15×; ``compression="none"`` is faster still on loopback).
"""

from __future__ import annotations

import ssl
import zlib

import httpx
import msgspec

from gpufl.agent.batcher import Batch
from gpufl.agent.sinks.base import Fatal, Result, Retryable, TooLarge
from gpufl.contract.protocol import REDELIVER_HEADER, IngestResult, Rejection


class _Error(msgspec.Struct):
    """An error answer's body (``{"error": ...}``), or any JSON object without one."""

    error: str | None = None


_ANSWER = msgspec.json.Decoder(IngestResult)
_ERROR = msgspec.json.Decoder(_Error)


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from our backend; fall back to our own backoff


def _cert_error(e: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind an httpx transport error, if that is what it is."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _error_field(resp: httpx.Response) -> str | None:
    """The ``error`` of an answer that is a JSON object, its text (200 characters) if it is not JSON."""
    try:
        return _ERROR.decode(resp.content).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return resp.text[:200]


def _error_text(resp: httpx.Response) -> str:
    try:
        body = _ERROR.decode(resp.content)
        if body.error:
            return body.error
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    return resp.text[:200]


class HttpSink:
    def __init__(
        self,
        url: str,
        token: str | None,
        compression: str = "gzip",
        gzip_level: int = 1,
        timeout: float = 60.0,
        ca_bundle: str | None = None,
        redeliver: bool = False,
    ) -> None:
        """``ca_bundle``: PEM file of the CAs an https:// backend's certificate must chain to; without it,
        the system's CAs (httpx's default). Certificates are always verified. ``redeliver``: every batch is
        part of a deliberate re-delivery of whole sessions (archive replay, docs/ingest-protocol.md)."""
        if compression not in ("gzip", "none"):
            raise Fatal(f"--compression for http must be gzip or none, not {compression!r}")
        self.url = url
        self.name = f"http {url}"
        self.compression = compression
        self.gzip_level = gzip_level
        headers = {"Content-Type": "application/x-ndjson"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        if redeliver:
            headers[REDELIVER_HEADER] = "1"
        verify: ssl.SSLContext | bool = True
        if ca_bundle is not None:
            try:
                verify = ssl.create_default_context(cafile=ca_bundle)
            except (OSError, ssl.SSLError) as e:
                raise Fatal(f"--ca-bundle {ca_bundle}: not a readable PEM CA file ({e})") from None
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=10.0), verify=verify
        )

    def _post(self, stream: str, body: bytes) -> httpx.Response:
        if self.compression == "gzip":
            # wbits=31: a gzip container, which is what Content-Encoding: gzip promises.
            c = zlib.compressobj(self.gzip_level, zlib.DEFLATED, 31)
            body = c.compress(body) + c.flush()
        try:
            return self._client.post(f"{self.url}{stream}", content=body)
        except httpx.TransportError as e:
            cert = _cert_error(e)
            if cert is not None:
                # Retried while running (a certificate being replaced); refused at start, see probe().
                raise Retryable(
                    f"the backend's TLS certificate is not trusted ({cert.verify_message}): "
                    "pass the CA that signed it with --ca-bundle",
                    kind="tls",
                ) from None
            raise Retryable(f"{type(e).__name__}: {e}", kind="connect") from None

    def probe(self) -> None:
        try:
            resp = self._post("system", b"")
        except Retryable as e:
            if e.kind == "tls":  # waiting will not make the certificate trusted: say so at once
                raise Fatal(f"{self.url}: {e}") from None
            raise
        if resp.status_code in (401, 403):
            raise Fatal(f"{self.url}: token refused ({resp.status_code}: {_error_text(resp)})")
        if resp.status_code in (404, 405):
            raise Fatal(f"{self.url}system answered {resp.status_code}: is --url the ingest base URL?")
        if resp.status_code in (429, 503) or resp.status_code >= 500:
            raise Retryable(f"HTTP {resp.status_code}", _retry_after(resp), kind="unavailable")

    def send(self, batch: Batch) -> Result:
        if batch.count == 0:
            return Result()
        resp = self._post(batch.stream, batch.body())
        code = resp.status_code
        if code in (200, 400):
            try:
                body = _ANSWER.decode(resp.content)
            except (msgspec.DecodeError, msgspec.ValidationError):
                if code == 200:
                    raise Retryable(f"unreadable 200 response: {resp.text[:200]!r}") from None
                body = IngestResult(0, 0, [])
            rejected = body.rejected
            if code == 400 and not rejected:
                # Nothing usable and no per-record reasons: every record is rejected with the error.
                reason = _error_field(resp) or "rejected by the backend (400)"
                rejected = [Rejection(i, None, reason) for i in range(batch.count)]
            return Result(body.stored, body.duplicates, rejected)
        if code == 413:
            raise TooLarge(_error_text(resp))
        if code in (429, 503):
            kind = "throttled" if code == 429 else "unavailable"
            raise Retryable(f"HTTP {code}", _retry_after(resp), kind=kind)
        if code in (401, 403):
            # Not fatal while running: nothing is lost by waiting, and a fixed token resumes delivery.
            raise Retryable(f"HTTP {code}: {_error_text(resp)}", kind="auth")
        raise Retryable(f"HTTP {code}: {_error_text(resp)}")

    def close(self) -> None:
        self._client.close()

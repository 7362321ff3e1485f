"""``GET /sessions/{id}/export``: a stored session as a Perfetto trace (or trace-event JSON), streamed.

The export (``gpufl.export``) writes into a bounded queue from a worker thread while the response sends what
it wrote: the backend holds a few chunks, not the trace. A failure mid-way (the store gone) aborts the
response, so the client sees an incomplete download rather than a short trace that looks whole.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import StreamingResponse

from gpufl.backend.api.errors import NOT_FOUND
from gpufl.backend.deps import ReadRole, StoreDep
from gpufl.backend.store import NotFound

router = APIRouter(tags=["query"])

Format = Literal["perfetto", "chrome-json"]
_MEDIA = {"perfetto": "application/x-protobuf", "chrome-json": "application/json"}
_SUFFIX = {"perfetto": "pftrace", "chrome-json": "json"}
_CHUNK = 1 << 20
_DONE = object()


class _Cancelled(Exception):
    """The client went away: the export thread stops at its next write."""


class _Pipe:
    """What the exporter writes to: chunks of about ``_CHUNK`` bytes into a queue of a few."""

    def __init__(self) -> None:
        self.q: queue.Queue[object] = queue.Queue(maxsize=4)
        self.buf = bytearray()
        self.cancelled = threading.Event()

    def write(self, data: bytes | str) -> int:
        self.buf += data.encode() if isinstance(data, str) else data
        if len(self.buf) >= _CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            self.put(bytes(self.buf))
            self.buf.clear()

    def put(self, item: object) -> None:
        while True:
            if self.cancelled.is_set():
                raise _Cancelled
            try:
                self.q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue


def _stream(session: object, fmt: Format) -> Iterator[bytes]:
    from gpufl.export import chrome_json, perfetto

    pipe = _Pipe()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if fmt == "perfetto":
                perfetto.export(session, pipe)  # type: ignore[arg-type]
            else:
                chrome_json.export(session, pipe)  # type: ignore[arg-type]
            pipe.flush()
        except _Cancelled:
            return
        except BaseException as e:  # reported by the response below
            failure.append(e)
        try:
            pipe.put(_DONE)
        except _Cancelled:
            pass

    worker = threading.Thread(target=run, name="gpufl-export", daemon=True)
    worker.start()
    try:
        while True:
            item = pipe.q.get()
            if item is _DONE:
                break
            yield item  # type: ignore[misc]
        if failure:
            raise RuntimeError(f"export of {getattr(session, 'session_id', '?')} failed: {failure[0]!r}")
    finally:
        pipe.cancelled.set()


@router.get(
    "/sessions/{session_id}/export",
    dependencies=[ReadRole],
    responses={
        **NOT_FOUND,
        200: {
            "description": "The session as a Perfetto trace (protobuf) or trace-event JSON, streamed",
            "content": {"application/x-protobuf": {}, "application/json": {}},
        },
    },
    response_class=StreamingResponse,
)
def export_session(
    store: StoreDep,
    session_id: Annotated[str, Path(min_length=1, max_length=64)],
    format: Annotated[Format, Query()] = "perfetto",
) -> StreamingResponse:
    try:
        session = store.stored_session(session_id)
    except NotFound:
        raise HTTPException(404, f"session {session_id!r} not found") from None
    name = f"{session_id}.{_SUFFIX[format]}"
    return StreamingResponse(
        _stream(session, format),
        media_type=_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )

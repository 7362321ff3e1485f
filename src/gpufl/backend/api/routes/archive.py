"""The raw-log archive (#23): archived sessions beside the store (read), restoring one (admin), restore jobs."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse

from gpufl.backend.api import schemas as S
from gpufl.backend.api.errors import BAD_CURSOR
from gpufl.backend.archive import Archive, ArchiveUnavailable
from gpufl.backend.auth import Role
from gpufl.backend.deps import AdminRole, ReadRole

router = APIRouter(tags=["archive"])

ARCHIVE_DOWN: dict[int | str, dict[str, Any]] = {
    502: {
        "model": S.ArchiveErrorBody,
        "description": "The archive cannot be read (unreachable, refused, misconfigured)",
    }
}
_MISSING = {"model": S.ErrorBody, "description": "No such archived session or job"}


def _archive(request: Request) -> Archive:
    archive: Archive = request.app.state.archive
    return archive


def _down(e: ArchiveUnavailable) -> JSONResponse:
    return JSONResponse({"error": str(e), "kind": e.kind}, status_code=502)


def _encode(prefix: str) -> str:
    return base64.urlsafe_b64encode(prefix.encode()).decode().rstrip("=")


def _decode(text: str) -> str:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(400, "invalid cursor") from None


@router.get(
    "/archive/sessions",
    response_model=S.ArchivePage,
    responses={**BAD_CURSOR, **ARCHIVE_DOWN},
)
def archived_sessions(
    request: Request,
    role: Annotated[Role, ReadRole],
    in_store: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Any:
    """Every session in the archive (host, app, session order), with whether the store holds it;
    ``in_store=false`` lists those a restore would bring back. Each call lists the archive's objects anew."""
    archive = _archive(request)
    after = _decode(cursor) if cursor is not None else None
    if not archive.configured:
        return S.ArchivePage(
            configured=False,
            url=None,
            can_restore=role == Role.admin,
            archived=0,
            not_in_store=0,
            items=[],
            next_cursor=None,
        )
    try:
        found = archive.sessions()
    except ArchiveUnavailable as e:
        return _down(e)
    chosen = [(s, held) for s, held in found if in_store is None or held == in_store]
    if after is not None:
        chosen = [(s, held) for s, held in chosen if s.prefix > after]
    page = chosen[:limit]
    items = [
        S.ArchivedSessionItem(
            host=s.host,
            app=s.app,
            session_id=s.session_id,
            segments=s.segments,
            bytes=s.bytes,
            last_modified_ns=s.last_modified_ns,
            in_store=held,
        )
        for s, held in page
    ]
    return S.ArchivePage(
        configured=True,
        url=archive.url,
        can_restore=role == Role.admin,
        archived=len(found),
        not_in_store=sum(1 for _, held in found if not held),
        items=items,
        next_cursor=_encode(page[-1][0].prefix) if len(chosen) > limit else None,
    )


@router.post(
    "/archive/sessions/{session_id}/restore",
    response_model=S.RestoreJobInfo,
    status_code=202,
    dependencies=[AdminRole],
    responses={
        404: _MISSING,
        409: {"model": S.ErrorBody, "description": "No archive configured, or host/app needed to choose"},
        **ARCHIVE_DOWN,
    },
)
def restore(
    request: Request,
    session_id: Annotated[str, Path(min_length=1, max_length=64)],
    host: Annotated[str | None, Query(max_length=256)] = None,
    app: Annotated[str | None, Query(max_length=256)] = None,
) -> Any:
    """Start re-ingesting an archived session as a deliberate re-delivery (what the store lacks is added,
    a session retention deleted is re-created); answers the job, whose status ``GET /archive/jobs/{id}``
    follows. A restore of a session already being restored answers that job."""
    archive = _archive(request)
    if not archive.configured:
        raise HTTPException(409, "no archive configured (GPUFL_ARCHIVE_URL=s3://BUCKET/PREFIX)")
    try:
        matches = archive.find(session_id, host, app)
    except ArchiveUnavailable as e:
        return _down(e)
    if not matches:
        raise HTTPException(404, f"session {session_id!r} is not in the archive {archive.url}")
    if len(matches) > 1:
        where = ", ".join(f"{m.host}/{m.app}" for m in matches)
        raise HTTPException(
            409, f"session {session_id!r} is archived under several host/app ({where}): pass host and app"
        )
    return S.RestoreJobInfo.model_validate(archive.start_restore(matches[0]).as_dict())


@router.get("/archive/jobs", response_model=S.RestoreJobList, dependencies=[ReadRole])
def jobs(request: Request) -> S.RestoreJobList:
    found = sorted(_archive(request).jobs.values(), key=lambda j: j.started_ns, reverse=True)
    return S.RestoreJobList(items=[S.RestoreJobInfo.model_validate(j.as_dict()) for j in found])


@router.get(
    "/archive/jobs/{job_id}",
    response_model=S.RestoreJobInfo,
    dependencies=[ReadRole],
    responses={404: _MISSING},
)
def job(request: Request, job_id: Annotated[str, Path(max_length=64)]) -> S.RestoreJobInfo:
    found = _archive(request).jobs.get(job_id)
    if found is None:
        raise HTTPException(404, f"no restore job {job_id!r} (jobs live until the backend restarts)")
    return S.RestoreJobInfo.model_validate(found.as_dict())

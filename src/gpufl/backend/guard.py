"""Token and role checked before a byte of the request body is read.

FastAPI reads and parses a route's declared body before it runs the route's dependencies, the role checks
among them: an unauthenticated ``POST /api/v1/keys`` of 512 MiB was read in whole and parsed (~1.7 GB
resident) before its 401 (or a 422 when the JSON was bad). ``POST /keys`` now reads its body itself, after
the check; this ASGI middleware makes the rule hold for every route, present and future. It hands the app a
``receive`` that, the first time the app asks for the body, checks the roles the selected route's
dependencies require (``deps.require`` tags them; routing has put the route in the scope by then) and
raises the 401/403 instead of reading: nothing of the body is read, and a client that sent
``Expect: 100-continue`` is never told to send it. A route whose dependencies ran first (no declared body,
e.g. the ingest endpoint) has its role in the scope already and is not asked twice.

It also bounds the bodies of every route but the ingest endpoint (``_PARSED_BODY_MAX``, 413).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpufl.backend.auth import AuthError, Role, authenticate_key
from gpufl.backend.deps import AUTHENTICATED, _bearer, authorize

_PARSED_BODY_MAX = 1 << 20
"""Bytes of a request body any route but the ingest endpoint reads (today only ``POST /keys``, a role and
a name); the ingest endpoint, marked ``own_body_limits``, reads its body under its own limits."""


def needed_roles(route: Any) -> list[Role]:
    """The roles the ``deps.require`` dependencies of a FastAPI route (at any depth) ask for."""
    out: list[Role] = []
    todo = [getattr(route, "dependant", None)]
    while todo:
        dep = todo.pop()
        if dep is None:
            continue
        needed = getattr(dep.call, "needed_role", None)
        if isinstance(needed, Role):
            out.append(needed)
        todo.extend(dep.dependencies)
    return out


class AuthBeforeBody:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        first = True
        parsed = False
        seen = 0

        async def guarded() -> Message:
            nonlocal first, parsed, seen
            if first:
                first = False
                route = scope.get("route")  # set by routing before the route runs
                needed = needed_roles(route)
                if needed and scope.get(AUTHENTICATED) is None:
                    try:
                        scope[AUTHENTICATED] = await run_in_threadpool(_check, scope, needed)
                    except AuthError as e:
                        # FastAPI passes an HTTPException raised by the body read on to the app's handler.
                        raise HTTPException(e.status, e.message) from None
                parsed = route is not None and not getattr(route.endpoint, "own_body_limits", False)
                declared = Headers(scope=scope).get("content-length", "")
                if parsed and declared.isdigit() and int(declared) > _PARSED_BODY_MAX:
                    raise HTTPException(413, f"request body exceeds {_PARSED_BODY_MAX} bytes")
            message = await receive()
            if parsed and message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > _PARSED_BODY_MAX:
                    raise HTTPException(413, f"request body exceeds {_PARSED_BODY_MAX} bytes")
            return message

        await self.app(scope, guarded, send)


def _check(scope: Scope, needed: list[Role]) -> tuple[str, Role]:
    key_id, role = authenticate_key(scope["app"].state.store, _bearer(Request(scope)))
    for n in needed:
        authorize(role, n)
    return key_id, role

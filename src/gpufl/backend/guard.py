"""Token and role checked before a byte of the request body is read.

FastAPI reads and parses a route's declared body before it runs the route's dependencies, the role checks
among them: an unauthenticated ``POST /api/v1/keys`` of 512 MiB was read in whole and parsed (~1.7 GB
resident) before its 401 (or a 422 when the JSON was bad). This ASGI middleware hands the app a
``receive`` that, the first time the app asks for the body, checks the roles the selected route's
dependencies require (``deps.require`` tags them; routing has put the route in the scope by then) and
raises the 401/403 instead of reading: nothing of the body is read, and a client that sent
``Expect: 100-continue`` is never told to send it. A route whose dependencies ran first (no declared body,
e.g. the ingest endpoint) has its role in the scope already and is not asked twice.

It also bounds the bodies FastAPI parses itself (``_PARSED_BODY_MAX``); the ingest endpoint reads its own
body under its own limits and declares none.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpufl.backend.auth import AuthError, Role, authenticate
from gpufl.backend.deps import AUTHENTICATED, _bearer, authorize

_PARSED_BODY_MAX = 1 << 20
"""Bytes of a JSON body FastAPI parses for a route (today only ``POST /keys``: a role and a name)."""


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
                if needed and not isinstance(scope.get(AUTHENTICATED), Role):
                    try:
                        scope[AUTHENTICATED] = await run_in_threadpool(_check, scope, needed)
                    except AuthError as e:
                        # FastAPI passes an HTTPException raised by the body read on to the app's handler.
                        raise HTTPException(e.status, e.message) from None
                parsed = getattr(route, "body_field", None) is not None
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


def _check(scope: Scope, needed: list[Role]) -> Role:
    role = authenticate(scope["app"].state.store, _bearer(Request(scope)))
    for n in needed:
        authorize(role, n)
    return role

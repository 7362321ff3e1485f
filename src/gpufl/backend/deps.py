"""FastAPI dependencies: the store, role checks and per-key rate limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gpufl.backend.auth import AuthError, Role, allowed, authenticate_key
from gpufl.backend.config import Settings
from gpufl.backend.store import SqlStore


def get_store(request: Request) -> SqlStore:
    store: SqlStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[SqlStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _bearer(request: Request) -> str | None:
    h = request.headers.get("authorization")
    if not h:
        return None
    scheme, _, token = h.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


# Declares the bearer scheme in the OpenAPI document (securitySchemes + each operation's security), so
# clients and the fuzzer know which calls need a token. auto_error=False: the check below answers itself,
# with the project's error body.
_bearer_scheme = HTTPBearer(auto_error=False, description="an API key: gpufl_<id>_<secret>")
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)]

AUTHENTICATED = "gpufl.key"
"""Scope key of the (key id, role) the request's token was authenticated as (by ``require`` or, before the
body is read, by ``guard.AuthBeforeBody``): the store is asked once per request."""


def authorize(role: Role, needed: Role) -> None:
    if not allowed(role, needed):
        raise AuthError(403, f"token role {role.value!r} may not do this (needs {needed.value!r})")


def require(needed: Role) -> Callable[..., Role]:
    """Dependency: the request's token must be valid (401) and carry ``needed`` or admin (403); then the
    key's ingest or query rate limit takes a token (429)."""
    kind = "ingest" if needed == Role.ingest else "query"

    def check(request: Request, _: BearerDoc) -> Role:
        found = request.scope.get(AUTHENTICATED)
        if found is None:
            found = authenticate_key(request.app.state.store, _bearer(request))
            request.scope[AUTHENTICATED] = found
        key_id, role = found
        authorize(role, needed)
        # After the role check: a request refused with 403 costs the key nothing.
        request.app.state.rate_limits[kind].take(key_id)
        return role

    check.needed_role = needed  # type: ignore[attr-defined]  # read by guard.AuthBeforeBody
    return check


IngestRole = Depends(require(Role.ingest))
ReadRole = Depends(require(Role.read))
AdminRole = Depends(require(Role.admin))
OperatorRole = Depends(require(Role.operator))

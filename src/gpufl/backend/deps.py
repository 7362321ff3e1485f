"""FastAPI dependencies: the store and role checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from gpufl.backend.auth import AuthError, Role, allowed, authenticate
from gpufl.backend.core.config import Settings
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


AUTHENTICATED = "gpufl.role"
"""Scope key of the role the request's token was authenticated as (by ``require`` or, before the body is
read, by ``guard.AuthBeforeBody``): the store is asked once per request."""


def authorize(role: Role, needed: Role) -> None:
    if not allowed(role, needed):
        raise AuthError(403, f"token role {role.value!r} may not do this (needs {needed.value!r})")


def require(needed: Role) -> Callable[[Request], Role]:
    """Dependency: the request's token must be valid (401) and carry ``needed`` or admin (403)."""

    def check(request: Request) -> Role:
        role = request.scope.get(AUTHENTICATED)
        if not isinstance(role, Role):
            role = authenticate(request.app.state.store, _bearer(request))
            request.scope[AUTHENTICATED] = role
        authorize(role, needed)
        return role

    check.needed_role = needed  # type: ignore[attr-defined]  # read by guard.AuthBeforeBody
    return check


IngestRole = Depends(require(Role.ingest))
ReadRole = Depends(require(Role.read))
AdminRole = Depends(require(Role.admin))

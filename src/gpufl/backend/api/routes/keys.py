"""API key management (admin): create (token shown once), list (no tokens), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from gpufl.backend import auth
from gpufl.backend.api.schemas import Deleted, KeyCreated, KeyInfo, KeyList
from gpufl.backend.deps import AdminRole, StoreDep

router = APIRouter(tags=["keys"], dependencies=[AdminRole])


class KeyCreateBody(BaseModel):
    role: auth.Role
    name: str = Field(min_length=1, max_length=200)


@router.post("/keys", response_model=KeyCreated)
def create_key(store: StoreDep, body: KeyCreateBody) -> KeyCreated:
    key_id, token = auth.create_key(store, body.role, body.name)
    return KeyCreated(id=key_id, name=body.name, role=body.role.value, token=token)


@router.get("/keys", response_model=KeyList)
def list_keys(store: StoreDep) -> KeyList:
    return KeyList(items=[KeyInfo(**k) for k in store.list_keys()])


@router.delete("/keys/{key_id}", response_model=Deleted)
def revoke_key(store: StoreDep, key_id: Annotated[str, Path(max_length=64)]) -> Deleted:
    if not store.revoke_key(key_id):
        raise HTTPException(404, f"no active key {key_id!r}")
    return Deleted(deleted=True)

"""API key management (admin): create (token shown once), list (no tokens), revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from gpufl.backend import auth
from gpufl.backend.api.errors import NOT_FOUND
from gpufl.backend.api.schemas import Deleted, KeyCreated, KeyInfo, KeyList
from gpufl.backend.deps import AdminRole, StoreDep

router = APIRouter(tags=["keys"], dependencies=[AdminRole])


class KeyCreateBody(BaseModel):
    role: auth.Role
    name: str = Field(min_length=1, max_length=200)
    host: str | None = Field(default=None, min_length=1, max_length=200)
    """An ingest key only: bind it to the hosts matching this shell glob (``node-*``); the agent routes refuse
    it any other host (403). Absent: it may name any host."""

    @model_validator(mode="after")
    def _host_for_ingest_only(self) -> KeyCreateBody:
        if self.host is not None and self.role != auth.Role.ingest:
            raise ValueError("only ingest keys can be bound to hosts")
        return self


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with its $defs (the Role enum) inlined, for openapi_extra."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    for prop in schema.get("properties", {}).values():
        if ref := prop.pop("$ref", None):
            prop.update(defs[ref.rsplit("/", 1)[1]])
    return schema


# The body is read after the admin check, not declared as a parameter: FastAPI parses declared bodies
# before it runs any dependency, so a request without a token got 400/422 with details of its body
# instead of 401 (found by the fuzzer). The document still describes the body (openapi_extra).
@router.post(
    "/keys",
    response_model=KeyCreated,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_schema(KeyCreateBody)}},
        }
    },
)
async def create_key(request: Request, store: StoreDep) -> KeyCreated:
    try:
        body = KeyCreateBody.model_validate_json(await request.body())
    except ValidationError as e:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in e.errors(include_url=False)]
        ) from None
    key_id, token = await run_in_threadpool(auth.create_key, store, body.role, body.name, body.host)
    return KeyCreated(id=key_id, name=body.name, role=body.role.value, token=token, host_glob=body.host)


@router.get("/keys", response_model=KeyList)
def list_keys(store: StoreDep) -> KeyList:
    return KeyList(items=[KeyInfo(**k) for k in store.list_keys()])


@router.delete("/keys/{key_id}", response_model=Deleted, responses=NOT_FOUND)
def revoke_key(store: StoreDep, key_id: Annotated[str, Path(max_length=64)]) -> Deleted:
    if not store.revoke_key(key_id):
        raise HTTPException(404, f"no active key {key_id!r}")
    return Deleted(deleted=True)

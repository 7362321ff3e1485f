"""The error responses of the OpenAPI document: every status code an operation may answer, with its body.

Clients, and the fuzzer's conformance checks (tests/backend/test_fuzz.py), learn from the document which
codes an operation gives: 401/403/429 wherever a token is needed, 422 in the project's
``{"error", "detail"}`` shape (FastAPI would document ``{"detail"}`` alone), 404 where a path names a
session or key, 400 where a cursor is taken.
"""

from __future__ import annotations

from typing import Any

from gpufl.backend.api.schemas import ErrorBody, ValidationErrorBody

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}

API_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, unknown or revoked token"},
    403: {"model": ErrorBody, "description": "The token's role may not do this"},
    422: {"model": ValidationErrorBody, "description": "A parameter or body the API does not take"},
    429: {
        "model": ErrorBody,
        "description": "The key's request rate limit: retry after Retry-After seconds",
        "headers": _RETRY_AFTER,
    },
}
"""What every token-protected operation may answer."""

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such session, kernel or key"}
}
BAD_CURSOR: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody, "description": "An invalid cursor"}}

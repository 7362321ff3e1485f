"""API keys: random tokens, shown once, stored only as SHA-256 hashes, checked on every request.

A token is ``gpufl_<id>_<secret>``: the id finds the row, the secret's hash is compared with
``hmac.compare_digest`` (timing-safe). Nothing is cached, so a revocation takes effect on the next request
on every backend sharing the store. The bootstrap admin token from ``GPUFL_ADMIN_TOKEN`` may be any string;
it is stored under the fixed id ``bootstrap`` and checked the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from enum import StrEnum

from gpufl.backend.store import SqlStore


class Role(StrEnum):
    ingest = "ingest"
    read = "read"
    admin = "admin"


BOOTSTRAP_ID = "bootstrap"
_TOKEN = re.compile(r"^gpufl_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})$")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """(key id, token, hash to store)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, f"gpufl_{key_id}_{secret}", hash_secret(secret)


def create_key(store: SqlStore, role: Role, name: str) -> tuple[str, str]:
    key_id, token, h = new_token()
    store.add_key(key_id, name, role.value, h)
    return key_id, token


def install_bootstrap(store: SqlStore, admin_token: str | None) -> str | None:
    """Install GPUFL_ADMIN_TOKEN as the bootstrap admin key; without it, generate an admin key on first start
    (no active admin key yet) and return its token so the caller prints it once."""
    if admin_token:
        store.put_key(
            BOOTSTRAP_ID, "bootstrap (GPUFL_ADMIN_TOKEN)", Role.admin.value, hash_secret(admin_token)
        )
        return None
    if store.has_active_admin():
        return None
    _, token = create_key(store, Role.admin, "bootstrap")
    return token


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def authenticate(store: SqlStore, token: str | None) -> Role:
    """The role of a valid, unrevoked token, else AuthError(401)."""
    if not token:
        raise AuthError(401, "missing bearer token")
    m = _TOKEN.match(token)
    key_id, secret = (m.group(1), m.group(2)) if m else (BOOTSTRAP_ID, token)
    row = store.get_key(key_id)
    # Compare against a dummy hash when the id is unknown so the response time doesn't reveal ids.
    stored = row[1] if row else hash_secret("\x00unknown")
    ok = hmac.compare_digest(stored, hash_secret(secret))
    if row is None or not ok:
        raise AuthError(401, "invalid token")
    if row[2] is not None:
        raise AuthError(401, "token revoked")
    return Role(row[0])


def allowed(role: Role, needed: Role) -> bool:
    return role == Role.admin or role == needed

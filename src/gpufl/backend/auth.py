"""API keys: random tokens, shown once, stored only as SHA-256 hashes, checked on every request.

A token is ``gpufl_<id>_<secret>``: the id finds the row, the secret's hash is compared with
``hmac.compare_digest`` (timing-safe). Nothing is cached, so a revocation takes effect on the next request
on every backend sharing the store. The bootstrap admin token from ``GPUFL_ADMIN_TOKEN`` may be any string;
it is stored under the fixed id ``bootstrap`` (or, in the generated format, under its own id) and checked
the same way (``install_bootstrap``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
import re
import secrets
from enum import StrEnum

from gpufl.backend.store import SqlStore

log = logging.getLogger("gpufl.backend")


class Role(StrEnum):
    ingest = "ingest"
    read = "read"
    operator = "operator"
    """Reads, and requests remote captures (issue #22); no key management, no deletion."""
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


def create_key(store: SqlStore, role: Role, name: str, host_glob: str | None = None) -> tuple[str, str]:
    """A new key: (id, token). ``host_glob``: an ingest key bound to the hosts it matches (the agent routes
    refuse other hosts: ``host_allowed``); other roles cannot be bound (ValueError)."""
    if host_glob is not None and role != Role.ingest:
        raise ValueError(f"only ingest keys can be bound to hosts (not {role.value})")
    key_id, token, h = new_token()
    store.add_key(key_id, name, role.value, h, host_glob)
    return key_id, token


def host_allowed(store: SqlStore, key_id: str, host: str) -> str | None:
    """Why the key may not name ``host`` on the agent routes (it is bound to a glob that does not match),
    else None (unbound keys, every key before migration 10, name any host)."""
    glob = store.key_host_glob(key_id)
    if glob is None or fnmatch.fnmatchcase(host, glob):
        return None
    return f"key {key_id} is bound to hosts {glob!r}: it may not name host {host!r}"


class BootstrapError(ValueError):
    """GPUFL_ADMIN_TOKEN cannot be installed: the backend refuses to start (one line on stderr)."""


# Printable ASCII without spaces: what a client can put after "Bearer " (the server strips whitespace).
_SENDABLE = re.compile(r"[\x21-\x7e]+")


def install_bootstrap(store: SqlStore, admin_token: str | None) -> str | None:
    """Install GPUFL_ADMIN_TOKEN as an admin key; without it, generate an admin key on first start (no
    active admin key yet) and return its token so the caller prints it once.

    - Any string works. One in the generated format (``gpufl_<16 hex>_<secret>``: a token a backend
      printed, set as GPUFL_ADMIN_TOKEN) is installed under the id inside it, since that is the id
      ``authenticate`` looks it up by; other strings under the id ``bootstrap``. If that id already holds
      another key (a different secret, or a role other than admin) the backend refuses to start rather
      than replace or promote it.
    - A revocation sticks: if the stored key has this very token's hash and was revoked (``DELETE
      /keys/<id>``, ``keys revoke``), it stays revoked across restarts, with a warning; a leaked token
      must not come back because the environment still names it. Setting a new GPUFL_ADMIN_TOKEN rotates
      it.
    """
    if admin_token:
        if not _SENDABLE.fullmatch(admin_token):
            raise BootstrapError(
                "GPUFL_ADMIN_TOKEN cannot be sent in an Authorization header: use printable ASCII without "
                "spaces (e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        m = _TOKEN.match(admin_token)
        key_id, secret = (m.group(1), m.group(2)) if m else (BOOTSTRAP_ID, admin_token)
        h = hash_secret(secret)
        row = store.get_key(key_id)
        if row is not None and m is not None:
            role, stored, _ = row
            if not hmac.compare_digest(stored, h):
                raise BootstrapError(
                    f"GPUFL_ADMIN_TOKEN has the format of a generated token, but key {key_id} exists with a "
                    "different secret: use the key's own token, or another string"
                )
            if role != Role.admin.value:
                raise BootstrapError(
                    f"GPUFL_ADMIN_TOKEN is the token of key {key_id}, role {role}, not admin: "
                    "it will not be promoted; use an admin token"
                )
        if row is not None and hmac.compare_digest(row[1], h):
            if row[2] is not None:
                log.warning(
                    "GPUFL_ADMIN_TOKEN (key %s) was revoked and stays revoked: set a new GPUFL_ADMIN_TOKEN "
                    "to rotate it",
                    key_id,
                )
            return None  # installed before (and its role checked above or fixed as admin)
        store.put_key(key_id, "bootstrap (GPUFL_ADMIN_TOKEN)", Role.admin.value, h)
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
    return authenticate_key(store, token)[1]


def authenticate_key(store: SqlStore, token: str | None) -> tuple[str, Role]:
    """(key id, role) of a valid, unrevoked token, else AuthError(401). The id keys the rate limits."""
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
    return key_id, Role(row[0])


def allowed(role: Role, needed: Role) -> bool:
    """Admin may do anything; an operator what a reader may, and request captures; others their own role."""
    return role == Role.admin or role == needed or (role == Role.operator and needed == Role.read)

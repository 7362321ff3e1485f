"""``gpufl-backend``: serve (default), ``keys create|list|revoke``, ``prune``.

Every serve flag is also an environment variable (``--data-dir`` ↔ ``GPUFL_DATA_DIR``); flags win. Errors
(bad flags, port in use, unreachable database) are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import socket
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import httpx
from pydantic import ValidationError

from gpufl.backend.core.config import Settings

_SERVE_FLAGS: tuple[tuple[str, str, type], ...] = (
    ("--host", "host", str),
    ("--port", "port", int),
    ("--data-dir", "data_dir", str),
    ("--database", "database", str),
    ("--kafka-brokers", "kafka_brokers", str),
    ("--kafka-topic-prefix", "kafka_topic_prefix", str),
    ("--kafka-group", "kafka_group", str),
    ("--retention-days", "retention_days", float),
    ("--max-store-bytes", "max_store_bytes", int),
    # Memory limits (docs/operations.md, "Limits").
    ("--max-body-bytes", "max_body_bytes", int),
    ("--max-decompressed-bytes", "max_decompressed_bytes", int),
    ("--max-inflight-bytes", "max_inflight_bytes", int),
    ("--duckdb-memory-limit", "duckdb_memory_limit", int),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        die(f"{self.prog}: {message}", 2)


def die(message: str, code: int = 1) -> NoReturn:
    print(
        f"gpufl-backend: error: {message}" if not message.startswith("gpufl-backend") else message,
        file=sys.stderr,
    )
    sys.exit(code)


def _add_settings_flags(p: argparse.ArgumentParser) -> None:
    for flag, dest, typ in _SERVE_FLAGS:
        p.add_argument(flag, dest=dest, type=typ, default=None, help=f"env GPUFL_{dest.upper()}")


def _settings(ns: argparse.Namespace) -> Settings:
    given = {dest: getattr(ns, dest) for _, dest, _ in _SERVE_FLAGS if getattr(ns, dest, None) is not None}
    try:
        return Settings(**given)
    except ValidationError as e:
        err = e.errors()[0]
        die(f"invalid setting {'.'.join(str(x) for x in err['loc'])}: {err['msg']}", 2)


def _open_store(settings: Settings) -> Any:
    from gpufl.backend.store import StoreError, open_store

    try:
        return open_store(settings.database_url(), duckdb_memory_limit=settings.duckdb_memory_limit)
    except StoreError as e:
        die(str(e))
    except Exception as e:  # e.g. a DuckDB file locked by a running backend
        die(f"cannot open store: {str(e).splitlines()[0]}")


def serve(argv: Sequence[str]) -> None:
    p = _Parser(prog="gpufl-backend", description="GPU Flight backend (HTTP ingest + query API + UI)")
    _add_settings_flags(p)
    p.add_argument("--log-level", default="info")
    ns = p.parse_args(argv)
    settings = _settings(ns)
    logging.basicConfig(level=ns.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gpufl.backend.limits import tune_malloc

    tune_malloc()  # before the store and the threads allocate: freed bodies go back to the OS
    with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((settings.host, settings.port))
        except OSError as e:
            die(f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e}")
    store = _open_store(settings)
    from gpufl.backend.auth import install_bootstrap

    token = install_bootstrap(store, settings.admin_token)
    if token:
        print(f"bootstrap admin token (shown once, store it now): {token}", flush=True)

    import uvicorn

    from gpufl.backend.app import create_app

    app = create_app(settings, store)
    # DuckDB's Python client takes the GIL between execution tasks (to check for Ctrl-C), many times per
    # statement: with the default 5 ms switch interval each take can wait 5 ms while another request's
    # thread runs Python (a 10-statement script went from 22 to ~90 ms beside a busy thread, ~30 ms at
    # 0.5 ms; in the ingest benchmark the write lock is held 5-10 % less). Costs a few more switches.
    sys.setswitchinterval(0.0005)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=ns.log_level.lower())
    finally:
        store.close()


def _backend_url(settings: Settings, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def _running(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _api(method: str, url: str, token: str | None, path: str, body: Any = None) -> Any:
    if not token:
        die(f"a backend is running at {url}: pass --token or set GPUFL_ADMIN_TOKEN (an admin token)")
    try:
        r = httpx.request(
            method,
            f"{url}/api/v1{path}",
            json=body,
            timeout=30.0,
            headers={"Authorization": f"Bearer {token}"},
        )
    except httpx.HTTPError as e:
        die(f"request to {url} failed: {e}")
    if r.status_code >= 400:
        try:
            msg = r.json().get("error", r.text)
        except ValueError:
            msg = r.text
        die(f"{method} {path}: HTTP {r.status_code}: {msg}")
    return r.json()


def _ts(ns: int | None) -> str:
    return "-" if ns is None else dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def admin_command(cmd: str, argv: Sequence[str]) -> None:
    from gpufl.backend import auth

    # The common flags go on the parser that parses last (argparse sub-parsers would reset them otherwise).
    common = _Parser(add_help=False)
    _add_settings_flags(common)
    common.add_argument("--url", help="backend URL (default http://<host>:<port>)")
    common.add_argument("--token", help="admin token for a running backend (default env GPUFL_ADMIN_TOKEN)")
    if cmd == "keys":
        p = _Parser(prog=f"gpufl-backend {cmd}")
        sub = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
        c = sub.add_parser("create", parents=[common])
        c.add_argument("--role", required=True, choices=[r.value for r in auth.Role])
        c.add_argument("--name", required=True)
        sub.add_parser("list", parents=[common])
        r = sub.add_parser("revoke", parents=[common])
        r.add_argument("key_id")
    else:
        p = _Parser(prog=f"gpufl-backend {cmd}", parents=[common])
    ns = p.parse_args(argv)
    settings = _settings(ns)
    url = _backend_url(settings, ns.url)
    token = ns.token or settings.admin_token
    remote = _running(url)
    store: Any = None if remote else _open_store(settings)
    try:
        if cmd == "prune":
            if remote:
                res = _api("POST", url, token, "/admin/prune")
                reasons = res["reasons"]
            else:
                from gpufl.backend.retention import prune

                reasons = prune(store, settings.retention_days, settings.max_store_bytes)
            for sid, why in reasons.items():
                print(f"deleted {sid} ({why})")
            return
        if ns.action == "create":
            if remote:
                print(_api("POST", url, token, "/keys", {"role": ns.role, "name": ns.name})["token"])
            else:
                print(auth.create_key(store, auth.Role(ns.role), ns.name)[1])
        elif ns.action == "list":
            items = _api("GET", url, token, "/keys")["items"] if remote else store.list_keys()
            print(f"{'ID':<18} {'ROLE':<7} {'CREATED':<21} {'REVOKED':<21} NAME")
            for k in items:
                print(
                    f"{k['id']:<18} {k['role']:<7} {_ts(k['created_ns']):<21} {_ts(k['revoked_ns']):<21} {k['name']}"
                )
        else:
            if remote:
                _api("DELETE", url, token, f"/keys/{ns.key_id}")
            elif not store.revoke_key(ns.key_id):
                die(f"no active key {ns.key_id!r}")
            print(f"revoked {ns.key_id}")
    finally:
        if store is not None:
            store.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("keys", "prune"):
        admin_command(args[0], args[1:])
    elif args and args[0] == "serve":
        serve(args[1:])
    else:
        serve(args)


if __name__ == "__main__":
    main()

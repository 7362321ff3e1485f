"""``gpufl-backend``: serve (default), ``keys create|list|revoke``, ``prune``.

Every serve flag is also an environment variable (``--data-dir`` ↔ ``GPUFL_DATA_DIR``); flags win. Errors
(bad flags, port in use, unreachable database) are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import socket
import ssl
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import httpx
from pydantic import ValidationError

from gpufl.backend.config import Settings

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
    ("--max-batch-sessions", "max_batch_sessions", int),
    ("--duckdb-memory-limit", "duckdb_memory_limit", int),
    ("--retention-quiet-s", "retention_quiet_s", float),
    ("--tls-cert", "tls_cert", str),
    ("--tls-key", "tls_key", str),
    ("--rate-limit-ingest", "rate_limit_ingest", float),
    ("--rate-limit-ingest-burst", "rate_limit_ingest_burst", int),
    ("--rate-limit-query", "rate_limit_query", float),
    ("--rate-limit-query-burst", "rate_limit_query_burst", int),
    ("--archive-url", "archive_url", str),
    ("--archive-endpoint", "archive_endpoint", str),
    ("--archive-region", "archive_region", str),
    ("--archive-credentials-file", "archive_credentials_file", str),
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


_FLAG_HELP = {
    "host": "address to listen on",
    "port": "port to listen on",
    "data_dir": "folder of the embedded DuckDB store",
    "database": "PostgreSQL URL (instead of the embedded store)",
    "kafka_brokers": "consume events from these Kafka brokers too",
    "kafka_topic_prefix": "Kafka topic prefix",
    "kafka_group": "Kafka consumer group",
    "retention_days": "delete sessions older than this",
    "max_store_bytes": "delete the oldest sessions above this store size",
    "max_body_bytes": "largest ingest request body",
    "max_decompressed_bytes": "largest ingest body once decompressed",
    "max_inflight_bytes": "ingest bytes held in memory at once",
    "max_batch_sessions": "most sessions one ingest batch may hold records of",
    "duckdb_memory_limit": "DuckDB's memory limit, bytes",
    "retention_quiet_s": "a session is final after this many quiet seconds",
    "tls_cert": "PEM certificate: serve HTTPS",
    "tls_key": "PEM private key of --tls-cert",
    "rate_limit_ingest": "ingest requests per second per key",
    "rate_limit_ingest_burst": "ingest burst per key",
    "rate_limit_query": "query requests per second per key",
    "rate_limit_query_burst": "query burst per key",
    "archive_url": "the agents' raw-log archive, s3://BUCKET[/PREFIX]: list and restore its sessions",
    "archive_endpoint": "S3 endpoint of --archive-url",
    "archive_region": "S3 region of --archive-url",
    "archive_credentials_file": "AWS credentials file for --archive-url (else AWS_ACCESS_KEY_ID/...)",
}
_ADMIN_FLAGS = frozenset({"host", "port", "data_dir", "database", "tls_cert", "duckdb_memory_limit"})
"""The settings an admin command uses: where the backend or its store is (and whether it speaks HTTPS).
``keys create --help`` listed every serve flag (Kafka, rate limits, ...), none of which it reads."""
_PRUNE_FLAGS = frozenset({"retention_days", "max_store_bytes", "retention_quiet_s"})
"""And what ``prune`` applies when it runs on the store itself."""


def _add_settings_flags(p: argparse.ArgumentParser, only: frozenset[str] | None = None) -> None:
    for flag, dest, typ in _SERVE_FLAGS:
        if only is not None and dest not in only:
            continue
        default = Settings.model_fields[dest].default
        shown = "none" if default is None else default
        p.add_argument(
            flag,
            dest=dest,
            type=typ,
            default=None,  # None: not given, so Settings applies the environment, then its default
            help=f"{_FLAG_HELP.get(dest, dest)} (env GPUFL_{dest.upper()}; default: {shown})",
        )


def _settings(ns: argparse.Namespace) -> Settings:
    given = {dest: getattr(ns, dest) for _, dest, _ in _SERVE_FLAGS if getattr(ns, dest, None) is not None}
    try:
        return Settings(**given)
    except ValidationError as e:
        err = e.errors()[0]
        die(f"invalid setting {'.'.join(str(x) for x in err['loc'])}: {err['msg']}", 2)


def _check_tls(settings: Settings) -> None:
    """Both TLS files or neither, and loadable: one clear line now rather than uvicorn's traceback later."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        die("--tls-cert and --tls-key go together (GPUFL_TLS_CERT, GPUFL_TLS_KEY)", 2)
    if settings.tls_cert is None or settings.tls_key is None:
        return
    for flag, path in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            die(f"{flag} {path}: {e.strerror or e}", 2)
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    except ssl.SSLError as e:  # (an OSError too: the files were readable above)
        die(f"--tls-cert/--tls-key: not a matching PEM certificate and private key ({e.reason or e})", 2)


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
    p.add_argument("--log-level", default="info", help="debug, info, warning or error (default: %(default)s)")
    ns = p.parse_args(argv)
    settings = _settings(ns)
    _check_tls(settings)
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
    from gpufl.backend.auth import BootstrapError, install_bootstrap

    try:
        token = install_bootstrap(store, settings.admin_token)
    except BootstrapError as e:
        store.close()
        die(str(e))
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
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=ns.log_level.lower(),
            ssl_certfile=settings.tls_cert,
            ssl_keyfile=settings.tls_key,
        )
    finally:
        store.close()


def _backend_url(settings: Settings, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    # With GPUFL_TLS_CERT set the backend serves HTTPS only.
    return f"{'https' if settings.tls_cert else 'http'}://{host}:{settings.port}"


_verify: ssl.SSLContext | bool = True
"""How the admin commands verify an https backend: the system's CAs, or --ca-bundle's."""


def _running(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0, verify=_verify).status_code == 200
    except httpx.ConnectError as e:
        if "CERTIFICATE_VERIFY_FAILED" in str(e):  # it runs, and opening its store would be wrong
            die(f"{url}: the backend's TLS certificate is not trusted ({e}): pass --ca-bundle")
        return False
    except httpx.HTTPError:
        return False


def _api(method: str, url: str, token: str | None, path: str, body: Any = None) -> Any:
    if not token:
        die(f"a backend is running at {url}: set GPUFL_ADMIN_TOKEN or pass --token-file (an admin token)")
    try:
        r = httpx.request(
            method,
            f"{url}/api/v1{path}",
            json=body,
            timeout=30.0,
            headers={"Authorization": f"Bearer {token}"},
            verify=_verify,
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
    # prune run locally applies the retention settings; the keys commands only locate the store.
    _add_settings_flags(common, _ADMIN_FLAGS | (_PRUNE_FLAGS if cmd == "prune" else frozenset()))
    common.add_argument("--url", help="backend URL (default http(s)://<host>:<port>)")
    common.add_argument(
        "--ca-bundle", help="PEM CA file to verify an https backend with (default env GPUFL_CA_BUNDLE)"
    )
    common.add_argument(
        "--token",
        help="admin token for a running backend (default env GPUFL_ADMIN_TOKEN; a flag is visible in ps)",
    )
    common.add_argument("--token-file", help="read the admin token from this file (first line)")
    if cmd == "keys":
        p = _Parser(prog=f"gpufl-backend {cmd}")
        sub = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
        c = sub.add_parser("create", parents=[common])
        c.add_argument(
            "--role", required=True, choices=[r.value for r in auth.Role], help="what the key may do"
        )
        c.add_argument("--name", required=True, help="a label for the key (who or what uses it)")
        c.add_argument(
            "--host-glob",
            help="ingest keys only: bind the key to the hosts matching this glob (e.g. 'node-*'); the agent "
            "routes refuse it any other host. Default: any host",
        )
        sub.add_parser("list", parents=[common])
        r = sub.add_parser("revoke", parents=[common])
        r.add_argument("key_id")
    else:
        p = _Parser(prog=f"gpufl-backend {cmd}", parents=[common])
    ns = p.parse_args(argv)
    settings = _settings(ns)
    url = _backend_url(settings, ns.url)
    ca_bundle = ns.ca_bundle or os.environ.get("GPUFL_CA_BUNDLE")
    if ca_bundle:
        global _verify
        try:
            _verify = ssl.create_default_context(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as e:
            die(f"--ca-bundle {ca_bundle}: not a readable PEM CA file ({e})", 2)
    token = ns.token or settings.admin_token
    if ns.token is not None:
        print(
            "gpufl-backend: warning: --token puts the token on the command line, where any local user can"
            " read it (ps): use GPUFL_ADMIN_TOKEN or --token-file",
            file=sys.stderr,
        )
    if ns.token_file is not None:
        try:
            with open(ns.token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        except (OSError, UnicodeDecodeError) as e:
            die(f"--token-file {ns.token_file}: {getattr(e, 'strerror', None) or e}", 2)
    remote = _running(url)
    store: Any = None if remote else _open_store(settings)
    try:
        if cmd == "prune":
            if remote:
                res = _api("POST", url, token, "/admin/prune")
                reasons = res["reasons"]
            else:
                from gpufl.backend.retention import prune

                reasons = prune(
                    store,
                    settings.retention_days,
                    settings.max_store_bytes,
                    quiet_s=settings.retention_quiet_s,
                )
            for sid, why in reasons.items():
                print(f"deleted {sid} ({why})")
            return
        if ns.action == "create":
            if ns.host_glob is not None and ns.role != auth.Role.ingest.value:
                die("--host-glob binds ingest keys only", 2)
            if remote:
                body = {"role": ns.role, "name": ns.name, **({"host": ns.host_glob} if ns.host_glob else {})}
                print(_api("POST", url, token, "/keys", body)["token"])
            else:
                print(auth.create_key(store, auth.Role(ns.role), ns.name, ns.host_glob)[1])
        elif ns.action == "list":
            items = _api("GET", url, token, "/keys")["items"] if remote else store.list_keys()
            print(f"{'ID':<18} {'ROLE':<8} {'HOSTS':<12} {'CREATED':<21} {'REVOKED':<21} NAME")
            for k in items:
                hosts = k.get("host_glob") or "*"
                print(
                    f"{k['id']:<18} {k['role']:<8} {hosts:<12} {_ts(k['created_ns']):<21} {_ts(k['revoked_ns']):<21} {k['name']}"
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

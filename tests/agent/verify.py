"""Checks on what the store holds, using only the documented ingest protocol: every record written is
re-posted, and the backend, which de-duplicates on (session_id, stream, seq), must answer that it already
holds every one (``duplicates`` = all, ``stored`` = 0). Together with the de-duplication this is
"every event exactly once in the store"."""

from __future__ import annotations

import os
from collections import defaultdict

import httpx
import msgspec

from gpufl.events import parse_segment_name


class _Key(msgspec.Struct):
    session_id: str
    stream: str
    seq: int


def written(folder: str) -> dict[str, list[bytes]]:
    """Every complete line of every segment in the folder, per stream, in file order."""
    out: dict[str, list[bytes]] = defaultdict(list)
    segs = sorted(
        (s.session_id, s.stream, s.index, name)
        for name in os.listdir(folder)
        if (s := parse_segment_name(name)) is not None
    )
    for _, stream, _, name in segs:
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        out[stream].extend(data[: data.rfind(b"\n")].split(b"\n") if b"\n" in data else [])
    return out


def check_contiguous(lines: dict[str, list[bytes]]) -> int:
    """The producer's own invariant (seq 0..n-1 per session and stream): a broken fixture would make the
    store check meaningless."""
    total = 0
    per: dict[tuple[str, str], list[int]] = defaultdict(list)
    for stream_lines in lines.values():
        for line in stream_lines:
            k = msgspec.json.decode(line, type=_Key)
            per[(k.session_id, k.stream)].append(k.seq)
    for key, seqs in per.items():
        assert sorted(seqs) == list(range(len(seqs))), f"{key}: producer wrote non-contiguous seqs"
        total += len(seqs)
    return total


def assert_store_holds_all(url: str, token: str, folder: str) -> int:
    lines = written(folder)
    total = check_contiguous(lines)
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        for stream, stream_lines in lines.items():
            for i in range(0, len(stream_lines), 20_000):
                part = stream_lines[i : i + 20_000]
                r = client.post(f"{url}{stream}", content=b"\n".join(part) + b"\n")
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["rejected"] == [], body["rejected"][:3]
                assert (body["stored"], body["duplicates"]) == (0, len(part)), (
                    f"{stream}[{i}:{i + len(part)}]: the store lacked {body['stored']} records"
                )
    return total

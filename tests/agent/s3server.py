"""A real S3 server for the archiver's tests: Ceph radosgw on loopback.

``.ci/run`` (scripts/services.sh) starts one and exports GPUFL_TEST_S3_ENDPOINT/_ACCESS_KEY/_SECRET_KEY;
without them, a developer machine with radosgw installed gets a private one (scripts/radosgw.sh) for the
test session, and one without skips (CI, where CI=true, fails instead: see conftest.require)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .conftest import require

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "radosgw.sh")


@dataclass(frozen=True)
class S3:
    endpoint: str
    access_key: str
    secret_key: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def env(self) -> dict[str, str]:
        """The agent's environment: credentials the preferred way, not on the command line."""
        return {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def new_bucket(self) -> str:
        name = f"gpufl-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


def _from_env() -> S3 | None:
    e = os.environ
    if not e.get("GPUFL_TEST_S3_ENDPOINT"):
        return None
    return S3(e["GPUFL_TEST_S3_ENDPOINT"], e["GPUFL_TEST_S3_ACCESS_KEY"], e["GPUFL_TEST_S3_SECRET_KEY"])


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    found = _from_env()
    if found is not None:
        yield found
        return
    require("Ceph radosgw (S3; .ci/run starts it)", shutil.which("radosgw") is not None)
    work = tempfile.mkdtemp(prefix="gpufl-rgw-")
    try:
        out = subprocess.run(
            ["bash", SCRIPT, "start", work], capture_output=True, text=True, timeout=180, check=False
        )
        if out.returncode != 0:
            pytest.fail(f"radosgw did not start: {out.stderr[-2000:]}")
        env = dict(line.split("=", 1) for line in out.stdout.split())
        yield S3(
            env["GPUFL_TEST_S3_ENDPOINT"], env["GPUFL_TEST_S3_ACCESS_KEY"], env["GPUFL_TEST_S3_SECRET_KEY"]
        )
    finally:
        subprocess.run(["bash", SCRIPT, "stop", work], capture_output=True, timeout=60, check=False)
        shutil.rmtree(work, ignore_errors=True)

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import gpufl
from gpufl.client import session
from gpufl.client.config import Options
from gpufl.contract import events


def read(log_dir: Path, stream: str) -> list[events.Record]:
    out: list[events.Record] = []
    for p in sorted(log_dir.glob(f"*.{stream}.*.log")):
        out.extend(events.decode(line) for line in p.read_bytes().splitlines())
    return out


@pytest.fixture
def fresh(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield tmp_path
    gpufl.shutdown()
    session._session = None


def test_init_is_idempotent_and_without_gpu_records_scopes_and_host_metrics(fresh: Path) -> None:
    s1 = gpufl.init(app_name="t", log_dir=str(fresh), system_interval_s=0.05)
    s2 = gpufl.init(app_name="other")
    assert s1 is s2 and s1 is not None
    with gpufl.scope("a"):
        pass
    threading.Event().wait(0.2)
    gpufl.shutdown()
    gpufl.shutdown()  # idempotent
    for stream in events.STREAMS:
        recs = read(fresh, stream)
        assert isinstance(recs[0], events.SessionStart) and recs[0].seq == 0
        assert recs[0].schema_version == events.SCHEMA_VERSION
        assert isinstance(recs[-1], events.SessionEnd)
        assert [r.seq for r in recs] == list(range(len(recs)))
    system = [r for r in read(fresh, "system") if isinstance(r, events.SystemSample)]
    assert len(system) >= 2 and system[0].host is not None and system[0].host.ram_total_mib
    notices = [r for r in read(fresh, "device") if isinstance(r, events.Notice)]
    assert any(n.engine == "tracing" for n in notices), "one clear notice says why tracing is off"


def test_steps_are_top_level_step_scopes_the_diff_counts(fresh: Path) -> None:
    from gpufl.diff.profile import profile_from_records

    gpufl.init(app_name="t", log_dir=str(fresh), engines=["tracing"])
    for _ in range(3):
        with gpufl.step(), gpufl.scope("forward"):
            pass

    @gpufl.step()
    def one_more() -> None:
        pass

    one_more()
    gpufl.shutdown()
    recs = read(fresh, "scope")
    paths = {r.id: r.value for r in recs if isinstance(r, events.DictEntry) and r.kind == "scope"}
    begins = [r for r in recs if isinstance(r, events.ScopeBegin)]
    assert [paths[b.path_id] for b in begins if b.depth == 0] == ["step"] * 4
    assert {paths[b.path_id] for b in begins if b.depth == 1} == {"step/forward"}
    assert profile_from_records("s", recs).steps == 4


def test_options_come_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GPUFL_LOG_DIR", str(tmp_path))
    monkeypatch.setenv("GPUFL_SYSTEM_INTERVAL", "0.5")
    monkeypatch.setenv("GPUFL_ENGINES", "system")
    monkeypatch.setenv("GPUFL_JOB_ID", "job-7")
    o = Options.resolve(app_name="x")
    assert (o.log_dir, o.system_interval_s, o.engines, o.job_id) == (str(tmp_path), 0.5, ("system",), "job-7")
    assert Options.resolve(system_interval_s=2.0).system_interval_s == 2.0  # explicit beats environment
    monkeypatch.setenv("GPUFL_SYSTEM_INTERVAL", "soon")
    with pytest.raises(ValueError, match="GPUFL_SYSTEM_INTERVAL"):
        Options.resolve()


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GPUFL_ENABLED", "0")
    assert gpufl.init(log_dir=str(tmp_path)) is None
    with gpufl.scope("still fine"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_scopes_nest_per_thread_decorate_and_work_in_asyncio(fresh: Path) -> None:
    gpufl.init(app_name="t", log_dir=str(fresh), engines="system")

    @gpufl.scope("decorated")
    def work() -> None:
        with gpufl.scope("inner"):
            pass

    def thread_body() -> None:
        with gpufl.scope("thread"):
            work()

    async def task(name: str) -> None:
        async with gpufl.scope(name):
            await asyncio.sleep(0.01)
            with gpufl.scope("leaf"):
                await asyncio.sleep(0.01)

    async def both() -> None:
        await asyncio.gather(task("t1"), task("t2"))

    with gpufl.scope("main"):
        t = threading.Thread(target=thread_body)
        t.start()
        t.join()
        work()
    asyncio.run(both())
    with pytest.raises(KeyError), gpufl.scope("fails"):
        raise KeyError("x")
    gpufl.shutdown()
    recs = read(fresh, "scope")
    paths = {r.id: r.value for r in recs if isinstance(r, events.DictEntry)}
    begins = [r for r in recs if isinstance(r, events.ScopeBegin)]
    got = sorted(paths[b.path_id] for b in begins)
    assert got == sorted(
        [
            "main",
            "main/decorated",
            "main/decorated/inner",
            "thread",
            "thread/decorated",
            "thread/decorated/inner",
            "t1",
            "t1/leaf",
            "t2",
            "t2/leaf",
            "fails",
        ]
    )
    ends = {r.inst: r for r in recs if isinstance(r, events.ScopeEnd)}
    assert set(ends) == {b.inst for b in begins}
    assert next(e for e in ends.values() if e.error).error == "KeyError"


def test_forked_child_is_off_until_it_initialises(fresh: Path) -> None:
    gpufl.init(app_name="parent", log_dir=str(fresh), engines="system")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: a DataLoader-like worker
        try:
            with gpufl.scope("in_child"):
                pass
            ok = gpufl.active_session() is None
            s = gpufl.init(app_name="child", log_dir=str(fresh), engines="system")
            with gpufl.scope("child_scope"):
                pass
            gpufl.shutdown()
            os.write(w, f"{int(ok)} {s.session_id if s else ''}".encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    ok, child_sid = os.read(r, 100).decode().split()
    parent = gpufl.active_session()
    assert parent is not None
    gpufl.shutdown()
    assert ok == "1" and child_sid != parent.session_id
    parent_scopes = [r for r in read(fresh, "scope") if r.session_id == parent.session_id]
    child_scopes = [r for r in read(fresh, "scope") if r.session_id == child_sid]
    assert not any(isinstance(x, events.DictEntry) and x.value == "in_child" for x in parent_scopes)
    assert any(isinstance(x, events.DictEntry) and x.value == "child_scope" for x in child_scopes)


def test_sigterm_writes_session_end_and_still_dies_by_the_signal(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import time, gpufl
        gpufl.init(app_name="term", log_dir={str(tmp_path)!r}, engines="system")
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == -signal.SIGTERM
    for stream in events.STREAMS:
        last = read(tmp_path, stream)[-1]
        assert isinstance(last, events.SessionEnd) and last.reason == "signal"


def test_exit_without_shutdown_still_ends_the_session(tmp_path: Path) -> None:
    code = f"import gpufl; gpufl.init(app_name='ex', log_dir={str(tmp_path)!r}, engines='system')"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
    last = read(tmp_path, "device")[-1]
    assert isinstance(last, events.SessionEnd) and last.reason == "atexit"


def _worker_task(x: int) -> tuple[int, bool]:
    # Runs in a forked pool worker: gpufl must be off there and scopes must be harmless no-ops.
    with gpufl.scope("in_worker"):
        pass
    return x * x, gpufl.active_session() is None


def test_a_forked_child_gets_the_programs_own_signal_handling_back(fresh: Path) -> None:
    """gpufl's SIGTERM/SIGINT handlers run in Python; inherited by a forked pool worker, SIGTERM from
    Pool.terminate() could land between the worker's last signal check and its blocking wait, and the worker
    waited forever (this test file's pool test hung in CI). The child is off, so it gets the program's own
    dispositions back (here the defaults)."""
    import signal as sig

    assert gpufl.init(app_name="sigfork", log_dir=str(fresh), engines="system") is not None
    assert sig.getsignal(sig.SIGTERM) is not sig.SIG_DFL  # gpufl's, in the parent
    pid = os.fork()
    if pid == 0:  # the child: exit code says what it found
        ok = (
            sig.getsignal(sig.SIGTERM) is sig.SIG_DFL and sig.getsignal(sig.SIGINT) is sig.default_int_handler
        )
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    gpufl.shutdown()
    assert os.waitstatus_to_exitcode(status) == 0


def test_forking_worker_pool_like_a_dataloader(fresh: Path) -> None:
    import multiprocessing as mp

    s = gpufl.init(app_name="loader", log_dir=str(fresh), engines="system")
    assert s is not None
    with gpufl.scope("epoch"), mp.get_context("fork").Pool(3) as pool:
        results = pool.map(_worker_task, range(12))
    gpufl.shutdown()
    assert [r[0] for r in results] == [x * x for x in range(12)]
    assert all(off for _, off in results)
    sessions = {p.name.split(".")[2] for p in fresh.glob("*.log")}
    assert sessions == {s.session_id}, "workers wrote nothing of their own"
    scope_paths = [r.value for r in read(fresh, "scope") if isinstance(r, events.DictEntry)]
    assert scope_paths == ["epoch"]

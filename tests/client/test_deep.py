"""The deep engines' client side without a GPU (their GPU behaviour: tests/gpu/test_deep_gpu.py): options,
engine planning, and that a machine where they cannot run gets one notice while the session goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

import gpufl
from gpufl.client.config import Options
from gpufl.client.engines import planned
from gpufl.contract import events as ev


def test_sass_and_pc_sampling_are_one_engine() -> None:
    assert planned(("tracing", "sass", "pc_sampling", "system")) == ["tracing", "deep", "system"]
    assert planned(("pc_sampling",)) == ["deep"]
    assert planned(("tracing", "system")) == ["tracing", "system"]
    # the deep engines stop before tracing (engines stop in reverse): after it, whatever the order asked
    assert planned(("sass", "system", "tracing")) == ["system", "tracing", "deep"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deep": "always"}, "deep must be"),
        ({"pc_sampling_period": 4}, "pc_sampling_period"),
        ({"pc_sampling_period": 32}, "pc_sampling_period"),
        ({"deep_timeout_s": 0}, "deep_timeout_s"),
        ({"engines": "tracing,sas"}, "unknown engine"),
    ],
)
def test_bad_deep_options_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Options.resolve(**kwargs)


def test_deep_options_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFL_ENGINES", "tracing,pc_sampling")
    monkeypatch.setenv("GPUFL_DEEP", "session")
    monkeypatch.setenv("GPUFL_PC_SAMPLING_PERIOD", "9")
    o = Options.resolve()
    assert (o.engines, o.deep, o.pc_sampling_period) == (("tracing", "pc_sampling"), "session", 9)


def _records(log_dir: Path, stream: str) -> list[ev.Record]:
    out: list[ev.Record] = []
    for p in sorted(log_dir.glob(f"*.{stream}.*.log")):
        out += [ev.decode(line) for line in p.read_bytes().splitlines() if line.strip()]
    return out


def test_deep_scopes_without_a_gpu_give_a_notice_and_the_session_goes_on(tmp_path: Path) -> None:
    gpufl.init(app_name="deep", log_dir=str(tmp_path), engines="sass,pc_sampling")
    try:
        # nested deep scopes: the outermost is the range
        with gpufl.scope("attention", deep=True), gpufl.scope("inner", deep=True):
            pass
    finally:
        gpufl.shutdown()
    device = _records(tmp_path, "device")
    notices = [r for r in device if isinstance(r, ev.Notice) and r.engine == "deep"]
    assert notices and any(r.code in ("deep_unavailable", "deep_not_run") for r in notices), notices
    scope = _records(tmp_path, "scope")
    assert [r.ts_ns > 0 for r in scope if isinstance(r, ev.ScopeEnd)] == [True, True]
    assert not [r for r in scope if isinstance(r, ev.ProfileSample)]  # nothing invented


def test_a_deep_scope_waits_only_briefly_for_a_range_still_being_collected() -> None:
    """A deep scope on the program's thread while the controller closes a window's range (CUPTI's collection:
    seconds): the scope goes uncovered after PROGRAM_WAIT_S, counted and said once at the end; once the lock is
    free a deep scope begins its range. The native side here is a stand-in that only counts calls (this test is
    about the engine's locking; the CUPTI side runs in tests/gpu)."""
    import threading
    import time
    from types import SimpleNamespace

    from gpufl.client.engines import deep as deep_mod

    class Native:
        begun = 0

        def deep_setup(self, *_: object) -> tuple[None, None, None, int, list[str]]:
            return None, None, None, 0, []

        def deep_begin(self) -> tuple[None, None]:
            self.begun += 1
            return None, None

        def deep_teardown(self) -> dict[str, object]:
            return {"pc": [], "pc_samples": 0}

    notices: list[tuple[str, str]] = []
    eng = deep_mod.DeepEngine(sass=False, pc_sampling=True)
    eng.native = Native()
    eng.options = SimpleNamespace(deep="scopes", pc_sampling_period=12, deep_timeout_s=30)
    eng.session = SimpleNamespace(notice=lambda code, msg, **_: notices.append((code, msg)))
    closing, done = threading.Event(), threading.Event()

    def collect() -> None:  # the controller closing a window's range: holds the engine for a while
        with eng._mu:
            closing.set()
            done.wait(10)

    t = threading.Thread(target=collect)
    t.start()
    assert closing.wait(5)
    t0 = time.monotonic()
    eng.range_begin(7)
    waited = time.monotonic() - t0
    assert deep_mod.PROGRAM_WAIT_S - 0.05 <= waited < deep_mod.PROGRAM_WAIT_S + 1.0
    assert eng.native.begun == 0 and eng.busy_skipped == 1
    done.set()
    t.join(5)
    eng.range_begin(8)
    assert eng.native.begun == 1 and eng._open == 8
    eng._open = None  # the range's end would collect through CUPTI: not this test's
    eng._stop()
    assert [c for c, _ in notices] == ["deep_scopes_not_covered"]
    assert notices[0][1].startswith("1 deep scope(s) not covered")

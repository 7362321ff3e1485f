"""The deep engines (issue #19): SASS metrics (per-PC warp and thread instruction counts, whose ratio is the
average number of active threads per warp instruction: warp divergence) and PC sampling (per-PC stall
reasons), over deep ranges: each ``gpufl.scope(name, deep=True)`` (``deep="scopes"``, the default) or the whole
session (``deep="session"``).

CUPTI's deep APIs run in C (``native/deep.c``; cupti-python binds neither), so these engines need the native
record path; on the cupti-python path they are unavailable with a notice. A range's end waits for the GPU's
work (its kernels' samples) — the cost a deep scope asks for — and runs on a helper thread under a deadline:
an engine that stops making progress is disabled with a notice and the program goes on.

Per range the scope stream gets ``profile_sample`` records (contract v6: kernel and source file by dict id) and
one ``profile_range`` saying what they are a share of (PC samples taken and dropped, the hardware buffer
filling up) and what failed.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from gpufl.client.engines import EngineHost, EngineUnavailable
from gpufl.client.engines.demangle import demangle
from gpufl.contract import events
from gpufl.contract.deep import SASS_INST, SASS_THREAD_INST

DEEP_ENGINES = ("sass", "pc_sampling")
NO_CONTEXT = "no CUDA context yet"
CUBIN_BUDGET = 512 << 20
"""Bytes of module cubins kept for source lines; modules beyond it get no source lines (counted)."""
COLLECT_PCS = 4096
"""PCs CUPTI hands over per PC-sampling read (a range's data takes as many reads as it needs)."""
PROGRAM_WAIT_S = 0.5
"""How long a deep scope on the program's thread waits for a range still being collected (a window's close)."""


class DeepEngine:
    name = "deep"
    device_writer = "python"  # writes to the scope stream only; the device stream is the tracing engine's

    def __init__(self, sass: bool, pc_sampling: bool) -> None:
        self.want_sass = sass
        self.want_pc = pc_sampling
        self.native: Any = None
        self.disabled = False
        self.ready = False
        self.device = 0
        self.engines: list[str] = []
        self._open: int | None = None  # the open range's scope instance (0: the session's range)
        self._open_ns = 0
        self._begin_errors: list[str] = []
        self._sources: dict[tuple[int, str, int], tuple[int, int] | None] = {}
        self._kernel_ids: dict[str, int] = {}
        self.ranges = 0
        self._told_kernels_serial = False
        self._window_range = False  # the open range is a capture window's
        # The program's threads (deep scopes), the capture controller (windows, requests' setup) and shutdown
        # each begin, end or set up ranges: one at a time (CUPTI's deep calls are not made concurrently, and a
        # range begun while another is being closed would find CUPTI still in it and record nothing).
        self._mu = threading.RLock()
        self.busy_skipped = 0  # deep scopes begun while another range was still being collected: not covered

    # ---------------------------------------------------------------- lifecycle (the Engine protocol)

    def prepare(self, session: EngineHost) -> dict[str, Any]:
        from gpufl.client.engines.native_tracing import load_native

        self.session = session
        self.options = session.options
        native, why = load_native(session.options.native.enabled)
        if native is None or not hasattr(native, "deep_setup"):
            raise EngineUnavailable(
                "deep_unavailable",
                "the deep engines (sass, pc_sampling) run in the native record path, which cannot run here: "
                f"{why or 'this build has no deep engines'}",
            )
        self.native = native
        return {}

    def start(self) -> None:
        if self.want_sass:  # only whether libcupti has the functions: the setup waits for a context
            why = self.native.deep_prepare_sass()
            if why:
                self.want_sass = False
                self.session.notice("sass_unavailable", f"sass engine unavailable: {why}", engine="sass")
            elif "tracing" not in self.options.engines:
                self.session.notice(
                    "sass_without_tracing",
                    "sass without tracing: with libcupti "
                    f"{self.native.cupti_version()} (CUPTI API version) SASS metrics may cover only the first "
                    "kernel function a range launches (CUPTI 13.0.85 did so on the H100; 13.5.25 covered every "
                    "function); with tracing on, every function is covered (docs/deep-engines.md)",
                    engine="sass",
                )
        err = self.native.deep_watch(CUBIN_BUDGET)
        if err:
            self.session.notice(
                "deep_source_lines", f"deep engines: no source lines for PCs ({err})", engine=self.name
            )
        if self.options.deep == "session":
            self._begin(0)

    def _acquire_for_program(self) -> bool:
        """The lock, on a thread of the program: waited for only briefly (a range being collected may take
        seconds; the scope then goes uncovered, counted, and said at the end)."""
        if self._mu.acquire(timeout=PROGRAM_WAIT_S):
            return True
        self.busy_skipped += 1
        return False

    def scope_enter(self, inst: int) -> None:
        # the session's range waits for a CUDA context: tried again at each scope (not counted when busy)
        if (
            self.options.deep == "session"
            and self._open is None
            and not self.ready
            and self._mu.acquire(timeout=PROGRAM_WAIT_S)
        ):
            try:
                if self._open is None and not self.ready:
                    self._begin(0)
            finally:
                self._mu.release()

    def scope_exit(self, inst: int) -> None:
        pass

    def stop(self) -> dict[str, Any]:
        with self._mu:
            return self._stop()

    def _stop(self) -> dict[str, Any]:
        if self._open is not None:
            self._end()
        if self.busy_skipped:
            self.session.notice(
                "deep_scopes_not_covered",
                f"{self.busy_skipped} deep scope(s) not covered: each began while the previous deep range's "
                f"samples were still being collected (more than {PROGRAM_WAIT_S:g} s), and gpufl does not make "
                "the program wait longer",
                engine=self.name,
                level="warning",
            )
        if not self.ready and not self.disabled:
            self.session.notice(
                "deep_not_run",
                "deep engines did not run: no CUDA context existed at any deep range "
                + ("(no gpufl.scope(..., deep=True) was entered)" if self.options.deep == "scopes" else ""),
                engine=self.name,
            )
        if self.native is not None and not self.disabled:
            late = self.native.deep_teardown()
            if late["pc"] or late["pc_samples"]:
                now = time.time_ns()
                self._write(None, now, now, late, ["CUPTI delivered these PC samples only at shutdown"])
        return {}

    # ---------------------------------------------------------------- deep ranges (gpufl.scope(deep=True))

    def set_capture(self, on: bool) -> None:
        """A capture window that asked for a deep engine opens (a deep range for its extent, unless one is
        open: a deep scope's or the session's) or closes (its range ends)."""
        with self._mu:
            if on:
                if self._open is None:
                    self._window_range = True
                    self._begin(0)
            elif self._window_range:
                self._window_range = False
                if self._open == 0:
                    self._end()

    def runnable(self) -> list[str]:
        """The deep engines a window asking for them would run now (``sass``, ``pc_sampling``): set up on the
        first ask, as a range's begin would (CUPTI's deep APIs need the program's CUDA context); none while no
        context exists yet or once the engines are disabled (no GPU, CUPTI refused). A capture request is
        answered from this, so an answer never names an engine that could not run."""
        with self._mu:
            if self.disabled or (not self.ready and not self._setup()):
                return []
            return list(self.engines)

    def offered(self) -> list[str]:
        """The deep engines this session would try (``runnable`` without setting anything up): what a request
        refused before any setup (remote capture off, budget spent) may name as missing."""
        if self.disabled:
            return []
        return (
            list(self.engines)
            if self.ready
            else [n for n, w in (("sass", self.want_sass), ("pc_sampling", self.want_pc)) if w]
        )

    def range_begin(self, inst: int) -> None:
        if self.options.deep == "scopes" and self._open is None and self._acquire_for_program():
            try:
                if self._open is None:
                    self._begin(inst)
            finally:
                self._mu.release()

    def range_end(self, inst: int) -> None:
        if self._open == inst:
            with self._mu:
                if self._open == inst:
                    self._end()

    def _setup(self) -> bool:
        period = int(self.options.pc_sampling_period)
        err, sass_err, pc_err, device, _reasons = self.native.deep_setup(
            self.want_sass, self.want_pc, period, COLLECT_PCS
        )
        if err == NO_CONTEXT:
            return False  # nothing launched on the GPU yet: the next range tries again
        if err:
            self._disable("deep_unavailable", f"deep engines unavailable: {err}")
            return False
        for name, why in (("sass", sass_err), ("pc_sampling", pc_err)):
            if why:
                self.session.notice(f"{name}_unavailable", f"{name} engine unavailable: {why}", engine=name)
        self.engines = [
            n
            for n, w, e in (("sass", self.want_sass, sass_err), ("pc_sampling", self.want_pc, pc_err))
            if w and not e
        ]
        if not self.engines:
            self.disabled = True
            return False
        self.device = max(0, int(device))
        self.ready = True
        return True

    def _begin(self, inst: int) -> None:
        if self.disabled or (not self.ready and not self._setup()):
            return
        sass_err, pc_err = self.native.deep_begin()
        self._begin_errors = [e for e in (sass_err, pc_err) if e]
        self._open = inst
        self._open_ns = time.time_ns()

    def _end(self) -> None:
        inst, start_ns = self._open, self._open_ns
        self._open = None
        result: list[Any] = []
        worker = threading.Thread(
            target=lambda: result.append(self.native.deep_end()), name="gpufl-deep", daemon=True
        )
        worker.start()
        worker.join(self.options.deep_timeout_s)
        if worker.is_alive():  # CUPTI stopped making progress: never wait on it again
            self._disable(
                "deep_stalled",
                f"deep engines disabled: closing a deep range took longer than {self.options.deep_timeout_s:g} s "
                "(GPUFL_DEEP_TIMEOUT_S); the range's samples are lost",
            )
            return
        self._write(inst or None, start_ns, time.time_ns(), result[0], self._begin_errors)

    def _disable(self, code: str, message: str) -> None:
        self.disabled = True
        self.session.notice(code, message, engine=self.name, level="error")

    # ---------------------------------------------------------------- records

    def _kernel_id(self, w: Any, mangled: str) -> int:
        kid = self._kernel_ids.get(mangled)
        if kid is None:
            sid = self.session.session_id
            kid = w.intern(
                "kernel",
                ("deep", mangled),
                lambda: events.DictEntry(
                    session_id=sid,
                    stream="scope",
                    kind="kernel",
                    id=0,
                    value=demangle(mangled),
                    mangled=mangled,
                ),
            )
            self._kernel_ids[mangled] = kid
        return kid

    def _source(self, w: Any, crc: int, fn: str, pc: int) -> tuple[int | None, int | None]:
        key = (crc, fn, pc)
        if key not in self._sources:
            found = self.native.deep_source(crc, fn, pc)
            if found is None:
                self._sources[key] = None
            else:
                file, directory, line = found
                path = file if not directory or os.path.isabs(file or "") else os.path.join(directory, file)
                self._sources[key] = (w.intern_string("source_file", path), line) if path else None
        src = self._sources[key]
        return (src[0], src[1]) if src else (None, None)

    def _write(
        self, inst: int | None, start_ns: int, end_ns: int, r: dict[str, Any], errors: list[str]
    ) -> None:
        w = self.session.writers["scope"]
        sid, dev = self.session.session_id, self.device
        common: dict[str, Any] = {
            "session_id": sid,
            "stream": "scope",
            "scope_inst": inst,
            "device_id": dev,
            "ts_ns": end_ns,
        }

        def sample(crc: int, fn: str, pc: int, **fields: Any) -> None:
            file_id, line = self._source(w, crc, fn, pc)
            w.emit(
                events.ProfileSample(
                    kernel_name_id=self._kernel_id(w, fn),
                    pc_offset=pc,
                    source_file_id=file_id,
                    source_line=line,
                    **fields,
                    **common,
                )
            )

        sass_records = pc_records = 0
        for crc, fn, pc, inst_n, thread_n in r["sass"]:
            if not inst_n and not thread_n:
                continue  # an instruction the range never executed: adds nothing to any sum
            for metric, value in ((SASS_INST, inst_n), (SASS_THREAD_INST, thread_n)):
                sample(crc, fn, pc, source="sass_metric", metric_name=metric, metric_value=value)
                sass_records += 1
        for crc, fn, pc, reason, samples in r["pc"]:
            sample(crc, fn, pc, source="pc_sampling", stall_reason=reason, sample_count=samples)
            pc_records += 1
        why = [*errors, *(e for e in (r["sass_error"], r["pc_error"], r["sync_error"]) if e)]
        if r.get("kernels_serial") and not self._told_kernels_serial:
            self._told_kernels_serial = True
            self.session.notice(
                "sass_serialises_kernels",
                "kernels inside SASS-metrics ranges are traced with CUPTI's serial kernel kind (they run one at a "
                "time there): CUPTI's concurrent kernel kind and SASS metrics exclude each other (with both on, "
                "every SASS count read 0); each such range's profile_range record gives its window",
                engine="sass",
            )
        pc_on = "pc_sampling" in self.engines
        w.emit(
            events.ProfileRange(
                session_id=sid,
                stream="scope",
                scope_inst=inst,
                device_id=dev,
                start_ns=start_ns,
                end_ns=max(start_ns, end_ns),
                engines=list(self.engines),  # type: ignore[arg-type]
                pc_samples=r["pc_samples"] if pc_on else None,
                pc_dropped=r["pc_dropped"] if pc_on else None,
                pc_non_user_samples=r["pc_non_user"] if pc_on else None,
                pc_buffer_full=bool(r["pc_buffer_full"]) if pc_on else None,
                pc_period_log2=int(self.options.pc_sampling_period) if pc_on else None,
                pc_records=pc_records if pc_on else None,
                sass_records=sass_records if "sass" in self.engines else None,
                sass_dropped=r["sass_dropped"] if "sass" in self.engines else None,
                error="; ".join(why) or None,
            )
        )
        self.ranges += 1

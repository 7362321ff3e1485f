"""A deep-engine session built in test code, for the arithmetic and grouping of ``store/deep.py`` and the
``/deep`` routes. NOT measured data: every count below is a structural value chosen so that each expected
figure is a hand-checkable quotient (thread instructions = 32*a, 16*a, 8*a per warp instruction a). The
measured check is the committed real capture (examples/captures/deep_truth) and its own test."""

from __future__ import annotations

from typing import Any

from gpufl.contract import events as ev
from gpufl.contract.deep import SASS_INST, SASS_THREAD_INST

from .factory import SessionFactory

SID = "deepunit"
LS = "smsp__pcsamp_warps_issue_stalled_long_scoreboard"
MATH = "smsp__pcsamp_warps_issue_stalled_math_pipe_throttle"
LS_NOT_ISSUED = LS + "_not_issued"  # a subset of LS's samples: never in a total

# (scope_inst, kernel id, pc, file id, line, warp instructions, thread instructions per warp instruction)
SASS = [
    (10, 1, 0, 1, 5, 100, 32),  # kA line 5: no divergence
    (10, 1, 16, 1, 6, 100, 16),  # kA line 6: two-way branch
    (11, 1, 16, 1, 6, 100, 16),  # the second instance of the same scope
    (None, 2, 0, None, None, 10, 8),  # kB in the session-wide range, no line info: four-way
]
# (scope_inst, kernel id, pc, file id, line, stall reason, samples)
PC = [
    (10, 1, 16, 1, 6, LS, 3),
    (10, 1, 16, 1, 6, MATH, 1),
    (10, 1, 16, 1, 6, LS_NOT_ISSUED, 2),
    (10, 1, 0, 1, 5, LS, 1),
    (None, 2, 0, None, None, MATH, 2),
]


def session() -> list[ev.Record]:
    f = SessionFactory(SID)
    recs: list[ev.Record] = [f.start("scope"), f.scope_path(1, "train"), f.scope_path(2, "train/attn")]
    recs.append(
        ev.DictEntry(
            session_id=SID,
            stream="scope",
            seq=f._next("scope"),
            kind="kernel",
            id=1,
            value="kA",
            mangled="_Z2kAv",
        )
    )
    recs.append(f.kernel_name(2, "kB"))
    recs.append(
        ev.DictEntry(
            session_id=SID, stream="scope", seq=f._next("scope"), kind="source_file", id=1, value="a.cu"
        )
    )
    recs += [f.scope_begin(9, 1, 0), f.scope_begin(10, 2, 100, 1, 9), f.scope_end(10, 200)]
    recs += [f.scope_begin(11, 2, 300, 1, 9), f.scope_end(11, 400), f.scope_end(9, 500)]

    def sample(
        inst: int | None, kid: int, pc: int, fid: int | None, line: int | None, **kw: Any
    ) -> ev.ProfileSample:
        return ev.ProfileSample(
            session_id=SID,
            stream="scope",
            seq=f._next("scope"),
            scope_inst=inst,
            device_id=0,
            kernel_name_id=kid,
            pc_offset=pc,
            source_file_id=fid,
            source_line=line,
            ts_ns=f.t0 + 500,
            **kw,
        )

    for inst, kid, pc, fid, line, a, per in SASS:
        recs.append(
            sample(inst, kid, pc, fid, line, source="sass_metric", metric_name=SASS_INST, metric_value=a)
        )
        recs.append(
            sample(
                inst,
                kid,
                pc,
                fid,
                line,
                source="sass_metric",
                metric_name=SASS_THREAD_INST,
                metric_value=a * per,
            )
        )
    for inst, kid, pc, fid, line, reason, n in PC:
        recs.append(
            sample(inst, kid, pc, fid, line, source="pc_sampling", stall_reason=reason, sample_count=n)
        )
    # A pre-v6 sample: the kernel and file by string, no dict ids (old sessions stay readable).
    recs.append(
        ev.ProfileSample(
            session_id=SID,
            stream="scope",
            seq=f._next("scope"),
            source="pc_sampling",
            scope_inst=11,
            device_id=0,
            function_name="kOld",
            source_file="old.cu",
            source_line=3,
            pc_offset=8,
            stall_reason=LS,
            sample_count=1,
        )
    )
    rng = dict(session_id=SID, stream="scope", device_id=0)
    recs.append(
        ev.ProfileRange(
            **rng,
            seq=f._next("scope"),
            scope_inst=10,
            start_ns=f.t0 + 100,
            end_ns=f.t0 + 200,
            engines=["sass", "pc_sampling"],
            pc_samples=7,
            pc_dropped=2,
            pc_buffer_full=True,
            pc_records=3,
            sass_records=4,
            pc_period_log2=10,
        )
    )
    recs.append(
        ev.ProfileRange(
            **rng,
            seq=f._next("scope"),
            scope_inst=11,
            start_ns=f.t0 + 300,
            end_ns=f.t0 + 400,
            engines=["sass"],
            sass_records=2,
            error="pc_sampling: CUPTI_ERROR_INSUFFICIENT_PRIVILEGES",
        )
    )
    recs.append(
        ev.ProfileRange(
            **rng,
            seq=f._next("scope"),
            start_ns=f.t0,
            end_ns=f.t0 + 600,
            engines=["sass", "pc_sampling"],
            pc_samples=2,
            pc_dropped=0,
            sass_records=2,
        )
    )
    return recs

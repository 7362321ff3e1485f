"""NVTX domains as CUPTI delivers them (native/nvtx_domains.c, scopes.c), without a GPU: the test hooks call
the same callback CUPTI calls. The review of the lazy domain callbacks (#21) found each case below."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CUBLAS, EARLY, TSL = 0x7F20_0000_0001, 0x7F20_0000_0002, 0x7F20_0000_0003
SCOPE = 7  # a gpufl.scope instance around the ranges


@pytest.fixture
def hooks(native: Any) -> Iterator[Any]:
    native.drain_nvtx()
    yield native
    native.nvtx_domains("default,named")  # the C side's choice outlives a test: back to the default
    native.drain_nvtx()


def _begins(native: Any) -> dict[str, int]:
    """Each range begun since the last drain: its name → its parent's instance."""
    events, dropped = native.drain_nvtx()
    assert dropped == 0
    return {name: parent for kind, _tid, _inst, parent, _ts, name in events if kind == 0}


def _insts(native: Any) -> dict[str, int]:
    events, _ = native.drain_nvtx()
    return {name: inst for kind, _tid, inst, _parent, _ts, name in events if kind == 0}


def test_a_pop_closes_its_own_domains_range_and_leaves_the_others_open(hooks: Any) -> None:
    """NVTX keeps a stack per domain: cuBLAS's pop closes cuBLAS's range, not the default domain's range opened
    inside it, so what follows still nests under that range (it was re-parented to the enclosing scope)."""
    n = hooks
    n.nvtx_domains("default,named")
    n.nvtx_call(n.NVTX_DOMAIN_CREATE_A, "cuBLAS", 0, CUBLAS)
    n.scope_enter(SCOPE)
    try:
        n.nvtx_call(n.NVTX_DOMAIN_RANGE_PUSH_EX, "gemm", 0, CUBLAS)
        n.nvtx_call(n.NVTX_RANGE_PUSH_A, "step", 0)
        opened = _insts(n)
        n.nvtx_call(n.NVTX_DOMAIN_RANGE_POP, None, 0, CUBLAS)  # closes gemm; step stays open
        n.nvtx_call(n.NVTX_RANGE_PUSH_A, "inner", 0)
        assert _begins(n) == {"inner": opened["step"]}
        n.nvtx_call(n.NVTX_RANGE_POP, None, 0)  # inner
        n.nvtx_call(n.NVTX_RANGE_POP, None, 0)  # step
        n.nvtx_call(n.NVTX_RANGE_PUSH_A, "after", 0)
        assert _begins(n) == {"after": SCOPE}  # everything the ranges opened is closed again
        n.nvtx_call(n.NVTX_RANGE_POP, None, 0)
    finally:
        n.scope_exit(SCOPE)


def test_a_recorded_domain_created_before_its_creation_was_seen_keeps_the_range_callbacks_on(
    hooks: Any,
) -> None:
    """A domain created between NVTX_INJECTION64_PATH and the subscription has a handle we never saw created:
    under "named" its ranges are recorded, so its pops must be seen too. Switching the range callbacks off
    when XLA's TSL appears would leave its open range open for ever."""
    n = hooks
    assert n.nvtx_domains("default,named", True) is True  # lazy
    n.nvtx_call(n.NVTX_DOMAIN_RANGE_PUSH_EX, "early", 0, EARLY)
    assert "early" in _begins(n)
    n.nvtx_call(n.NVTX_DOMAIN_CREATE_A, "TSL", 0, TSL)
    assert n.nvtx_ranges_wanted() is True
    n.nvtx_call(n.NVTX_DOMAIN_RANGE_POP, None, 0, EARLY)


def test_unknown_and_default_domain_counts_say_they_are_partial_once_the_range_callbacks_were_off(
    hooks: Any,
) -> None:
    """Under a list of names, ranges of a domain we never saw created and the default domain's are counted,
    not recorded; while the domain-API range callbacks are off (lazy) those counts miss ranges, and say so."""
    n = hooks
    assert n.nvtx_domains("myapp", True) is True
    n.nvtx_call(n.NVTX_DOMAIN_RANGE_PUSH_EX, "early", 0, EARLY)
    n.nvtx_call(n.NVTX_DOMAIN_RANGE_POP, None, 0, EARLY)
    n.nvtx_call(n.NVTX_RANGE_PUSH_A, "step", 0)
    n.nvtx_call(n.NVTX_RANGE_POP, None, 0)
    n.nvtx_call(n.NVTX_DOMAIN_CREATE_A, "TSL", 0, TSL)
    assert n.nvtx_ranges_wanted() is False  # nothing recorded needs them
    counts = {name: (ranges, partial) for name, ranges, partial in n.nvtx_domain_counts()}
    assert counts["(a domain created before tracing)"] == (1, False)
    n.nvtx_ranges_off()  # as cupti.c marks it when it switches them off
    counts = {name: (ranges, partial) for name, ranges, partial in n.nvtx_domain_counts()}
    assert counts["(a domain created before tracing)"] == (1, True)
    assert counts["(default domain)"] == (1, True)
    assert counts["TSL"] == (0, True)


def test_left_out_counts_survive_a_pause_for_torch_profiler(hooks: Any, tmp_path: Path, notices: Any) -> None:
    """Tracing steps aside for torch.profiler and restarts, which counts left-out ranges anew: the notice at the
    end adds the counts from before the pause (it said only those since the restart)."""
    import gpufl
    from gpufl.client.engines.native_tracing import NativeTracingEngine

    n = hooks
    session = gpufl.init(app_name="pause", log_dir=str(tmp_path), engines="system")
    assert session is not None
    eng = NativeTracingEngine()
    eng.native, eng.session, eng.started = n, session, True
    n.nvtx_domains("default,named")
    n.nvtx_call(n.NVTX_DOMAIN_CREATE_A, "TSL", 0, TSL)
    for _ in range(3):
        n.nvtx_call(n.NVTX_DOMAIN_RANGE_PUSH_EX, "xla", 0, TSL)
        n.nvtx_call(n.NVTX_DOMAIN_RANGE_POP, None, 0, TSL)
    eng.pause("torch.profiler")
    n.nvtx_domains("default,named")  # the restart configures the C side again: its counts start from 0
    n.nvtx_call(n.NVTX_DOMAIN_RANGE_PUSH_EX, "xla", 0, TSL)
    eng._report_domains_left_out()
    gpufl.shutdown()
    said = notices(tmp_path, "nvtx_domains_left_out")
    assert len(said) == 1 and "TSL: 4" in said[0].message

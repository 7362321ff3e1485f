"""Hand-over of CUPTI to torch.profiler, for both record paths.

CUPTI admits one subscriber per process (drivers before r610) and its activity-buffer callbacks are
process-wide. torch.profiler (Kineto) needs both while it runs, so the tracing engine steps aside before
Kineto prepares (``pause``: flush, disable, unsubscribe — never finalize, which would tear CUPTI down under
Kineto) and tries to take CUPTI back after Kineto is disabled (``resume``; it says once if Kineto kept its
subscription). The hook wraps the two functions every torch profiler goes through: now if torch is
imported, else when ``torch.autograd.profiler`` is first imported (``gpufl run`` starts gpufl first).
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import logging
import sys
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("gpufl")


class SteppingAside(Protocol):
    def pause(self, reason: str) -> None: ...

    def resume(self) -> None: ...


_engine: SteppingAside | None = None
_finalize_at_exit: Callable[[], Any] | None = None


def cupti_kept_by_profiler(finalize: Callable[[], Any]) -> None:
    """The engine could not take CUPTI back: torch.profiler's Kineto keeps its CUPTI subscription after it
    stops (torch 2.11). Left so, Kineto's callback runs during the CUDA runtime's own teardown at process
    exit, after Kineto's callback object was destroyed: SIGABRT in
    ``libkineto::callback_switchboard`` (core dump on the H200, issue #15; only when CUDA was initialised
    after gpufl took CUPTI, e.g. ``import torch`` after ``gpufl.init``). At interpreter exit, while no
    profiler runs, ``finalize`` detaches every CUPTI subscriber first, so that callback never comes."""
    global _finalize_at_exit
    if _finalize_at_exit is None:
        atexit.register(_finalize_cupti_at_exit)
    _finalize_at_exit = finalize


def _finalize_cupti_at_exit() -> None:
    finalize = _finalize_at_exit
    if finalize is None:
        return
    try:
        torch = sys.modules.get("torch")
        if torch is not None and torch._C._autograd._profiler_enabled():
            return  # a profiler still records: never tear CUPTI down under it
        finalize()
    except Exception as e:  # at exit: say it, never raise
        log.warning("gpufl: CUPTI finalize at exit failed: %r", e)


def install_torch_profiler_hook(engine: SteppingAside) -> None:
    """Make ``engine`` step aside while torch.profiler records CUDA activity (one engine per process)."""
    global _engine
    _engine = engine
    prof_mod = sys.modules.get("torch.autograd.profiler")
    if prof_mod is None:
        if not any(isinstance(f, _TorchProfilerFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _TorchProfilerFinder())
        return
    _hook_profiler_module(prof_mod)


def uninstall(engine: SteppingAside) -> None:
    """The engine stopped: a later profiler has nobody to ask to step aside."""
    global _engine
    if _engine is engine:
        _engine = None


class _TorchProfilerFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of ``torch.autograd.profiler`` so the module is hooked right after it executes."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "torch.autograd.profiler":
            return None
        sys.meta_path.remove(self)  # one shot; and the normal finders find the real spec
        try:
            spec = importlib.util.find_spec(name)
        except Exception:
            return None
        loader = spec.loader if spec is not None else None
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_and_hook(module: Any) -> None:
            exec_module(module)
            try:
                _hook_profiler_module(module)
            except Exception as e:
                log.warning("gpufl: could not hook torch.profiler: %r", e)

        setattr(loader, "exec_module", exec_and_hook)  # noqa: B010
        return spec


def _hook_profiler_module(prof_mod: Any) -> None:
    if getattr(prof_mod, "_gpufl_hooked", False):
        return
    prepare = getattr(prof_mod, "_prepare_profiler", None)
    disable = getattr(prof_mod, "_disable_profiler", None)
    if prepare is None or disable is None:
        return

    def _prepare_profiler(config: Any, activities: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            if any("CUDA" in str(a) for a in activities or ()) and _engine is not None:
                _engine.pause("torch.profiler")
        except Exception as e:  # never break the user's profiler
            log.warning("gpufl: could not step aside for torch.profiler: %r", e)
        return prepare(config, activities, *args, **kwargs)

    def _disable_profiler(*args: Any, **kwargs: Any) -> Any:
        result = disable(*args, **kwargs)
        try:
            if _engine is not None:
                _engine.resume()
        except Exception as e:
            log.warning("gpufl: could not resume after torch.profiler: %r", e)
        return result

    setattr(prof_mod, "_prepare_profiler", _prepare_profiler)  # noqa: B010
    setattr(prof_mod, "_disable_profiler", _disable_profiler)  # noqa: B010
    setattr(prof_mod, "_gpufl_hooked", True)  # noqa: B010

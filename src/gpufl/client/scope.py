"""``gpufl.scope``: named, nested phases of a program (per thread and per asyncio task).

The open scopes live in a ContextVar, so threads each have their own stack and asyncio tasks inherit a copy
of their creator's. Each entry gets a session-wide instance id; the tracing engine reads the innermost one in
its launch callback (``current``), so GPU work launched inside carries it (``scope_inst``) and GPU time sums
per scope.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from gpufl.contract import events

F = TypeVar("F", bound=Callable[..., Any])

# (inst, path) of every open scope, innermost last.
_open: contextvars.ContextVar[tuple[tuple[int, str], ...]] = contextvars.ContextVar(
    "gpufl_scopes", default=()
)
_instances = itertools.count(1)
# Every open scope of the process, in entry order. GPU work launched by a thread that opened no scope
# (PyTorch runs backward on its autograd engine's threads while the caller waits inside
# ``scope("backward")``) is attributed to the most recently entered scope still open anywhere.
_open_anywhere: list[tuple[int, str]] = []


def current() -> tuple[int, str] | None:
    """(instance id, path) of the innermost scope open on this thread/task, else the most recently
    entered scope still open in the process, else None."""
    stack = _open.get()
    if stack:
        return stack[-1]
    try:
        return _open_anywhere[-1]
    except IndexError:
        return None


class scope:
    """Mark a phase: ``with gpufl.scope("forward"):``, ``@gpufl.scope("step")``, or ``async with``."""

    __slots__ = ("_inst", "_session", "_step", "_token", "capture", "deep", "name", "tag")

    def __init__(
        self, name: str, tag: str | None = None, *, capture: bool = False, deep: bool = False
    ) -> None:
        """``capture=True``: trace kernels while the scope is open, in a session whose capture mode is not
        ``continuous`` (a capture window; docs/capture-modes.md). ``deep=True``: the deep engines (``sass``,
        ``pc_sampling``, when the session runs them) cover the scope; its exit waits for the GPU's work
        (docs/deep-engines.md)."""
        if not name or "/" in name:
            raise ValueError("scope name must be non-empty and contain no '/'")
        self.name = name
        self.tag = tag
        self.capture = capture
        self.deep = deep
        self._step = False
        self._token: contextvars.Token[tuple[tuple[int, str], ...]] | None = None
        self._inst = 0
        self._session: Any = None

    def __enter__(self) -> scope:
        from gpufl.client.session import active_session

        session = active_session()
        stack = _open.get()
        parent = stack[-1] if stack else None
        path = f"{parent[1]}/{self.name}" if parent else self.name
        inst = next(_instances)
        self._inst = inst
        entry = (inst, path)
        self._token = _open.set((*stack, entry))
        _open_anywhere.append(entry)
        self._session = session
        if session is not None:
            w = session.writers["scope"]
            w.emit(
                events.ScopeBegin(
                    session_id=session.session_id,
                    stream="scope",
                    inst=inst,
                    path_id=w.intern_string("scope", path),
                    parent_inst=parent[0] if parent else None,
                    depth=len(stack),
                    ts_ns=time.time_ns(),
                    thread_id=threading.get_native_id(),
                    tag=self.tag,
                )
            )
            if not stack and self.name == events.STEP_SCOPE:  # a step (gpufl.step()): capture counts them
                self._step = True
                session.step_begin()
            if self.capture and session.capture is not None:
                session.capture.request("scope", scope_inst=inst, scope=path)
            session.scope_enter(inst)
            if self.deep:
                session.deep_begin(inst)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        inst = self._inst
        for i in range(len(_open_anywhere) - 1, -1, -1):
            if _open_anywhere[i][0] == inst:
                del _open_anywhere[i]
                break
        session = self._session
        if session is not None:
            if self._step:
                self._step = False
                session.step_end()
            if self.deep:
                session.deep_end(self._inst)
            session.scope_exit(self._inst)
            session.writers["scope"].emit(
                events.ScopeEnd(
                    session_id=session.session_id,
                    stream="scope",
                    inst=self._inst,
                    ts_ns=time.time_ns(),
                    error=exc_type.__name__ if exc_type is not None else None,
                )
            )
        if self._token is not None:
            try:
                _open.reset(self._token)
            except ValueError:  # exited in another context than entered (unusual async use)
                _open.set(tuple(s for s in _open.get() if s[0] != self._inst))
        self._token = None
        self._session = None

    async def __aenter__(self) -> scope:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        """Decorator form: a fresh scope per call (sync or async functions)."""
        name, tag, cap, deep = self.name, self.tag, self.capture, self.deep
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                async with scope(name, tag, capture=cap, deep=deep):
                    return await fn(*args, **kwargs)

            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with scope(name, tag, capture=cap, deep=deep):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def step(tag: str | None = None) -> scope:
    """One step of the program — a training iteration, a served batch: ``with gpufl.step():`` (or
    ``@gpufl.step()``) around the whole step, outside every other scope. It is a top-level scope named
    ``step`` (``events.STEP_SCOPE``): ``gpufl diff`` and ``GET /diff`` then compare two runs per step, so runs
    of different length compare, and the Scopes tab shows each step's duration."""
    return scope(events.STEP_SCOPE, tag)

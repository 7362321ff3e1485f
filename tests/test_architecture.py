"""The tree keeps its shape: no module-level import cycle, the client imports nothing from agent or backend, the
contract imports nothing from the parts that derive from it, the insight rules import nothing but the contract, and no hand-written source file grows past 700 lines.

Module-level imports only: an import inside a function is a deliberate late binding (optional dependencies,
start-up cost) and cannot form an import-time cycle. ``if TYPE_CHECKING:`` blocks are skipped for the same
reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MAX_LINES = 700
GENERATED_MARK = "generated"  # a generated file says so in its first lines, and says from what


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "gpufl").rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules this one imports when it is imported (its body, not its functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(stmts: list[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                # `from pkg import mod` imports pkg.mod when mod is a module
                found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _top_level_imports(name, path, known) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_checker_sees_a_cycle_and_an_import_inside_a_function_is_not_one(tmp_path: Path) -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    mod = tmp_path / "m.py"
    mod.write_text(
        "import x\nif TYPE_CHECKING:\n    import y\ndef f():\n    import z\ntry:\n    import w\nexcept ImportError:\n    pass\n"
    )
    tree_known = {"x", "y", "z", "w"}
    # parse as if it lived at SRC/m.py
    imports = _top_level_imports("m", mod, tree_known)
    assert imports == {"x", "w"}


def test_no_module_level_import_cycle() -> None:
    graph = _graph()
    assert len(graph) > 50, "the walk found too few modules to mean anything"
    assert _cycles(graph) == []


@pytest.mark.parametrize(
    ("part", "forbidden"),
    [
        ("gpufl.client", ("gpufl.agent", "gpufl.backend")),
        ("gpufl.contract", ("gpufl.client", "gpufl.agent", "gpufl.backend", "gpufl.export")),
        ("gpufl.export", ("gpufl.client", "gpufl.agent", "gpufl.backend")),
        # The insight rules (#27) are shared by the backend's API and the client's ``gpufl summary``: they may
        # import the contract only, so that both parts can import them without importing each other.
        ("gpufl.insights", ("gpufl.client", "gpufl.agent", "gpufl.backend", "gpufl.export")),
        # The diff (#26) is shared by the backend's API and the ``gpufl diff`` command: it reads log folders
        # through the export's source, and imports neither the client nor a server part.
        ("gpufl.diff", ("gpufl.client", "gpufl.agent", "gpufl.backend")),
        # The raw-log archive (#23) is written by the agent and read by the backend and ``gpufl summary s3://``.
        ("gpufl.archive", ("gpufl.client", "gpufl.agent", "gpufl.backend")),
        ("gpufl.agent", ("gpufl.client", "gpufl.backend")),
        ("gpufl.backend", ("gpufl.client", "gpufl.agent")),
    ],
)
def test_each_part_imports_only_what_it_may(part: str, forbidden: tuple[str, ...]) -> None:
    """Any import, even inside a function: the client must install and run without the server extras."""
    mods = _modules()
    bad = []
    for name, path in mods.items():
        if name != part and not name.startswith(part + "."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module]
            bad += [f"{name} imports {t}" for t in targets if t.startswith(forbidden)]
    assert bad == []


def _source_files() -> list[Path]:
    files = [p for p in (SRC / "gpufl").rglob("*") if p.suffix in {".py", ".c", ".h"}]
    front = ROOT / "frontend" / "src"
    files += [p for p in front.rglob("*") if p.suffix in {".ts", ".tsx"} and "node_modules" not in p.parts]
    return sorted(files)


def _is_generated(path: Path) -> bool:
    head = "\n".join(path.read_text(errors="replace").splitlines()[:5]).lower()
    return GENERATED_MARK in head and ("do not edit" in head or "by hand" in head)


def test_no_hand_written_source_file_over_700_lines() -> None:
    files = _source_files()
    assert any(p.suffix == ".c" for p in files) and any(p.suffix == ".tsx" for p in files)
    long = {
        str(p.relative_to(ROOT)): n
        for p in files
        if (n := len(p.read_text(errors="replace").splitlines())) > MAX_LINES and not _is_generated(p)
    }
    assert long == {}


def test_the_contracts_old_import_path_is_the_same_module() -> None:
    """Code written against ``gpufl.events`` (before the contract moved) reads logs unchanged."""
    import gpufl.events as old
    from gpufl.contract import events

    assert old is events

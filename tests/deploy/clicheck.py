"""Check a command line against the real program: every ``gpufl*`` subcommand and ``--flag`` must be one the
installed program accepts, asked through its own ``--help`` (no hand-kept list of flags).

``problems(argv)`` returns what is wrong with one command line (empty when it is fine). Subcommands are
found by asking the program: ``gpufl replay --help`` prints ``usage: gpufl replay ...``, so ``replay`` is a
subcommand, while ``gpufl replay examples/captures/x --help`` still prints ``usage: gpufl replay``, so the
capture folder is an argument. A program started by ``gpufl run -- python script.py ...`` is checked too:
the script must exist and its flags must be declared with ``add_argument`` in it.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@functools.cache
def console_scripts() -> frozenset[str]:
    """The programs the package installs ([project.scripts] of pyproject.toml)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return frozenset(data["project"]["scripts"])


@functools.cache
def extras() -> frozenset[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return frozenset(data["project"]["optional-dependencies"])


def _exe(prog: str) -> str:
    local = BIN / prog
    return str(local) if local.exists() else prog


@dataclass(frozen=True)
class Help:
    usage_prog: tuple[str, ...]
    """The program and subcommands the usage line names (``gpufl-backend keys create``)."""
    options: dict[str, bool] = field(default_factory=dict)
    """Every option string → whether it takes a value."""
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    positionals: tuple[str, ...] = ()
    """Names of the positional arguments (``{a,b}`` for a subcommand choice)."""


_OPT_LINE = re.compile(r"^\s{2}(-[^\s].*?)(?:\s{2,}|$)")
_OPT = re.compile(r"(--?[A-Za-z0-9][A-Za-z0-9_-]*)(?:[ =](\{[^}]*\}|[A-Z][A-Z0-9_]*|[a-z_]+))?")


def parse_help(text: str) -> Help:
    """Read an argparse (or argparse-like) --help text."""
    usage = re.search(r"usage:\s*(.*)", text, re.IGNORECASE)
    words: list[str] = []
    for w in (usage.group(1) if usage else "").split():
        if w.startswith(("[", "-", "{", "<")) or w.isupper() or w == "...":
            break
        words.append(w)
    options: dict[str, bool] = {}
    choices: dict[str, tuple[str, ...]] = {}
    positionals: list[str] = []
    section = ""
    for line in text.splitlines():
        if line and not line.startswith(" "):
            section = line.strip().rstrip(":").lower()
            continue
        if section.startswith("positional"):
            m = re.match(r"^\s{2}(\S+)", line)
            if m:
                positionals.append(m.group(1))
            continue
        m = _OPT_LINE.match(line)
        if not m:
            continue
        for part in m.group(1).split(", "):
            om = _OPT.match(part.strip())
            if not om:
                continue
            name, arg = om.group(1), om.group(2)
            options[name] = arg is not None
            if arg and arg.startswith("{"):
                choices[name] = tuple(arg.strip("{}").split(","))
    return Help(tuple(words), options, choices, tuple(positionals))


@functools.cache
def program_help(argv: tuple[str, ...]) -> tuple[int, str]:
    """``argv --help`` of a real program: (exit code, stdout + stderr)."""
    cmd = [_exe(argv[0]), *argv[1:], "--help"]
    if argv[0] == "bash":
        cmd = ["bash", str(ROOT / argv[1]), *argv[2:], "--help"]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    return proc.returncode, proc.stdout + proc.stderr


def script_flags(path: Path) -> set[str]:
    """Option strings a Python script declares with ``add_argument`` (itself or a sibling module it imports,
    like the workloads' shared ``harness.py``)."""
    flags: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and (path.parent / f"{node.module}.py").is_file():
            flags |= script_flags(path.parent / f"{node.module}.py")
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            for a in node.args:
                if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("-"):
                    flags.add(a.value)
    return flags | {"-h", "--help"}


def _check_script(argv: list[str], where: str) -> list[str]:
    """``python examples/x.py --flag ...`` (relative to the repository, where the images put it)."""
    if len(argv) < 2 or not argv[1].endswith(".py"):
        return []
    script = ROOT / argv[1]
    if not script.is_file():
        return [f"{where}: {argv[1]} does not exist in the repository"]
    known = script_flags(script)
    return [
        f"{where}: {argv[1]} has no option {tok.split('=')[0]}"
        for tok in argv[2:]
        if tok.startswith("-") and tok.split("=")[0] not in known
    ]


def problems(argv: list[str], where: str = "") -> list[str]:
    """What is wrong with running ``argv`` (a gpufl program, or ``bash scripts/*.sh``)."""
    where = where or shlex.join(argv)
    prog, args = argv[0], argv[1:]
    if prog == "bash" and args and args[0].startswith("scripts/"):
        if not (ROOT / args[0]).is_file():
            return [f"{where}: {args[0]} does not exist"]
        if "--help)" not in (ROOT / args[0]).read_text():
            # Asking a script without --help for help would run it.
            return [f"{where}: {args[0]} has no --help to check its options against"]
        prog_path: tuple[str, ...] = ("bash", args[0])
        args = args[1:]
        rc, text = program_help(prog_path)
        if rc != 0:
            return [f"{where}: `{args[0]} --help` failed"]
        out = _check_args(parse_help(text), args, where, prog_path)
        # install.sh's extras must be extras of the package.
        for i, tok in enumerate(args):
            value = tok.split("=", 1)[1] if tok.startswith("--extras=") else None
            if tok == "--extras" and i + 1 < len(args):
                value = args[i + 1]
            for name in (value or "").split(","):
                if name and name not in extras():
                    out.append(f"{where}: pyproject.toml has no extra {name!r}")
        return out
    if prog not in console_scripts():
        return [f"{where}: {prog} is not a program of this package ({', '.join(sorted(console_scripts()))})"]
    path: tuple[str, ...] = (prog,)
    i = 0
    # The longest run of leading words the program itself names as subcommands.
    while i < len(args) and not args[i].startswith("-"):
        rc, text = program_help((*path, args[i]))
        if rc == 0 and parse_help(text).usage_prog == (*path, args[i]):
            path = (*path, args[i])
            i += 1
        else:
            break
    rc, text = program_help(path)
    if rc != 0:
        return [f"{where}: `{shlex.join(path)} --help` exited {rc}"]
    return _check_args(parse_help(text), args[i:], where, path)


def _check_args(h: Help, args: list[str], where: str, path: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    name = " ".join(path)
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            if "command" not in h.positionals:
                out.append(f"{where}: {name} takes no command after --")
            return out + _check_script(args[i + 1 :], where)
        if tok.startswith("-") and tok != "-":
            flag, eq, value = tok.partition("=")
            if flag not in h.options:
                out.append(f"{where}: {name} has no option {flag}")
            elif h.options[flag] and not eq:
                if i + 1 >= len(args):
                    out.append(f"{where}: {flag} needs a value")
                else:
                    value = args[i + 1]
                    i += 1
            elif not h.options[flag] and eq:
                out.append(f"{where}: {flag} takes no value")
            if flag in h.choices and value not in h.choices[flag]:
                out.append(f"{where}: {flag} {value!r} is not one of {', '.join(h.choices[flag])}")
        else:
            if not h.positionals:
                out.append(f"{where}: {name} takes no argument {tok!r}")
            elif h.positionals[0].startswith("{") and tok not in h.positionals[0].strip("{}").split(","):
                out.append(f"{where}: {name} has no subcommand {tok!r}")
            elif tok.startswith("examples/") and not (ROOT / tok).exists():
                out.append(f"{where}: {tok} does not exist in the repository")
            elif "command" in h.positionals:
                # argparse.REMAINDER: everything from here is the profiled program.
                return out + _check_script(args[i:], where)
        i += 1
    return out


def shell_commands(script: str) -> list[list[str]]:
    """Simple commands of a shell snippet (split at ;, &&, ||, |, newlines; a leading ``exec`` dropped)."""
    cmds: list[list[str]] = [[]]
    for line in script.replace("\\\n", " ").splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lex.whitespace_split = True
        lex.commenters = "#"
        for tok in lex:
            if set(tok) <= set(";&|"):
                cmds.append([])
            else:
                cmds[-1].append(tok)
        cmds.append([])
    out = []
    for cmd in cmds:
        while cmd and (cmd[0] in ("exec", "time") or re.match(r"^[A-Z_][A-Z0-9_]*=", cmd[0])):
            cmd = cmd[1:]
        if cmd:
            out.append(cmd)
    return out


def container_commands(argv: list[str]) -> list[list[str]]:
    """The commands an exec-form command runs (``sh -c '...'`` is split into its simple commands)."""
    if len(argv) >= 3 and argv[0] in ("sh", "bash", "/bin/sh", "/bin/bash") and argv[1] == "-c":
        return shell_commands(argv[2])
    return [argv]


def ours(argv: list[str]) -> bool:
    """A command this project provides: a gpufl program or one of its scripts."""
    return bool(argv) and (
        argv[0] in console_scripts()
        or argv[0].startswith("gpufl")
        or (argv[0] == "bash" and len(argv) > 1 and argv[1].startswith("scripts/"))
    )

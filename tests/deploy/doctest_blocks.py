"""Command blocks of the Markdown documentation, for tests/deploy/test_docs.py.

Fenced blocks tagged ``bash``, ``sh``, ``shell`` or ``console`` are commands (in a ``console`` block, the
lines starting with ``$ ``; the rest is output). A block that cannot run in the test environment carries a
marker on the line right before its fence, with the reason::

    <!-- doc-test: skip (needs a GPU) -->

Every other command block is run by the test and must succeed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUN_LANGS = frozenset({"bash", "sh", "shell", "console"})
_MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<verb>[a-z-]+)\s*(?:\((?P<reason>.*)\))?\s*-->\s*$")
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    """1-based line of the opening fence."""
    lang: str
    code: str
    skip: str | None
    """The reason given by a ``doc-test: skip`` marker, else None."""

    @property
    def runnable(self) -> bool:
        return self.lang in RUN_LANGS

    def script(self) -> str:
        """What to run: the block, or for ``console`` its ``$ `` commands (a trailing ``\\`` continues)."""
        if self.lang != "console":
            return self.code
        out: list[str] = []
        cont = False
        for line in self.code.splitlines():
            if cont:
                out.append(line)
            elif line.startswith("$ "):
                out.append(line[2:])
            else:
                continue
            cont = line.rstrip().endswith("\\")
        return "\n".join(out) + "\n"


class MarkerError(ValueError):
    pass


def extract(path: Path, text: str | None = None) -> list[Block]:
    """Every fenced block of a Markdown file, with its marker. A marker that is malformed, has no reason,
    or is not right before a command block raises MarkerError (a stale marker would hide nothing)."""
    lines = (path.read_text() if text is None else text).splitlines()
    blocks: list[Block] = []
    marker: tuple[int, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if "doc-test" in line and line.lstrip().startswith("<!--"):
            m = _MARKER.match(line)
            if not m or m.group("verb") != "skip" or not (m.group("reason") or "").strip():
                raise MarkerError(
                    f"{path}:{i + 1}: expected <!-- doc-test: skip (reason) -->, got {line.strip()}"
                )
            marker = (i + 1, m.group("reason").strip())
            i += 1
            continue
        f = _FENCE.match(line)
        if f:
            fence, lang = f.group("fence"), (f.group("info").split() or [""])[0].lower()
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence):
                body.append(
                    lines[j][len(f.group("indent")) :] if lines[j].startswith(f.group("indent")) else lines[j]
                )
                j += 1
            skip = None
            if marker is not None:
                if marker[0] != i or lang not in RUN_LANGS:
                    raise MarkerError(
                        f"{path}:{marker[0]}: a doc-test marker must be the line right before a "
                        "bash/sh/shell/console block"
                    )
                skip = marker[1]
                marker = None
            blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n", skip))
            i = j + 1
            continue
        if marker is not None and line.strip():
            raise MarkerError(
                f"{path}:{marker[0]}: a doc-test marker must be the line right before a "
                "bash/sh/shell/console block"
            )
        i += 1
    if marker is not None:
        raise MarkerError(f"{path}:{marker[0]}: a doc-test marker at the end of the file marks nothing")
    return blocks

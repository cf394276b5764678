"""The runnable examples of README.md and docs/, and how their shown output is compared.

Two kinds of fenced block run (docs/development.md, "Examples in the docs"):

* ```` ```console ````: lines starting with `$ ` are shell commands (a line ending in `\\`
  continues), the lines after each one are its expected output;
* ```` ```sql ````: a query for psql, followed directly by a ```` ```text ```` block with psql's
  answer.

In expected output `...` alone on a line stands for any number of lines, and `...` inside a line
for any text: what changes from day to day (timestamps, today's date) is written that way. Other
blocks (```` ```sh ````, ```` ```toml ````, …) are illustrations that need what the demo does not
have (NSP, a certificate, a long benchmark) and are not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    path: str  # relative to the repository
    line: int  # of the opening fence
    kind: str  # "console" or "sql"
    command: str  # shell command, or SQL text
    expected: str

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _console(path: str, line: int, body: str) -> list[Example]:
    found: list[Example] = []
    lines = body.splitlines()
    if lines and not lines[0].startswith("$ "):
        raise ValueError(f"{path}:{line}: a console block starts with a `$ ` command")
    i = 0
    while i < len(lines):
        first = i
        command = [lines[i][2:]]
        while command[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        i += 1
        output: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        found.append(
            Example(path, line + 1 + first, "console", "\n".join(command), "\n".join(output))
        )
    return found


def extract(page: Path, name: str | None = None) -> list[Example]:
    """Every runnable example of one page, in order (`name`: how to call the page; default
    its path in the repository)."""
    text = page.read_text(encoding="utf-8")
    path = name or str(page.relative_to(ROOT))
    found: list[Example] = []
    blocks = [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1, m)
        for m in FENCE.finditer(text)
    ]
    for n, (lang, body, line, match) in enumerate(blocks):
        if lang == "console":
            found += _console(path, line, body)
        elif lang == "sql":
            after = blocks[n + 1] if n + 1 < len(blocks) else None
            between = text[match.end() : after[3].start()] if after else ""
            if after is None or after[0] != "text" or between.strip():
                raise ValueError(f"{path}:{line}: an sql block is followed by a text block")
            found.append(Example(path, line, "sql", body, after[1].rstrip("\n")))
    return found


def all_examples() -> list[Example]:
    return [e for page in pages() for e in extract(page)]


def _pattern(expected: str) -> re.Pattern[str]:
    parts = []
    for line in expected.rstrip("\n").splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            pieces = (re.escape(p) for p in line.rstrip().split("..."))
            parts.append("[^\n]*".join(pieces) + r"[ \t]*\n")
    return re.compile("".join(parts))


def matches(expected: str, actual: str) -> bool:
    """Whether `actual` is what `expected` shows (`...` = anything, trailing blanks ignored)."""
    lines = [line.rstrip() for line in actual.rstrip("\n").splitlines()]
    text = "\n".join(lines) + "\n" if lines else ""
    if not expected.strip():
        return True  # a command shown without output only has to succeed
    return _pattern(expected).fullmatch(text) is not None

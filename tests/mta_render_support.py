"""Helpers for the MTA renderer tests: a PowerMTA config parser checked against the directive list."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

DIRECTIVES_TOML = Path(__file__).resolve().parent.parent / "models" / "mta_render" / "powermta_directives.toml"


@dataclass(frozen=True)
class Line:
    file: str
    number: int
    scope: str          # innermost enclosing tag, "global" at top level
    kind: str           # "open", "close", "directive"
    name: str
    value: str


def load_grammar() -> dict[str, dict[str, dict[str, object]]]:
    return tomllib.loads(DIRECTIVES_TOML.read_text())


_OPEN = re.compile(r"^<([a-z-]+)(?: (.+))?>$")
_CLOSE = re.compile(r"^</([a-z-]+)>$")
_DIRECTIVE = re.compile(r"^([a-z][a-z-]*) (.+)$")


def parse_pmta(files: dict[str, str]) -> list[Line]:
    """Parse rendered PowerMTA files (comments stripped as PowerMTA does: from `#` to end of line) and
    check each line against the directive list; AssertionError names the file and line."""
    grammar = load_grammar()
    out: list[Line] = []
    for name, text in sorted(files.items()):
        stack = ["global"]
        for n, raw in enumerate(text.split("\n"), 1):
            line = raw.split("#", 1)[0].strip()
            where = f"{name}:{n}: {raw!r}"
            if not line:
                continue
            if m := _CLOSE.match(line):
                assert stack[-1] == m.group(1), f"{where}: closes {m.group(1)} inside {stack[-1]}"
                stack.pop()
                out.append(Line(name, n, stack[-1], "close", m.group(1), ""))
            elif m := _OPEN.match(line):
                tag, value = m.group(1), m.group(2) or ""
                spec = grammar["tags"].get(tag)
                assert spec is not None, f"{where}: tag <{tag}> is not in the directive list"
                assert stack[-1] in spec["scopes"], f"{where}: <{tag}> not allowed in {stack[-1]}"  # type: ignore[operator]
                assert re.match(str(spec["value"]), value), f"{where}: bad value for <{tag}>"
                out.append(Line(name, n, stack[-1], "open", tag, value))
                stack.append(tag)
            elif m := _DIRECTIVE.match(line):
                directive, value = m.group(1), m.group(2)
                spec = grammar["directives"].get(directive)
                assert spec is not None, f"{where}: directive {directive} is not in the directive list"
                assert stack[-1] in spec["scopes"], f"{where}: {directive} not allowed in {stack[-1]}"  # type: ignore[operator]
                assert re.match(str(spec["value"]), value), f"{where}: bad value {value!r} for {directive}"
                out.append(Line(name, n, stack[-1], "directive", directive, value))
            else:
                raise AssertionError(f"{where}: not a directive, tag or comment")
        assert stack == ["global"], f"{name}: unclosed {stack[1:]}"
    return out

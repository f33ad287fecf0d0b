"""Every config key with its default and meaning, read from `videosspo/config_sections.py` itself (`videosspo config --list`).

A field's meaning is the comment block right above its declaration plus the comment at the end of its line:
the documentation STYLE.md asks for next to each field is the one source, nothing is repeated here.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from videosspo import config_sections
from videosspo.config import Config


@dataclasses.dataclass(frozen=True)
class Key:
    name: str  # section.field
    type: str  # int, float, one of 'a' | 'b', a list of str, ...
    default: Any
    meaning: str


def _comments(source: str) -> dict[int, tuple[str, bool]]:
    """Line number -> (comment text without '#', whether the comment is the whole line)."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            whole = not tok.line[: tok.start[1]].strip()
            out[tok.start[0]] = (tok.string.lstrip("#").strip(), whole)
    return out


def field_meanings(source: str | None = None) -> dict[str, dict[str, str]]:
    """{class name: {field: meaning}} for the dataclasses of config_sections.py (comments above + at the end of the
    line)."""
    source = source if source is not None else Path(config_sections.__file__).read_text()
    comments, out = _comments(source), {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields = out.setdefault(node.name, {})
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            above, line = [], stmt.lineno - 1
            while line in comments and comments[line][1]:
                above.insert(0, comments[line][0])
                line -= 1
            trailing = [
                comments[n][0] for n in range(stmt.lineno, stmt.end_lineno + 1) if n in comments and not comments[n][1]
            ]
            fields[stmt.target.id] = " ".join(part for part in [*above, *trailing] if part)
    return out


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return " | ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        inner = [_type_name(a) for a in args if a is not type(None)]
        return " | ".join(inner) + (" | null" if type(None) in args else "")
    if origin is tuple:
        return f"a list of {_type_name(args[0])}" if args[-1] is Ellipsis else f"a list of {len(args)} numbers"
    if origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def config_keys() -> list[Key]:
    """Every key of `Config`, in declaration order."""
    meanings, defaults, keys = field_meanings(), Config(), []
    for section in dataclasses.fields(Config):
        cls = typing.get_type_hints(Config)[section.name]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = getattr(getattr(defaults, section.name), f.name)
            keys.append(
                Key(
                    f"{section.name}.{f.name}",
                    _type_name(hints[f.name]),
                    default,
                    meanings.get(cls.__name__, {}).get(f.name, ""),
                )
            )
    return keys


def _yaml_value(value: Any) -> str:
    """The value as it would be typed after --section.key (lists and mappings in JSON, which YAML reads)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value) if not isinstance(value, str) else (value or '""')


def describe_keys(width: int = 100) -> str:
    """`videosspo config --list`: one block per key: `section.key = default  (type)` and its meaning, indented."""
    lines = []
    for key in config_keys():
        lines.append(f"{key.name} = {_yaml_value(key.default)}   ({key.type})")
        lines += textwrap.wrap(
            key.meaning, width, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False
        )
    return "\n".join(lines)

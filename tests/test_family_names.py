"""A family's knowledge lives in its adapter (models/): no code outside models/ tests or keys on a family's name.

The rule of the family registry (docs/design.md): the CLI, the library and the benchmarks ask the family
(`models.FAMILIES[name]`: its `owns`, `check_config`, `samplers`, `pixel_space`, ...) instead of comparing names.
Docstrings and comments may name families; string constants in code may not.
"""

from __future__ import annotations

import ast
from pathlib import Path

from models import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
# (file, name): the one place a family name is data, with why.
ALLOWED = {("videosspo/config_sections.py", "animatediff"): "ModelConfig.family's default"}


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of the module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def family_names_in(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every string constant in `path`'s code (not a docstring) that is a family's name."""
    tree = ast.parse(path.read_text())
    skip = docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in FAMILIES
            and id(node) not in skip]


def test_no_family_name_outside_models():
    found = []
    for folder in ("videosspo", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found += [f"{rel}:{line}: {name!r}" for line, name in family_names_in(path) if (rel, name) not in ALLOWED]
    assert found == [], "ask the family (models.FAMILIES[name]) instead of testing its name:\n" + "\n".join(found)


def test_the_check_sees_a_name_test_but_not_a_docstring(tmp_path):
    code = tmp_path / "code.py"
    code.write_text('"""The wan family."""\n\n\ndef f(m):\n    """For sd."""\n    return m.family == "wan22"  # ltx\n')
    assert family_names_in(code) == [(6, "wan22")]

"""A family's knowledge lives in its adapter (models/): no code outside models/ tests or keys on a family's name.

The rule of the family registry (docs/design.md): the CLI, the library and the benchmarks ask the family
(`models.FAMILIES[name]`: its `owns`, `check_config`, `samplers`, `pixel_space`, ...) instead of comparing names.
Docstrings and comments may name families; string constants in code may not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from models import FAMILIES, build_model, check_config
from videosspo.config import Config, ConfigError, ModelConfig, SampleConfig

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
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in FAMILIES
        and id(node) not in skip
    ]


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


def test_the_trainer_runs_the_family_rules_before_building_anything(tmp_path):
    from videosspo.trainer import Trainer

    config = Config(model=ModelConfig(family="wan", experts="high"))  # unchecked: built in Python, not loaded
    with pytest.raises(
        ConfigError,
        match=r"model\.experts='high' is not allowed: 'both' for model\.family=wan "
        r"\(only model\.family: wan22 reads it",
    ):
        Trainer(config)


def test_each_family_checks_only_what_it_owns():
    assert (
        check_config(
            Config(model=ModelConfig(family="wan22", experts="low", lora_rank=4), sample=SampleConfig(guidance_2=3.0))
        ).model.experts
        == "low"
    )
    with pytest.raises(ConfigError, match=r"sample\.guidance_2=3\.0 is not allowed: null for model\.family=ltx"):
        check_config(Config(model=ModelConfig(family="ltx"), sample=SampleConfig(guidance_2=3.0)))
    with pytest.raises(ConfigError, match=r"model\.stacked_frames=4 is not allowed: 8 for model\.family=sd"):
        check_config(Config(model=ModelConfig(family="sd", stacked_frames=4)))
    owners = {key: name for name, family in FAMILIES.items() for key in family.owns}
    assert owners["model.experts"] == "wan22" and owners["model.motion_adapter"] == "animatediff"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_medium_size_is_the_same_family_wider(family):
    """`model.size: medium` (the benchmarks' size): the family's classes, more weights, the same latents and text."""
    tiny, medium = (build_model(ModelConfig(family=family, size=size)) for size in ("tiny", "medium"))
    count = lambda m: sum(p.numel() for p in m.unet.parameters())  # noqa: E731
    assert type(medium.unet) is type(tiny.unet) and count(medium) > 10 * count(tiny)
    assert medium.latent_shape(9, 32, 32) == tiny.latent_shape(9, 32, 32) or FAMILIES[family].fixed_frames
    assert medium.text_encoder.config == tiny.text_encoder.config


def test_size_is_the_random_models_only():
    with pytest.raises(ConfigError, match=r"model\.size='medium' is not allowed: 'tiny' with model\.pretrained set"):
        ModelConfig(pretrained="some/model", size="medium")

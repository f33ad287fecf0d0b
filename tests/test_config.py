"""Config loading: YAML round trip, CLI overrides, errors that name key / value / what is allowed,
and every shipped `configs/*.yaml` loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from models import load_checked_config
from videosspo.config import (
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    load_config,
    parse_overrides,
    save_config,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


# -- round trip and defaults -------------------------------------------------------------------------


def test_defaults_load_without_a_file():
    assert load_config() == Config()
    assert load_config(None, []) == Config()


def test_yaml_round_trip(tmp_path):
    config = load_config(
        overrides={
            "model": {"family": "modelscope", "lora_rank": 8, "lora_alpha": 16.0},
            "optim": {"lr": 3e-5, "betas": [0.8, 0.95]},
            "train": {"sample_prompts": ["a", "b c"], "resume": "latest"},
            "data": {"frames": 1},
        }
    )
    save_config(config, tmp_path / "saved.yaml")
    again = load_config(tmp_path / "saved.yaml")
    assert again == config
    assert again.optim.betas == (0.8, 0.95) and again.train.sample_prompts == ("a", "b c")
    # The saved file is complete: every section and every field of each.
    import yaml

    saved = yaml.safe_load((tmp_path / "saved.yaml").read_text())
    assert set(saved) == {f.name for f in dataclasses.fields(Config)}
    assert set(saved["optim"]) == {f.name for f in dataclasses.fields(OptimConfig)}


def test_configs_are_frozen():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optim.lr = 1.0


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    config = load_checked_config(path)  # the family's rules too
    text = path.read_text()
    assert text.startswith("#"), f"{path.name} must start with a comment saying what it is"
    assert "effective batch" in text.lower(), f"{path.name} must spell out its effective batch"
    header = text.split("\n\n")[0].split("\nmodel:")[0]
    assert "videosspo" in header or "make " in header, f"{path.name} must show the command that runs it"
    if config.data.frames == 1:
        assert config.model.family == "sd"
    if config.method.name == "dpo":
        assert "paired" in config.data.path, "DPO configs point at a paired dataset"


def test_expected_configs_exist():
    names = {p.stem for p in CONFIGS}
    for stem in ("animatediff", "modelscope", "sd15", "tiny_animatediff", "tiny_modelscope", "tiny_sd"):
        for method in ("sspo", "dpo", "sft"):
            assert f"{stem}_{method}" in names


@pytest.mark.parametrize("stem", ["animatediff", "modelscope", "sd15"])
def test_real_configs_carry_paper_hyperparameters(stem):
    config = load_config(ROOT / "configs" / f"{stem}_sspo.yaml")
    assert config.model.pretrained is not None
    assert (config.replay.interval, config.replay.size, config.method.beta) == (30, 7, 2000.0)
    # issue 10's loser: UniPC 6 with CFG 7.5 from t = 999 (trailing on the leading schedules of SD 1.5 and
    # ModelScope; AnimateDiff's linspace already starts there), each batch and its losers trained 3 steps;
    # a reuse window never straddles a snapshot
    spacing = None if stem == "animatediff" else "trailing"
    assert (
        config.loser.scheduler,
        config.loser.steps,
        config.loser.guidance,
        config.loser.reuse,
        config.loser.spacing,
    ) == ("unipc", 6, 7.5, 3, spacing)
    assert config.replay.interval % config.loser.reuse == 0
    assert config.train.mixed_precision == "bf16" and config.model.gradient_checkpointing
    if stem == "sd15":
        assert (config.data.frames, config.data.height, config.data.width) == (1, 512, 512)
    else:
        assert config.model.lora_rank == 64
        assert (config.data.frames, config.data.height, config.data.width) == (16, 256, 256)
    for method in ("dpo", "sft"):
        twin = load_config(ROOT / "configs" / f"{stem}_{method}.yaml")
        assert twin.method.name == method and twin.model == config.model


# -- CLI overrides ---------------------------------------------------------------------------------


def test_parse_overrides_both_forms():
    parsed = parse_overrides(
        [
            "--optim.lr",
            "1e-5",
            "--model.family=sd",
            "--train.sample_prompts",
            "[a, b]",
            "--model.gradient_checkpointing=true",
            "--data.frames",
            "4",
        ]
    )
    # YAML 1.1 leaves `1e-5` a string here; the float field converts it when the config is built.
    assert parsed == {
        "optim": {"lr": "1e-5"},
        "model": {"family": "sd", "gradient_checkpointing": True},
        "train": {"sample_prompts": ["a", "b"]},
        "data": {"frames": 4},
    }


def test_overrides_apply_on_top_of_yaml(tmp_path):
    path = write(tmp_path, "optim:\n  lr: 2.0e-5\n  batch_size: 4\nmodel:\n  family: modelscope\n")
    config = load_config(path, ["--optim.lr", "1e-5", "--model.family=sd", "--data.height=48"])
    assert config.optim.lr == 1e-5 and isinstance(config.optim.lr, float)
    assert config.optim.batch_size == 4  # untouched YAML keys survive the merge
    assert config.model.family == "sd" and config.data.height == 48


def test_yaml11_exponent_without_dot_is_a_float(tmp_path):
    # YAML 1.1 reads `1e-5` (no dot) as a string; a float field must still take it.
    config = load_config(write(tmp_path, "optim:\n  lr: 1e-5\nmethod:\n  beta: 5e3\n"))
    assert config.optim.lr == 1e-5 and isinstance(config.optim.lr, float)
    assert config.method.beta == 5000.0
    assert load_config(overrides=["--optim.lr=3e-4"]).optim.lr == 3e-4
    assert load_config(overrides=["--model.lora_alpha", "16"]).model.lora_alpha == 16.0  # int -> float


def test_yaml11_boolean_words_are_the_choices_they_spell(tmp_path):
    # YAML 1.1 reads `no` / `off` as False: choices spelled that way must still be accepted.
    path = write(tmp_path, "train:\n  mixed_precision: no\nmethod:\n  ssr_mode: off\n")
    config = load_config(path, ["--train.mixed_precision", "bf16"])
    assert (config.train.mixed_precision, config.method.ssr_mode) == ("bf16", "off")
    assert load_config(path).train.mixed_precision == "no"
    assert load_config(overrides=["--train.mixed_precision", "no"]).train.mixed_precision == "no"
    assert load_config(overrides=["--method.ssr_mode=off"]).method.ssr_mode == "off"
    with pytest.raises(ConfigError, match=r"method\.name=True.*'sft'"):  # no word of `yes` is a method
        load_config(overrides=["--method.name", "yes"])


def test_null_clears_an_optional(tmp_path):
    path = write(tmp_path, "model:\n  pretrained: some/dir\n")
    assert load_config(path).model.pretrained == "some/dir"
    assert load_config(path, ["--model.pretrained", "null"]).model.pretrained is None


@pytest.mark.parametrize("bad", [["optim.lr", "1e-5"], ["--lr", "1e-5"], ["--optim.lr"]])
def test_malformed_overrides(bad):
    with pytest.raises(ConfigError, match=r"override|--section\.key"):
        parse_overrides(bad)


# -- errors name the key, the value and what is allowed ---------------------------------------------------


def test_unknown_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key optim\.learning_rate.*takes:.*\blr\b"):
        load_config(write(tmp_path, "optim:\n  learning_rate: 1.0e-5\n"))
    with pytest.raises(ConfigError, match=r"unknown key model\.tiny"):
        load_config(overrides=["--model.tiny=true"])


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section 'optimizer'.*optim"):
        load_config(write(tmp_path, "optimizer:\n  lr: 1.0e-5\n"))
    with pytest.raises(ConfigError, match=r"unknown section 'trainer'"):
        load_config(overrides=["--trainer.max_steps", "3"])


@pytest.mark.parametrize(
    "override, match",
    [
        (["--optim.batch_size", "two"], r"optim\.batch_size='two'.*an integer"),
        (["--optim.batch_size", "2.5"], r"optim\.batch_size=2\.5.*an integer"),
        (["--optim.lr", "fast"], r"optim\.lr='fast'.*a number"),
        (["--model.gradient_checkpointing", "1"], r"model\.gradient_checkpointing=1.*true or false"),
        (["--data.frames", "true"], r"data\.frames=True.*an integer"),
        (["--data.path", "3"], r"data\.path=3.*a string"),
        (["--train.sample_prompts", "hello"], r"train\.sample_prompts='hello'.*a list"),
    ],
)
def test_wrong_type(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=override)


def test_literal_not_in_choices():
    with pytest.raises(ConfigError, match=r"model\.family='svd'.*'animatediff', 'modelscope', 'sd'"):
        load_checked_config(overrides=["--model.family", "svd"])  # the families are the registry's
    with pytest.raises(ConfigError, match=r"method\.ssr_mode='flip'.*'sft', 'sign', 'drop', 'off'"):
        load_config(overrides=["--method.ssr_mode=flip"])
    with pytest.raises(ConfigError, match=r"loser\.scheduler='heun'.*'ddim'.*'unipc'"):
        load_config(overrides=["--loser.scheduler=heun"])


@pytest.mark.parametrize(
    "override, match",
    [
        (["--data.frames", "0"], r"data\.frames=0.*>= 1"),
        (["--optim.lr", "0"], r"optim\.lr=0\.0.*> 0"),
        (["--method.beta", "-1"], r"method\.beta=-1\.0.*> 0"),
        (["--replay.size", "0"], r"replay\.size=0.*>= 1"),
        (["--model.lora_rank", "-4"], r"model\.lora_rank=-4.*>= 0"),
        (["--model.family=sd", "--model.motion_adapter=x"], r"model\.motion_adapter='x'.*animatediff"),
        (["--loser.init=winner", "--loser.strength=0"], r"loser\.strength=0\.0.*in \(0, 1\]"),
        (["--loser.strength=0.5"], r"loser\.strength=0\.5.*only applies to loser\.init: winner"),
        (
            ["--loser.init=winner", "--loser.strength=0.5", "--loser.scheduler=euler"],
            r"loser\.scheduler='euler'.*sigma",
        ),
        (["--model.family=wan", "--model.experts=high"], r"model\.experts='high'.*only model\.family: wan22"),
        (["--model.family=wan22", "--model.lora_rank=0"], r"model\.lora_rank=0.*full fine-tuning of two 14B experts"),
        (
            ["--model.family=wan", "--sample.guidance_2=3"],
            r"sample\.guidance_2=3\.0.*null for model\.family=wan.*wan22",
        ),
        (["--model.family=wan22", "--model.lora_rank=4", "--loser.guidance_2=-1"], r"loser\.guidance_2=-1\.0.*>= 0"),
    ],
)
def test_impossible_values(override, match):
    with pytest.raises(ConfigError, match=match):
        load_checked_config(overrides=override)  # the section's rules, or the model family's (models.check_config)


def test_frames_below_one_direct():
    with pytest.raises(ConfigError, match=r"data\.frames=0"):
        DataConfig(frames=0)


def test_tuple_length():
    with pytest.raises(ConfigError, match=r"optim\.betas=\[0\.9\].*a list of 2 values"):
        load_config(overrides=["--optim.betas", "[0.9]"])
    with pytest.raises(ConfigError, match=r"optim\.betas\[1\]='x'.*a number"):
        load_config(overrides=["--optim.betas", "[0.9, x]"])


def test_resolution_must_be_a_multiple_of_8_for_a_pretrained_model():
    with pytest.raises(ConfigError, match=r"data\.height=30.*multiple of the VAE factor 8"):
        Config(model=ModelConfig(pretrained="some/model"), data=DataConfig(height=30))
    with pytest.raises(ConfigError, match=r"data\.width=36"):
        load_config(overrides=["--model.pretrained=some/model", "--data.width=36"])
    # Tiny models (pretrained null) and pixel-space models have no factor-8 VAE: no error.
    Config(data=DataConfig(height=30))
    Config(model=ModelConfig(pretrained="some/model", vae="none"), data=DataConfig(height=30))


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"config file '.*nope\.yaml' does not exist"):
        load_config(missing)


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match=r"top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match=r"optim.*a mapping"):
        load_config(write(tmp_path, "optim: 3\n"))


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_adapter_export_needs_lora():
    with pytest.raises(ConfigError, match="train.export='adapter'.*model.lora_rank > 0"):
        load_config(None, ["--train.export", "adapter"])
    assert load_config(None, ["--train.export", "adapter", "--model.lora_rank", "4"]).train.export == "adapter"

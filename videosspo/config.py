"""A whole run's configuration: the sections (`videosspo.config_sections`), loaded from YAML, validated on load.

A YAML file or a CLI override (`--optim.lr 1e-5`) may only name fields declared in the sections: an unknown key,
a wrong type or an impossible value raises `ConfigError` naming the key, the value and what is allowed. The keys
a model family owns are checked by the family when the run starts (`models.check_config`).

Derived quantity worth spelling out:
    effective (global) batch = optim.batch_size x processes x optim.grad_accum
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from videosspo.config_sections import (
    SCHEDULE_KEYS,
    DataConfig,
    LoserConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    ReplayConfig,
    SampleConfig,
    Sampler,
    TrainConfig,
    require,
)
from videosspo.errors import ConfigError

__all__ = [
    "SCHEDULE_KEYS",
    "Config",
    "ConfigError",
    "DataConfig",
    "LoserConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "ReplayConfig",
    "SampleConfig",
    "Sampler",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "parse_overrides",
    "save_config",
]


@dataclass(frozen=True)
class Config:
    """A whole run. YAML sections and CLI prefixes are the field names below."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    loser: LoserConfig = field(default_factory=LoserConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        require(
            self.train.export == "merged" or self.model.lora_rank > 0,
            "train.export",
            self.train.export,
            "'adapter' needs LoRA training (model.lora_rank > 0); use 'merged'",
        )
        if self.model.vae == "none" or self.model.pretrained is None:
            return  # the VAE factor of a pretrained model is checked when the model loads
        for key in ("height", "width"):
            require(
                getattr(self.data, key) % 8 == 0,
                f"data.{key}",
                getattr(self.data, key),
                "a multiple of the VAE factor 8",
            )
        for f, h, w in self.data.buckets if isinstance(self.data.buckets, tuple) else ():
            require(h % 8 == 0 and w % 8 == 0, "data.buckets", [f, h, w], "sides multiples of the VAE factor 8")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Loading: YAML + overrides -> nested dict -> typed, validated dataclasses.


# The spellings YAML 1.1 turns into booleans, per value, for choices that are words (`mixed_precision: no`).
YAML_BOOL_WORDS = {False: ("no", "off", "false", "n"), True: ("yes", "on", "true", "y")}


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert a YAML/CLI value to the declared type, or raise ConfigError naming the key."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads the words `no`, `off`, `yes`, `on` as booleans
            value = next((word for word in YAML_BOOL_WORDS[value] if word in args), value)
        require(value in args, key, value, f"one of {', '.join(map(repr, args))}")
        return value
    if origin is dict:
        require(isinstance(value, dict), key, value, "a mapping of keys to values")
        return {k: _coerce(f"{key}.{k}", v, args[1]) for k, v in value.items()}
    if tp is Any:
        return value
    if origin is tuple:
        require(isinstance(value, (list, tuple)), key, value, "a list")
        items = list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(items))
        require(len(items) == len(args), key, value, f"a list of {len(args)} values")
        return tuple(_coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(items, args, strict=True)))
    if tp is bool:
        require(isinstance(value, bool), key, value, "true or false")
        return value
    if tp is int:
        require(isinstance(value, int) and not isinstance(value, bool), key, value, "an integer")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-5` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        require(isinstance(value, (int, float)) and not isinstance(value, bool), key, value, "a number")
        return float(value)
    if tp is str:
        require(isinstance(value, str), key, value, "a string")
        return value
    raise TypeError(f"unsupported config type {tp} for {key}")


def _build(cls, data: dict, prefix: str):
    require(isinstance(data, dict), prefix, data, "a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key {prefix}.{key}; {prefix} takes: {', '.join(sorted(known))}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        tp = hints[f.name]
        key = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, data[f.name] or {}, key)
        else:
            kwargs[f.name] = _coerce(key, data[f.name], tp)
    return cls(**kwargs)


def config_from_dict(data: dict) -> Config:
    """Build a validated `Config`; sections absent from `data` take their defaults."""
    hints = typing.get_type_hints(Config)
    for key in data:
        if key not in hints:
            raise ConfigError(f"unknown section {key!r}; sections: {', '.join(hints)}")
    defaults = Config()
    sections = {}
    for name, tp in hints.items():
        given = data.get(name)
        sections[name] = getattr(defaults, name) if given is None else _build(tp, given, name)
    return Config(**sections)


def parse_overrides(items: list[str]) -> dict:
    """`["--optim.lr", "1e-5", "--model.tiny=true"]` -> {"optim": {"lr": 1e-5}, ...}.

    Values are parsed as YAML scalars/lists, so `1e-5`, `true`, `[a, b]` mean what they look like.
    """
    out: dict = {}
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or "." not in item:
            raise ConfigError(f"bad override {item!r}: use --section.key VALUE, e.g. --optim.lr 1e-5")
        if "=" in item:
            key, raw = item[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(items):
                raise ConfigError(f"override {item} has no value")
            key, raw = item[2:], items[i + 1]
            i += 2
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = _parse_yaml(raw, f"--{key}")
    return out


def _parse_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load`, with a syntax error reported as `source:line:column: problem`."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: YAML syntax error: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: YAML syntax error: {e}") from None


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    """YAML file (optional) + CLI overrides -> validated Config."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        data = _parse_yaml(path.read_text(), str(path)) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    if overrides:
        extra = overrides if isinstance(overrides, dict) else parse_overrides(list(overrides))
        data = _merge(data, extra)
    if path is not None and isinstance(data.get("train") or {}, dict) and "output_dir" not in (data.get("train") or {}):
        data = _merge(data, {"train": {"output_dir": f"runs/{path.stem}"}})  # two configs never share a run folder
    return config_from_dict(data)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config (every field, defaults included) as YAML."""

    def plain(node):
        if isinstance(node, dict):
            return {k: plain(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [plain(v) for v in node]
        return node

    Path(path).write_text(yaml.safe_dump(plain(config.to_dict()), sort_keys=False))

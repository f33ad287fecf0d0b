"""README.md and docs/*.md say what runs: every shell command in their code blocks names a real subcommand, flag,
config key, file, script or make target; the `--help` lines run; relative links resolve; nothing points at issue
numbers or at files outside the repository. A doc that drifts from the code fails here, not in a reader's shell."""

from __future__ import annotations

import dataclasses
import functools
import re
import shlex
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
# Paths under these are the repository's and must exist; other paths (data/, runs/, eval/) are the user's.
REPO_PREFIXES = ("configs/", "benchmarks/", "tests/", "videosspo/", "models/", "assets/", "docs/", ".ci/")
REPO_FILES = {"README.md", "Makefile", "pyproject.toml", "environment.yml", "mkdocs.yml", ".pre-commit-config.yaml"}
OUTPUT_FLAGS = {"--out", "--output", "--work"}  # their values are written, not read
GENERIC = {
    "cd",
    "source",
    "export",
    "git",
    "ls",
    "cat",
    "mkdir",
    "rm",
    "cp",
    "mv",
    "nvidia-smi",
    "pre-commit",
    "mkdocs",
    "ruff",
    "lint-imports",
    "conda",
    "echo",
    "time",
    "/usr/bin/time",
}
DEFAULT_CONFIG = {"pretrain-base": "configs/stacked_base.yaml", "demo": "configs/stacked_sspo.yaml"}


def code_blocks(doc: Path) -> list[tuple[str, int, str]]:
    """(language, line of the opening fence, text) of each fenced block."""
    blocks, lang, start, body = [], None, 0, []
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        fence = re.match(r"\s*```\s*([\w+-]*)", line)
        if fence and lang is None:
            lang, start, body = fence.group(1).lower(), n, []
        elif fence:
            blocks.append((lang, start, "\n".join(body)))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def commands(doc: Path) -> list[tuple[str, list[str]]]:
    """(`doc:line`, argv without leading VAR=value) of every command in the doc's shell blocks."""
    out = []
    for lang, start, text in code_blocks(doc):
        if lang not in SHELL:
            continue
        lines = text.replace("\\\n", " ").splitlines()
        for n, line in enumerate(lines, start + 1):
            line = re.sub(r"^\s*\$ ", "", line)
            argv = shlex.split(line, comments=True)
            while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
                argv = argv[1:]
            if argv:
                out.append((f"{doc.relative_to(ROOT)}:{n}", argv))
    return out


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


@functools.cache
def cli_help(*sub: str) -> tuple[set[str], set[str]]:
    """(flags, subcommands) of `videosspo SUB... --help`, read from the help text itself."""
    res = _run([sys.executable, "-m", "videosspo", *sub, "--help"])
    assert res.returncode == 0, f"videosspo {' '.join(sub)} --help: {res.stderr[-500:]}"
    flags = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", res.stdout))
    choices = re.search(r"^\s*\{([\w,-]+)\}", res.stdout, re.M)
    return flags, set(choices.group(1).split(",")) if choices else set()


def config_key(flag: str) -> bool:
    """`--section.key` names a field of the run config."""
    from videosspo.config import Config

    section, _, key = flag[2:].partition(".")
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    if section not in sections:
        return False
    cls = getattr(sys.modules["videosspo.config"], str(sections[section]), None)
    return cls is None or key in {f.name for f in dataclasses.fields(cls)}


def check_paths(where: str, argv: list[str]) -> None:
    for prev, token in pairwise(["", *argv]):
        value = token.split("=", 1)[-1]
        if prev in OUTPUT_FLAGS or "{" in value or not (value.startswith(REPO_PREFIXES) or value in REPO_FILES):
            continue
        assert list(ROOT.glob(value)) if "*" in value else (ROOT / value).exists(), f"{where}: {value} does not exist"


def check_videosspo(where: str, args: list[str]) -> None:
    """`videosspo SUB [SUBSUB] ARGS`: the subcommand exists, each flag is its own or a config key; a run's config
    with its overrides loads (keys, types and values checked as `videosspo train` checks them)."""
    sub: list[str] = []
    flags, subs = cli_help()
    while args and args[0] in subs:
        sub.append(args.pop(0))
        flags, subs = cli_help(*sub)
    assert sub, f"{where}: `videosspo {' '.join(args[:1])}` is not a subcommand ({', '.join(sorted(subs))})"
    overrides, config = [], DEFAULT_CONFIG.get(sub[0])
    for i, token in enumerate(args):
        if not token.startswith("-") or re.fullmatch(r"-[\d.e-]+", token):
            continue
        name = token.split("=", 1)[0]
        if name in flags:
            if name == "--config":
                config = args[i + 1]
            continue
        assert "." in name and config_key(name), f"{where}: videosspo {' '.join(sub)} has no flag {name}"
        overrides += [token] if "=" in token else [token, args[i + 1]]
    if "--help" in args or "-h" in args:
        res = _run([sys.executable, "-m", "videosspo", *sub, *args])
        assert res.returncode == 0, f"{where}: {res.stderr[-500:]}"
    elif config is not None and sub[0] in ("train", "pretrain-base", "demo", "data"):
        from videosspo.config import load_config
        from videosspo.errors import UserError

        try:
            load_config(ROOT / config, overrides)
        except UserError as e:
            raise AssertionError(f"{where}: {e}") from None


def script_flags(script: Path) -> set[str]:
    return set(re.findall(r"[\"'](--?[A-Za-z][\w-]*)[\"']", script.read_text())) | {"-h", "--help"}


def check_python(where: str, args: list[str]) -> None:
    if args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module in ("videosspo.train", "videosspo"):
            return check_videosspo(where, (["train"] if module == "videosspo.train" else []) + rest)
        if module == "pytest":
            return check_paths(where, rest)
        assert module in ("pip", "venv"), f"{where}: python -m {module} is not a command the docs should need"
        return
    script = ROOT / args[0]
    assert script.is_file(), f"{where}: {args[0]} does not exist"
    known = script_flags(script)
    for token in args[1:]:
        name = token.split("=", 1)[0]
        if token.startswith("--") and name not in known:
            assert "." in name and config_key(name), f"{where}: {args[0]} has no flag {name}"
    if "--help" in args:
        res = _run([sys.executable, *args])
        assert res.returncode == 0, f"{where}: {res.stderr[-500:]}"


def check_accelerate(where: str, args: list[str]) -> None:
    from accelerate.commands.launch import launch_command_parser

    assert args[:1] == ["launch"], f"{where}: only `accelerate launch` is documented"
    parsed = launch_command_parser().parse_args(args[1:])
    if parsed.config_file:
        assert (ROOT / parsed.config_file).is_file(), f"{where}: {parsed.config_file} does not exist"
    rest = [parsed.training_script, *parsed.training_script_args]
    check_python(where, ["-m", *rest] if parsed.module else rest)


def check_torchrun(where: str, args: list[str]) -> None:
    from torch.distributed.run import get_args_parser

    parsed = get_args_parser().parse_args(args)
    rest = [parsed.training_script, *parsed.training_script_args]
    check_python(where, ["-m", *rest] if parsed.module else rest)


def check_make(where: str, args: list[str]) -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for target in (a for a in args if not a.startswith("-") and "=" not in a):
        assert target in targets, (
            f"{where}: make {target}: the Makefile has no such target ({', '.join(sorted(targets))})"
        )


def check_pip(where: str, args: list[str]) -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for token in args:
        for extra in re.findall(r"^\.\[([\w,-]+)\]$", token.strip("'\"")):
            unknown = set(extra.split(",")) - set(extras)
            assert not unknown, f"{where}: pyproject.toml has no extra {', '.join(sorted(unknown))}"


def check_command(where: str, argv: list[str]) -> None:
    program, args = Path(argv[0]).name, list(argv[1:])
    check_paths(where, argv)
    if program == "videosspo":
        check_videosspo(where, args)
    elif re.fullmatch(r"python[\d.]*", program):
        check_python(where, args)
    elif program == "accelerate":
        check_accelerate(where, args)
    elif program == "torchrun":
        check_torchrun(where, args)
    elif program == "make":
        check_make(where, args)
    elif program in ("pip", "pip3"):
        check_pip(where, args)
    elif program == "pytest":
        pass  # paths checked above
    else:
        assert argv[0] in GENERIC, (
            f"{where}: `{argv[0]}` is not a command these docs check; write the command in full "
            f"(no `...`), or add the program to tests/test_docs.py's GENERIC"
        )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_documented_command_names_real_things(doc):
    for where, argv in commands(doc):
        check_command(where, argv)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_python_blocks_compile(doc):
    for lang, start, text in code_blocks(doc):
        if lang == "python":
            compile(text, f"{doc.name}:{start}", "exec")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        assert file.exists(), f"{doc.name}: link to {target}: {path} does not exist"
        if anchor and file.suffix == ".md":
            headings = re.findall(r"^#+\s+(.*)$", re.sub(r"```.*?```", "", file.read_text(), flags=re.S), re.M)
            assert anchor in {slug(h) for h in headings}, f"{doc.name}: link to {target}: no such heading"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_issue_numbers_or_outside_files(doc):
    text = doc.read_text()
    for pattern in (r"\bissues?\s+#?\d+", r"\bshared/", r"SSPO_METHOD", r"development tree"):
        hits = [line for line in text.splitlines() if re.search(pattern, line, re.I)]
        assert not hits, f"{doc.name} refers to something outside the repository: {hits[0][:120]}"


def test_readme_is_one_screenful():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_checker_rejects_what_does_not_exist():
    """The walker itself: each kind of drift is caught."""
    bad = [
        ["videosspo", "trian", "--config", "configs/animatediff_sspo.yaml"],
        ["videosspo", "train", "--config", "configs/animatediff_sspo.yaml", "--optim.lrr", "1e-5"],
        ["videosspo", "train", "--config", "configs/animatediff_sspo.yaml", "--optim.lr", "fast"],
        ["videosspo", "sample", "--chekpoint", "runs/x"],
        ["videosspo", "train", "--config", "configs/no_such.yaml"],
        ["python", "benchmarks/bench_train.py", "--quik"],
        ["make", "tset"],
        ["pip", "install", "-e", ".[deepspeeed]"],
        ["...", "--config", "configs/wan22_sspo.yaml"],
    ]
    for argv in bad:
        with pytest.raises(Exception):  # noqa: B017 (an AssertionError, or the config's own error)
            check_command("test", argv)
    check_command("test", ["videosspo", "train", "--config", "configs/tiny_sd_sspo.yaml", "--optim.lr", "1e-5"])

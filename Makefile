# Two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# The CPU build of torch 2.13.0 (on disk on this kind of machine). GPU users: TORCH="torch" or use environment.yml.
TORCH   ?= torch==2.13.0
# pytest-xdist workers for `make test`; each test file runs whole on one worker (--dist loadfile), so a module's
# fixtures are built once. The suite is safe in parallel: per-worker temp folders, free ports (tests/conftest.py).
JOBS    ?= 2
STAMP   := $(VENV)/.installed

.PHONY: install demo test lint imports mutate bench eval clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first: a bare `torch` requirement would otherwise pull a multi-GB CUDA build
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install   ## align the committed synthetic-world base with SSPO: before/after adherence + GIFs (CPU, minutes)
	$(BIN)/videosspo demo
	@echo "next: . $(VENV)/bin/activate   (puts videosspo on your PATH; your own clips: docs/your-own-videos.md)"

test: install   ## the whole test suite (CPU), JOBS processes in parallel
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile

lint: install   ## ruff (pyflakes, isort, pyupgrade, bugbear: the rules in pyproject.toml; the format), then the import layers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

imports: install  ## import-linter alone: the one-way layers contract in pyproject.toml (also run by `make lint`)
	$(BIN)/lint-imports

mutate: install  ## each plausible bug in tests/mutations.py must make its tests fail (a few minutes)
	$(BIN)/python tests/mutate.py

bench: install  ## training performance benchmark, quick mode
	$(BIN)/python benchmarks/bench_train.py --quick

clean:
	rm -rf runs/demo runs/tiny_* data/synth

# Two commands do all the set-up on a fresh machine, from a fresh clone, into ./.venv:
#   make example   runs the MovieLens 100K retrieval example (TFRS basic_retrieval)
#   make test      runs ruff and the test suite
# torch is pinned to a tested version; override with `make test TORCH_VERSION=2.x.y`.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(TORCH_VERSION)
DOCS_STAMP := $(VENV)/.installed-docs
ARGS ?=

.PHONY: example test lint docs bench setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned, so that nothing pulls a multi-GB CUDA build on a CPU machine.
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

example: $(STAMP)
	$(PY) examples/movielens_retrieval.py $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest $(ARGS)

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

docs: $(DOCS_STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(PY) -m pytest benchmarks --benchmark-enable $(ARGS)

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
ANN_STAMP := $(VENV)/.installed-ann
# The approximate-index back ends (optional extras) publish Linux x86-64 wheels: the tests of
# their wrappers run where those install and skip, saying why, elsewhere.
comma := ,
ANN_EXTRAS := $(if $(filter Linux-x86_64,$(shell uname -s)-$(shell uname -m)),faiss$(comma)scann,)
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

$(ANN_STAMP): $(STAMP)
	$(if $(ANN_EXTRAS),$(PY) -m pip install --quiet -e ".[$(ANN_EXTRAS)]",true)
	touch $@

test: lint $(ANN_STAMP)
	$(PY) -m pytest $(ARGS)

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

docs: $(DOCS_STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(PY) -m pytest benchmarks --benchmark-enable $(ARGS)

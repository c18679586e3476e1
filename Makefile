# embedguard developer commands. Every target builds what it needs from a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed first, pinned: this is the CPU build. Any newer torch (which pip would pick
# on its own for sentence-transformers) pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP      := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-demo
TORCH      := $(VENV)/.installed-torch

.PHONY: test demo lint typecheck pytest venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(TORCH): $(BIN)/python
	$(BIN)/python -m pip install --quiet '$(TORCH_SPEC)'
	touch $(TORCH)

# The spec is repeated so that no other requirement can move torch off the CPU build.
$(STAMP): $(TORCH) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,local]' '$(TORCH_SPEC)'
	touch $(STAMP)

$(DEMO_STAMP): $(TORCH) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[local,langchain]' '$(TORCH_SPEC)'
	touch $(DEMO_STAMP)

venv: $(STAMP)

## make demo: the offline retrieval demo (embedded model, LangChain vector store, metrics).
demo: $(DEMO_STAMP)
	$(BIN)/embedguard demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

## make test: lint, type-check and run the whole suite.
test: lint typecheck pytest

## make bench: benchmarks against LangChain, LlamaIndex, the openai SDK and a hand-written loop;
## writes bench/RESULTS.md and bench/results.png (~50 min on 2 shared cores; `BENCH_ARGS=--quick`: ~12 min).
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,local]'
	touch $(BENCH_STAMP)

.PHONY: bench
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

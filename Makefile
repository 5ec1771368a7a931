# Both front-door commands build their own virtual environment from nothing.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -n 2 -m "not slow"

.PHONY: venv demo test test-all lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel on local disk; anything unpinned pulls a CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/vidiv demo

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: venv
	$(BIN)/python -m pytest -n 2

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/vidiv bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

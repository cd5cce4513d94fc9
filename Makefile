# `make demo` and `make test` work on a fresh machine that has only Python 3.11.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/facelab demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check lab enclave_policy tests bench
	$(BIN)/ruff format --check lab enclave_policy tests bench

bench: $(STAMP)
	$(BIN)/python bench/synth_speed.py
	$(BIN)/python -m pip install --quiet -e '.[dev,reference]'
	$(BIN)/python bench/synth_realism.py

clean:
	rm -rf $(VENV) build *.egg-info

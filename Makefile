# `make demo` and `make test` work on a fresh machine that has only Python 3.11.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean mutation

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/facelab demo

# two workers, one per core; each test file stays on one worker (its module fixtures
# are built once). Measured: 1016 passed in 498 s with, 770 s without (2 cores).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The suites marked slow (minutes each): the export gate's red-team corpus, the crash
# loop of ingest and destroy (FACELAB_CRASH_ROUNDS rounds, default 24), the special-file
# sweeps of `vault list` and `register` (the default run sweeps `audit verify`); since
# session 12 also 15 end-to-end tests of 20-60 s each (the demo, whole import and
# export flows, six export-behaviour detectors, fuzzing the import gate), each with a
# lighter test of the same control left in the default run. Run both before a release.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check lab enclave_policy tests bench
	$(BIN)/ruff format --check lab enclave_policy tests bench

# Benchmarks print tables with their own baselines. scikit-learn and pyeer are the
# scoring benchmark's comparison points: installed here, never project dependencies.
# threadpoolctl names the BLAS kernel beside the scoring figures.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,reference]' scikit-learn pyeer threadpoolctl 'setuptools<81'
	$(BIN)/python bench/synth_speed.py
	$(BIN)/python bench/synth_realism.py
	$(BIN)/python bench/vault_speed.py
	$(BIN)/python bench/audit_speed.py
	$(BIN)/python bench/import_speed.py
	$(BIN)/python bench/scoring_speed.py
	$(BIN)/python bench/scoring_speed.py --big
	$(BIN)/python bench/export_redteam.py
	$(BIN)/python bench/export_speed.py

# Mutation testing of the control modules ([tool.mutmut] in pyproject.toml): outside the
# default run. All of them take hours on 2 cores; MUTANTS='lab.vault.*' (a mutmut glob of
# mutant names) runs one module. Lists the surviving mutants at the end.
MUTANTS ?=
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet 'mutmut>=3.8'
	rm -rf mutants
	nice -n 10 $(BIN)/mutmut run --max-children 2 $(MUTANTS) >/dev/null 2>&1 || true
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) build *.egg-info

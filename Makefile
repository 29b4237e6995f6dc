# Two commands on a machine that has only Python 3.11+:
#   make run    create .venv, install partnerbot, run the bot (config: CONFIG, else
#               $PARTNERBOT_CONFIG, else ./config.toml if present, and the environment)
#   make test   create .venv with the dev tools, then ruff, mypy --strict and pytest
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Empty: the CLI's own default ($PARTNERBOT_CONFIG, else ./config.toml, which may be
# absent when the environment configures everything).
CONFIG ?=

.PHONY: run test check lint typecheck pytest bench mutate constraints clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamp files make a second `make test` skip the install when nothing changed.
$(VENV)/.runtime: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.dev: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/partnerbot $(if $(CONFIG),--config $(CONFIG)) run

test: check

check: $(VENV)/.dev
	$(BIN)/ruff check core storage bot payments partnerbot tests bench
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check core storage bot payments partnerbot tests bench

typecheck: $(VENV)/.dev
	$(BIN)/mypy

pytest: $(VENV)/.dev
	$(BIN)/pytest

bench: $(VENV)/.dev
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/flood.py

# Mutation testing of the seven core files ([tool.mutmut] in pyproject.toml), one worker
# (the machine may be shared); not part of `make test`. Ends with the kill rate per file.
# Starts over each time: mutmut keeps a mutant's old result even when the tests changed.
$(VENV)/.mutate: $(VENV)/.dev
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,mutate]'
	touch $@

mutate: $(VENV)/.mutate
	rm -rf mutants
	$(BIN)/mutmut run --max-children 1
	$(BIN)/mutmut results --all true | $(BIN)/python tools/mutation_report.py

constraints: $(VENV)/.dev $(VENV)/.mutate
	{ echo "# Exact versions installed by 'make' and the Dockerfile (pip -c constraints.txt)."; \
	  echo "# Regenerate after changing pyproject.toml: make constraints"; \
	  $(BIN)/pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install migrate init serve demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	mkdir -p var
	$(BIN)/cloudseal migrate

init: migrate
	$(BIN)/cloudseal init

run: init
	$(BIN)/cloudseal serve --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/cloudseal demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/issue.py --processes 2
	$(BIN)/python bench/ocsp.py
	$(BIN)/python bench/enrol.py
	$(BIN)/python bench/sign.py
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/register.py
	$(BIN)/python bench/tally.py
	$(BIN)/python bench/ballots.py
	$(BIN)/python bench/audit.py

clean:
	rm -rf $(VENV) var .pytest_cache

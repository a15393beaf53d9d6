# georollout: one entry point for set-up, the local environment and the tests.
# Every target installs what is missing first; a second run installs nothing.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STATE := .georollout
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup up demo test lint typecheck unit clean

setup: $(STATE)/.setup-done

# The stamp depends on the files that say what to install, so editing one
# re-runs set-up, and nothing else does.
$(STATE)/.setup-done: requirements.txt requirements-dev.txt package.json
	@mkdir -p $(STATE)
	@command -v docker-registry >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq docker-registry; }
	@command -v shellcheck >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq shellcheck; }
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@[ -x node_modules/.bin/azurite ] || npm install --no-audit --no-fund --loglevel=error
	@touch $@

up: setup
	$(PY) -m devenv up

demo: setup
	$(PY) -m devenv demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy shared function_app.py devenv

unit: setup
	$(PY) -m pytest tests/unit -q

test: setup lint typecheck
	$(PY) -m pytest -q

clean:
	rm -rf $(STATE)

# georollout: one entry point for set-up, the local environment and the tests.
# Every target installs what is missing first; a second run installs nothing.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STATE := .georollout
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup app-setup infra-tools test-tools up demo test lint typecheck unit bench clean

# Everything the tests need; `make up` and `make demo` need only the app's part.
setup: app-setup infra-tools test-tools

app-setup: $(STATE)/.setup-done

# The stamp depends on the files that say what to install, so editing one
# re-runs set-up, and nothing else does.
$(STATE)/.setup-done: requirements.txt requirements-dev.txt package.json pyproject.toml
	@mkdir -p $(STATE)
	@command -v docker-registry >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq docker-registry; }
	@command -v shellcheck >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq shellcheck; }
	@command -v jq >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq jq; }
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@[ -x node_modules/.bin/azurite ] || npm install --no-audit --no-fund --loglevel=error
	@touch $@

# The infra checks' tools live in their own venv: checkov pins versions of shared packages that
# can clash with the app's azure-* pins. pycep-parser is pinned to the version checkov 3.3.30
# requires, so the Bicep test parses with the very parser checkov scans with.
INFRA_VENV := $(STATE)/infra-venv
CHECKOV_VERSION := 3.3.30
PYCEP_VERSION := 0.5.1

infra-tools: $(INFRA_VENV)/.tools-$(CHECKOV_VERSION)-$(PYCEP_VERSION)

$(INFRA_VENV)/.tools-$(CHECKOV_VERSION)-$(PYCEP_VERSION):
	@mkdir -p $(STATE)
	@[ -x $(INFRA_VENV)/bin/python ] || python3 -m venv $(INFRA_VENV)
	@$(INFRA_VENV)/bin/python -m pip install -q --disable-pip-version-check checkov==$(CHECKOV_VERSION) pycep-parser==$(PYCEP_VERSION)
	@rm -f $(INFRA_VENV)/.tools-*
	@touch $@

# Only the tests need these: the dashboard's browser test drives Debian's chromium (Playwright,
# from requirements-dev.txt, launches it by path: no browser download), and the README's
# skopeo recipe runs in a test.
test-tools:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	@command -v skopeo >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq skopeo; }

up: app-setup
	$(PY) -m devenv up

demo: app-setup
	$(PY) -m devenv demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy shared function_app.py devenv benchmarks tests georollout_cli

unit: setup
	$(PY) -m pytest tests/unit -q

# Two workers, a test file each at a time: most tests wait on the local stand-ins, so two
# share the 2 cores well (20.5 min one at a time, about 11 with two).
test: setup lint typecheck
	$(PY) -m pytest -q -n 2 --dist loadfile

# Rates and ratios on this machine, never pass/fail: see benchmarks/.
bench: app-setup
	$(PY) -m benchmarks.bench_state_machine
	$(PY) -m benchmarks.bench_probe
	$(PY) -m benchmarks.bench_intake
	$(PY) -m benchmarks.bench_steps
	$(PY) -m benchmarks.bench_detection
	$(PY) -m benchmarks.bench_listing
	$(PY) -m benchmarks.bench_budget

clean:
	rm -rf $(STATE)

# Developer entry points. Everything runs from a virtualenv in .venv (created when missing).
#
#   make test           install the project with its test extras and run the whole test suite
#   make run            install, then create/upgrade the embedded SQLite database
#   make sample-config  regenerate etc/blockmgr/blockmgr.conf.sample

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Installed again whenever the packaging metadata changes (new dependency, entry point, ...).
INSTALLED := $(VENV)/.installed

.PHONY: run test sample-config

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --no-input --upgrade pip
	$(BIN)/python -m pip install --no-input -e '.[test]'
	touch $@

test: $(INSTALLED)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

run: $(INSTALLED)
	$(BIN)/blockmgr-manage db sync
	$(BIN)/blockmgr-manage db version

sample-config: $(INSTALLED)
	$(BIN)/oslo-config-generator --config-file etc/blockmgr/blockmgr-config-generator.conf

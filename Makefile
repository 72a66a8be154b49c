# Developer entry points. Everything runs from a virtualenv in .venv (created when missing).
#
#   make test           install the project with its test extras and run the whole test suite
#   make run            install, then create/upgrade the database (embedded SQLite by
#                       default; `make run CONFIG=/etc/blockmgr/blockmgr.conf` for another)
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

MANAGE = $(BIN)/blockmgr-manage $(if $(CONFIG),--config-file $(CONFIG))

run: $(INSTALLED)
	$(MANAGE) db sync
	$(MANAGE) db version

sample-config: $(INSTALLED)
	$(BIN)/oslo-config-generator --config-file etc/blockmgr/blockmgr-config-generator.conf

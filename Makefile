# Developer entry points. Everything runs from a virtualenv in .venv (created when missing).
#
#   make test           install the project with its test extras and run the whole test suite
#   make run            install the project and its runtime dependencies only (no test
#                       extras), then run `blockmgr serve`: REST API on 127.0.0.1:8776,
#                       scheduler and a loopback volume worker in one process, state in
#                       ~/.local/share/blockmgr (database created/upgraded at start).
#                       `make run CONFIG=/etc/blockmgr/blockmgr.conf` adds a config file,
#                       `make run SERVE_ARGS="--port 8777 --state-dir /tmp/bm"` passes options
#   make sample-config  regenerate etc/blockmgr/blockmgr.conf.sample

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Installed again whenever the packaging metadata changes (new dependency, entry point, ...):
# INSTALLED with the test extras (make test), RUNTIME_INSTALLED with the runtime
# dependencies only (make run). The first implies the second.
INSTALLED := $(VENV)/.installed
RUNTIME_INSTALLED := $(VENV)/.installed-runtime
# The [mysql] extra (mysqlclient) needs MariaDB Connector/C to build: added where its
# pkg-config file is (Debian: libmariadb-dev pkg-config). The service, the tests and the
# benchmarks then talk to MariaDB through it; without it they use PyMySQL.
comma := ,
MYSQL_EXTRA := $(shell pkg-config --exists mariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null && echo mysql)
EXTRAS := test$(if $(MYSQL_EXTRA),$(comma)$(MYSQL_EXTRA))
RUNTIME_EXTRAS := $(MYSQL_EXTRA)

.PHONY: run test sample-config

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --no-input --upgrade pip
	$(BIN)/python -m pip install --no-input -e '.[$(EXTRAS)]'
	touch $(RUNTIME_INSTALLED) $@

# A virtualenv that already has the test extras has everything `run` needs.
$(RUNTIME_INSTALLED): pyproject.toml setup.py | $(BIN)/python
	@if [ -f $(INSTALLED) ] && [ $(INSTALLED) -nt pyproject.toml ] && [ $(INSTALLED) -nt setup.py ]; then \
		touch $@; \
	else \
		$(BIN)/python -m pip install --no-input --upgrade pip && \
		$(BIN)/python -m pip install --no-input -e '.$(if $(RUNTIME_EXTRAS),[$(RUNTIME_EXTRAS)])' && \
		touch $@; \
	fi

test: $(INSTALLED)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

run: $(RUNTIME_INSTALLED)
	$(BIN)/blockmgr serve $(if $(CONFIG),--config-file $(CONFIG)) $(SERVE_ARGS)

sample-config: $(RUNTIME_INSTALLED)
	$(BIN)/python -m blockmgr.cmd.genconfig --config-file etc/blockmgr/blockmgr-config-generator.conf

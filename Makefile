# capkey — every job starts from a fresh machine: targets set up what they need.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SYSSTAMP:= $(VENV)/.system
DEVICE  ?=
BOARD   ?= rpi_pico
PORT    ?= /dev/ttyACM0
# System packages the tests and the demo use (pcscd/vpcd for PC/SC, PostgreSQL, Chromium).
PG_DSN  := postgresql://capkey:capkey@127.0.0.1:5432/capkey
APT_PKGS := pcscd vsmartcard-vpcd opensc pcsc-tools libpcsclite-dev swig postgresql chromium ser2net
# axe-core, which the browser tests load into Chromium (hil_tests/test_accessibility.py); npm is
# the machine's own when it has one (a Node.js install of its own conflicts with Debian's npm)
AXE     := hil_tests/axe/node_modules/axe-core/axe.min.js

.PHONY: demo test bench hil deploy lint mpy catalog apidoc screens venv system postgres clean

$(STAMP): pyproject.toml host/dev/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,postgres,pcsc]' -e host/dev
	touch $@

venv: $(STAMP)

# apt-get only what is missing, so a developer machine is not touched twice.
$(SYSSTAMP):
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

system: $(SYSSTAMP)

demo: system venv
	$(BIN)/capkey demo

$(AXE): hil_tests/axe/package.json hil_tests/axe/package-lock.json | system
	@command -v npm >/dev/null || { if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  echo "installing npm"; DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq npm; }
	npm ci --prefix hil_tests/axe --no-audit --no-fund --loglevel=error
	touch $@

test: system venv lint mpy postgres $(AXE)
	CAPKEY_PG_DSN="$${CAPKEY_PG_DSN:-$(PG_DSN)}" $(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The multi-node store tests need a PostgreSQL server; start the local one (needs root or sudo).
postgres: system
	@if [ "$$(id -u)" = 0 ]; then bash host/tests/start_postgres.sh; \
	else sudo -n bash host/tests/start_postgres.sh || echo "PostgreSQL not started: the postgres tests will say they skip"; fi

lint: venv
	$(BIN)/ruff check firmware boards host hil_tests conftest.py
	$(BIN)/lint-imports --config host/importlinter.ini
	$(BIN)/mypy host/capkey
	$(BIN)/python -m capkey_dev.catalog --check
	$(BIN)/python -m capkey_dev.apidoc --check
	$(BIN)/python -m capkey_dev.typecheck_boards

# The firmware's copy of the host catalogues (boards, CAP profiles, operations): firmware/catalog.py.
catalog: venv
	$(BIN)/python -m capkey_dev.catalog

# The public Python API's reference page, docs/api/capkey.html (pdoc, from the docstrings).
apidoc: venv
	$(BIN)/python -m capkey_dev.apidoc

# Every device screen a person can meet, from a fresh simulator: docs/screens/*.png and their
# table in docs/ui.md (hil_tests/test_screens.py checks them).
screens: venv
	$(BIN)/python -m capkey_dev.screens

# Cross-compile every firmware and board file for the three target architectures.
mpy: venv
	$(BIN)/python -m capkey_dev.build --check

bench: system venv postgres
	CAPKEY_PG_DSN="$${CAPKEY_PG_DSN:-$(PG_DSN)}" $(BIN)/python -m capkey_dev.bench

hil: system venv
	$(BIN)/pytest -q hil_tests $(if $(DEVICE),--device $(DEVICE))

deploy: venv
	$(BIN)/capkey deploy --board $(BOARD) --port $(PORT)

clean:
	rm -rf $(VENV) build .pytest_cache

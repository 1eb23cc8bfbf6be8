# pcscf-alg: two commands.
#   make run   - set up .venv, install, start the daemon on config/pcscf.yaml (all on 127.0.0.1)
#   make test  - set up everything the tests need (incl. SIPp from Debian's sip-tester) and run them
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CONFIG ?= config/pcscf.yaml

.PHONY: run test venv system-deps lint typecheck bench demo clean check-config

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "pcscf-alg needs Python >= 3.11"'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python venv module missing: installing python3-venv"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests drive: SIPp (sip-tester) and the openssl CLI (s_client/s_server peers).
system-deps:
	@command -v sipp >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 || { \
	  echo "installing sip-tester and openssl from Debian"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq sip-tester openssl; }
	@command -v gnutls-cli >/dev/null 2>&1 && command -v gnutls-serv >/dev/null 2>&1 || { \
	  echo "installing gnutls-bin (gnutls-cli/gnutls-serv: TLS interop peers) from Debian"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq gnutls-bin; }

run: venv
	$(BIN)/pcscf-alg run --config $(CONFIG)

check-config: venv
	$(BIN)/pcscf-alg check-config $(CONFIG)

test: venv system-deps
	$(BIN)/pytest -q -p no:cacheprovider

lint: venv
	$(BIN)/ruff check pcscf_alg tests bench
	$(BIN)/mypy

typecheck: lint

bench: venv system-deps
	$(BIN)/python -m bench.run_all

demo: venv system-deps
	$(BIN)/python -m pcscf_alg.demo

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# pcscf-alg: two commands.
#   make run   - set up .venv, install, compile the sans-IO core (pure Python if it cannot), start
#                the daemon on config/pcscf.yaml (all on 127.0.0.1)
#   make test  - set up everything the tests need (incl. SIPp from Debian's sip-tester) and run them
# The distribution's python3.11 when there is one (Debian builds it with PGO and LTO; the e2ae
# rewrite ran 1.2-1.5x faster on it than on a default pyenv build here, BENCHMARKS.md), else
# the python3.11 on PATH. `make clean && make PYTHON=... run` chooses another.
PYTHON ?= $(shell for p in /usr/bin/python3.11 "$$(command -v python3.11)" "$$(command -v python3)"; \
	do [ -x "$$p" ] && { echo "$$p"; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CONFIG ?= config/pcscf.yaml

.PHONY: run test venv accel accel-deps system-deps lint typecheck bench demo clean check-config soak

$(STAMP): pyproject.toml
	@echo "pcscf-alg: setting up $(VENV) on $(PYTHON)"
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "pcscf-alg needs Python >= 3.11"'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python venv module missing: installing python3-venv"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	@touch $(STAMP)

venv: $(STAMP)

# The sans-IO core (SIP message layer, SDP model, e2ae engine) compiled with mypyc
# (pcscf_alg/_accel: issue 4's per-call budget). It is rebuilt when its sources change and
# served only while it matches them; without a compiler the same code runs as pure Python, so a
# failed build never stops `make run` or `make test`.
accel: venv accel-deps
	@$(BIN)/python -m pcscf_alg._accel build || echo "pcscf-alg: continuing with the pure-Python core"

# gcc and the interpreter's headers, from Debian when missing (best effort, see above).
accel-deps: venv
	@$(BIN)/python -c 'import pathlib, shutil, sys, sysconfig; \
	  cc = str(sysconfig.get_config_var("CC") or "cc").split()[0]; \
	  h = pathlib.Path(sysconfig.get_paths()["include"], "Python.h"); \
	  sys.exit(0 if shutil.which(cc) and h.is_file() else 1)' || { \
	  v=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  echo "installing gcc and python$$v-dev (to compile the sans-IO core) from Debian"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq gcc python$$v-dev || true; }

# Debian packages the tests drive: SIPp (sip-tester) and the openssl CLI (s_client/s_server peers).
system-deps:
	@command -v sipp >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 || { \
	  echo "installing sip-tester and openssl from Debian"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq sip-tester openssl; }
	@command -v gnutls-cli >/dev/null 2>&1 && command -v gnutls-serv >/dev/null 2>&1 || { \
	  echo "installing gnutls-bin (gnutls-cli/gnutls-serv: TLS interop peers) from Debian"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq gnutls-bin; }
	@command -v tshark >/dev/null 2>&1 && command -v sngrep >/dev/null 2>&1 || { \
	  echo "installing tshark and sngrep (independent SIP and HEP decoders of the capture tests) from Debian"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq tshark sngrep; }
	@command -v rtpengine >/dev/null 2>&1 || { \
	  echo "installing rtpengine-daemon (the rtpengine media backend's tests, userspace) from Debian"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends rtpengine-daemon; }
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (the shared registration store's tests start their own) from Debian"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }

run: accel
	$(BIN)/pcscf-alg run --config $(CONFIG)

check-config: venv
	$(BIN)/pcscf-alg check-config $(CONFIG)

# Everything, on the core as built; then the compiled modules' own tests again on their
# pure-Python form (the fallback where no compiler is available, and what the fast-path tests
# patch).
CORE_TESTS := tests/unit/sip tests/unit/sdp tests/unit/test_e2ae_engine.py \
	tests/unit/test_e2ae_examples.py tests/unit/test_e2ae_golden.py \
	tests/unit/test_e2ae_fastpath.py tests/unit/test_accel.py tests/unit/test_e2ae_downgrade.py \
	tests/unit/test_sip_golden.py

test: accel system-deps
	$(BIN)/pytest -q -p no:cacheprovider
	PCSCF_ALG_PURE=1 $(BIN)/pytest -q -p no:cacheprovider $(CORE_TESTS)

lint: venv
	$(BIN)/ruff check pcscf_alg tests bench examples
	$(BIN)/mypy

typecheck: lint

bench: accel system-deps
	$(BIN)/python -m bench.run_all

# Adversarial soak (issue 11): legitimate e2ae calls while an attacker holds TCP connections,
# drips bytes, floods REGISTERs and sprays the gateway's ports; RELIABILITY.md. Flags:
# make soak SOAK_ARGS="--seconds 120 --rate 4" (python -m bench.soak --help).
soak: accel system-deps
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

demo: venv system-deps
	$(BIN)/python -m examples.demo

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache pcscf_alg/_compiled

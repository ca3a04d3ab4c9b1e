# sipxcc: `make test` and `make demo` on a fresh Debian 12 machine, as root.
# Other targets (deb, bench, ...) live in mk/*.mk, included at the end.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.sipxcc-installed

APT_PACKAGES := sip-tester kamailio curl wrk python3-twisted python3-lxml python3-openssl \
	python3-service-identity python3-treq python3-cryptography python3-pytest \
	python3-pytest-twisted python3-hypothesis python3-automat debhelper dh-python python3-all \
	python3-setuptools pybuild-plugin-pyproject lintian dpkg-dev devscripts systemd python3-venv \
	python3-pytest-timeout baresip-core linphone-cli chromium chromium-driver \
	python3-prometheus-client redis-server python3-redis python3-hiredis

# Debian's own python3 and pytest, with nothing of ours but the source tree on the path
# (and the switches that make a skip a failure, see tests/conftest.py).
DEBIAN_PYTHON := env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$(HOME) \
	CI=$(CI) SIPXCC_NO_SKIP=$(SIPXCC_NO_SKIP) PYTHONPATH=$(CURDIR) /usr/bin/python3
LINT_DIRS := $(wildcard sipxcc tests twisted bench)

.PHONY: all deps venv lint test test-venv test-debian demo clean

all: test

# Install the missing Debian packages only (an installed kamailio service, if any, listens on
# 5060, which no test uses).
deps:
	@missing=""; \
	for package in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$package" 2>/dev/null | grep -q ' ok installed' \
	    || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update && apt-get install -y --no-install-recommends $$missing; \
	fi

venv: $(VENV_STAMP)

$(VENV_STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -e '.[test,redis]'
	touch $@

lint: venv
	$(VENV)/bin/ruff check $(LINT_DIRS)

test-venv: venv
	$(VENV)/bin/python -c 'import pytest_randomly, pytest_timeout'
	$(VENV)/bin/python -m pytest -q tests

# Debian has no pytest-randomly: this leg runs in file order.
test-debian:
	$(DEBIAN_PYTHON) -c 'import pytest_timeout'
	$(DEBIAN_PYTHON) -m pytest -q -p no:cacheprovider tests/unit

# pytest exits non-zero (5) when it collects no test, which fails the target too.
# SIPXCC_NO_SKIP=1: a skipped test fails (tests/conftest.py). The venv leg runs the tests in
# random order (pytest-randomly prints its seed: rerun an order with --randomly-seed=N); both
# legs fail a test that hangs for 300 s, with its stack (pytest-timeout).
test: export SIPXCC_NO_SKIP := 1
test: deps venv
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory mypy
	$(MAKE) --no-print-directory test-venv
	$(MAKE) --no-print-directory test-debian

# Kamailio as the sipX proxy, baresip phones, the daemon on etc/demo.ini, and a real
# click-to-call with curl; then the daemon keeps running until Ctrl-C.
demo: deps venv
	$(VENV)/bin/python -m tests.integration.demo

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache .hypothesis .demo
	rm -f twisted/plugins/dropin.cache
	find sipxcc tests twisted -name __pycache__ -type d -prune -exec rm -rf {} +

-include mk/*.mk

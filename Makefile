# Module Proxy — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: help run test lint test-rust test-python test-node test-e2e

help:
	@echo "make run    build in release mode and start the proxy with the example backends"
	@echo "make test   install test dependencies into the repository and run every test"

run:
	$(CARGO) build --release -p modproxy
	./target/release/modproxy --home .

test: lint test-rust test-python test-node test-e2e

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-rust:
	$(CARGO) test --workspace

# The Python SDK: the proxy binary for its end-to-end test, .venv/ with maturin, the extension built into
# it with the test tools (pytest, ruff, mypy: the `test` extra), then ruff, and pytest (which also runs
# mypy --strict and stubtest, the check that _native.pyi matches the compiled module).
test-python:
	$(CARGO) build -p modproxy
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "maturin>=1.9.4,<2"
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --quiet --manifest-path sdk-python/Cargo.toml --extras test
	cd sdk-python && ../$(VENV)/bin/ruff check . ../examples/python-backend
	cd sdk-python && ../$(VENV)/bin/ruff format --check . ../examples/python-backend
	cd sdk-python && ../$(VENV)/bin/pytest

# The Node SDK: the proxy binary for its end-to-end test, the pinned npm tools, the addon, the types, the tests.
# `npm install --no-save`, not `npm ci`: the lock lacks other platforms' optional binaries of the build
# tools (@napi-rs/cli's dependencies), which `npm ci` rejects; --no-save keeps the lock as committed.
test-node:
	$(CARGO) build -p modproxy
	cd sdk-node && npm install --no-save --no-audit --no-fund
	cd sdk-node && npm run build
	cd sdk-node && npm run typecheck
	cd sdk-node && npm test

# The three example backends behind the real proxy, driven over HTTP (uses the SDKs the two targets above
# built into .venv/ and sdk-node/).
test-e2e: test-python test-node
	$(CARGO) build --workspace
	$(VENV)/bin/ruff check tests/e2e
	$(VENV)/bin/ruff format --check tests/e2e
	$(VENV)/bin/pytest -q tests/e2e

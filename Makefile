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

# Filled in by the Python SDK.
test-python:

# The Node SDK: the proxy binary for its end-to-end test, the pinned npm tools, the addon, the types, the tests.
# `npm install --no-save`, not `npm ci`: the lock lacks other platforms' optional binaries of the build
# tools (@napi-rs/cli's dependencies), which `npm ci` rejects; --no-save keeps the lock as committed.
test-node:
	$(CARGO) build -p modproxy
	cd sdk-node && npm install --no-save --no-audit --no-fund
	cd sdk-node && npm run build
	cd sdk-node && npm run typecheck
	cd sdk-node && npm test

# Filled in by the end-to-end suite.
test-e2e:

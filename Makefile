# Module Proxy — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: help run test lint test-rust test-python test-node test-e2e python-sdk node-sdk test-browser chromium dist test-dist test-scaffold go test-conform

help:
	@echo "make run    build in release mode and start the proxy with the example backends"
	@echo "make test   install test dependencies into the repository and run every test"

# The proxy on conf/default.toml with the three example backends on the ports it names; Ctrl-C stops all.
run: python-sdk node-sdk
	$(CARGO) build --release -p modproxy -p rust-backend
	@pids=(); trap 'kill $${pids[@]} 2>/dev/null; wait' EXIT; \
	./target/release/rust-backend 127.0.0.1:21230 & pids+=($$!); \
	$(PY) examples/python-backend/app.py 127.0.0.1:21231 & pids+=($$!); \
	node examples/node-backend/index.js 127.0.0.1:21232 & pids+=($$!); \
	if command -v go >/dev/null && (cd examples/go-backend && go build -o ../../target/release/go-backend .); then \
	  ./target/release/go-backend 127.0.0.1:21233 & pids+=($$!); \
	else echo "  todo-go: no Go here, so its card stays empty; \`make go\` installs it"; fi; \
	echo; \
	echo "  welcome page  http://127.0.0.1:8080/"; \
	echo "  demo          http://127.0.0.1:8080/module_proxy_inner_mod/demo.html"; \
	echo "  backends      /todo-rust/ /todo-python/ /todo-node/ /todo-go/  (POST {\"head\":{\"method\":\"list\"}})"; \
	echo "  Ctrl-C stops the proxy and the backends"; \
	echo; \
	./target/release/modproxy --home .

# The Python SDK built into .venv/ (with its test tools).
python-sdk:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "maturin>=1.9.4,<2"
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --quiet --release --manifest-path sdk-python/Cargo.toml --extras test

# The Node SDK's addon, built in sdk-node/.
# `npm install --no-save`, not `npm ci`: the lock lacks other platforms' optional binaries of the build
# tools (@napi-rs/cli's dependencies), which `npm ci` rejects; --no-save keeps the lock as committed.
node-sdk:
	cd sdk-node && npm install --no-save --no-audit --no-fund
	cd sdk-node && npm run build

test: lint test-rust test-python test-node test-e2e test-scaffold test-conform test-browser test-dist

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-rust:
	$(CARGO) test --workspace

# The Python SDK: the proxy binary for its end-to-end test, then ruff, and pytest (which also runs
# mypy --strict and stubtest, the check that _native.pyi matches the compiled module).
test-python: python-sdk
	$(CARGO) build -p modproxy
	cd sdk-python && ../$(VENV)/bin/ruff check . ../examples/python-backend
	cd sdk-python && ../$(VENV)/bin/ruff format --check . ../examples/python-backend
	cd sdk-python && ../$(VENV)/bin/pytest

# The Node SDK: the proxy binary for its end-to-end test, the addon, the types, the tests.
test-node: node-sdk
	$(CARGO) build -p modproxy
	cd sdk-node && npm run typecheck
	cd sdk-node && npm test

# The three example backends behind the real proxy, driven over HTTP (uses the SDKs the two targets above
# built into .venv/ and sdk-node/).
test-e2e: test-python test-node
	$(CARGO) build --workspace
	$(VENV)/bin/ruff check tests/e2e
	$(VENV)/bin/ruff format --check tests/e2e
	$(VENV)/bin/pytest -q tests/e2e

# `modproxy new` end to end: a backend generated in each language is built or installed, runs its own
# tests, and answers through the real proxy (proxy/tests/scaffold.rs; the Rust case also runs in
# test-rust). The Python and Node cases use the SDKs built into .venv/ and sdk-node/.
test-scaffold: python-sdk node-sdk
	$(CARGO) test -p modproxy --test scaffold -- --ignored

# `modproxy conform` against the Python, Node and Go examples (proxy/tests/conform.rs; the Rust example and
# the broken fixtures also run in test-rust).
test-conform: python-sdk node-sdk go
	$(CARGO) test -p modproxy --test conform -- --ignored

# Debian's Go (1.19 on Debian 12) for examples/go-backend; installed once, skipped when `go` is there.
go:
	command -v go >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang; }

# Debian's Chromium for the browser test; installed once (we run as root), skipped when already there.
chromium:
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The welcome page and the demo in headless Chromium (playwright-core), through the real proxy with the
# three example backends.
test-browser: chromium python-sdk node-sdk
	$(CARGO) build --workspace
	cd tests/browser && npm ci --no-audit --no-fund
	cd tests/browser && npm test

# The release layout: dist/modproxy-VERSION.tar.gz with bin/modproxy, conf/, html/, logs/, start.sh and
# stop.sh (sources in packaging/). `make dist PROFILE=debug` packs a debug build as
# modproxy-VERSION-debug.tar.gz instead, which is what the test uses, to spare a release build.
PROFILE ?= release
dist:
	$(CARGO) build --profile $(if $(filter debug,$(PROFILE)),dev,$(PROFILE)) -p modproxy
	packaging/dist.sh $${CARGO_TARGET_DIR:-target}/$(PROFILE)/modproxy dist $(if $(filter-out release,$(PROFILE)),-$(PROFILE))

# Unpacks that tarball into a temporary directory, starts it with start.sh, fetches the welcome page and
# stops it with stop.sh.
test-dist: python-sdk
	$(MAKE) --no-print-directory dist PROFILE=debug
	$(VENV)/bin/ruff check tests/dist
	$(VENV)/bin/ruff format --check tests/dist
	MODPROXY_DIST=$$(ls -t dist/modproxy-*-debug.tar.gz | head -n 1) $(VENV)/bin/pytest -q tests/dist

# Longer runs than `make test` makes: a million mixed good and bad requests checked for leaked descriptors
# and memory, and the kill-a-node-under-load scenarios, on release builds.
SOAK_REQUESTS ?= 1000000
.PHONY: soak
soak:
	MODPROXY_SOAK_REQUESTS=$(SOAK_REQUESTS) $(CARGO) test --release -p modproxy --test resources --test faults -- --nocapture

# The benchmarks (bench/README.md): installs wrk and nginx (apt-get, once), uvicorn + FastAPI into .venv/,
# builds everything in release mode, runs bench/run.py and writes bench/RESULTS.md. Quick run:
# `make bench BENCH_SECONDS=2 BENCH_ROUNDS=1 BENCH_ROWS=4,7` (run.py lists every setting).
.PHONY: bench
bench: python-sdk node-sdk
	@command -v wrk >/dev/null && command -v nginx >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light; }
	$(PY) -m pip install --quiet --disable-pip-version-check "fastapi>=0.110,<1" "uvicorn[standard]>=0.29,<1"
	$(CARGO) build --release -p modproxy
	$(CARGO) build --release --manifest-path bench/Cargo.toml --target-dir target
	timeout --kill-after=30 7200 $(PY) bench/run.py

# Fuzzing (fuzz/README.md), not part of `make test`: installs cargo-fuzz into .tools/ (once), builds the
# seed corpus from the shared vectors and fuzz/seeds/, then runs each target for FUZZ_SECONDS. cargo-fuzz
# needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them. A crash stops
# the run and leaves its input in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= frame_decoder request_path config_parse
CARGO_FUZZ := .tools/bin/cargo-fuzz
.PHONY: fuzz
fuzz:
	test -x $(CARGO_FUZZ) || $(CARGO) install cargo-fuzz --version 0.13.2 --locked --root .tools
	python3 fuzz/build_corpus.py
	for target in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO_FUZZ) run --fuzz-dir fuzz $$target fuzz/corpus/$$target -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

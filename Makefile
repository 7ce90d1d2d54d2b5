# Module Proxy — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
VENV  := .venv
PY    := $(VENV)/bin/python
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
WHEELS := $(TARGET_DIR)/wheels

.PHONY: h2-tools test-hostile
.PHONY: help run test lint test-rust test-python test-node test-e2e python-sdk node-sdk test-browser chromium dist test-dist test-scaffold tls-tools dns-tools go test-conform test-client

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

# The Python SDK's wheel (maturin, release, abi3: one wheel for CPython >= 3.9; maturin checks that it is
# manylinux-compliant), installed into .venv/ with its test tools. The tests run what a user installs,
# and `make dist` ships this same wheel, so it is built once. Same version, new build: hence the
# --force-reinstall (without dependencies; the second install adds the test extra).
python-sdk:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "maturin>=1.9.4,<2"
	rm -f $(WHEELS)/modproxy_sdk-*.whl
	$(VENV)/bin/maturin build --release --manifest-path sdk-python/Cargo.toml --out $(WHEELS)
	$(PY) -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps $(WHEELS)/modproxy_sdk-*.whl
	$(PY) -m pip install --quiet --disable-pip-version-check "$$(echo $(WHEELS)/modproxy_sdk-*.whl)[test]"

# The Node SDK's addon, built in sdk-node/.
# `npm install --no-save`, not `npm ci`: the lock lacks other platforms' optional binaries of the build
# tools (@napi-rs/cli's dependencies), which `npm ci` rejects; --no-save keeps the lock as committed.
node-sdk:
	cd sdk-node && npm install --no-save --no-audit --no-fund
	cd sdk-node && npm run build

test: lint test-rust test-python test-node test-e2e test-scaffold test-conform test-browser test-client test-hostile test-dist

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# python-sdk, node-sdk: the lanes tests serve Python and Node SDK backends from .venv and sdk-node/.
# etcd: discovery_etcd runs a real etcd and registers Rust, Python and Node backends in it.
# dns-tools: discovery_dns runs dnsmasq as the nameserver whose records change under the proxy.
test-rust: tls-tools h2-tools dns-tools python-sdk node-sdk etcd
	$(CARGO) test --workspace

# curl, openssl, testssl.sh and pebble (Debian's packages; pebble is a real ACME server, run offline),
# which proxy/tests/tls.rs drives against the HTTPS listener (in CI a missing one fails the test rather
# than skipping it); installed once, skipped when already there. testssl.sh, restricted to protocols,
# ciphers and vulnerabilities, takes about a minute.
tls-tools:
	command -v curl >/dev/null && command -v openssl >/dev/null && command -v testssl >/dev/null \
	  && command -v pebble >/dev/null && command -v pebble-challtestsrv >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl openssl testssl.sh pebble; }

# h2load (Debian's nghttp2-client), which drives the HTTP/2 leak run in proxy/tests/resources.rs;
# installed once, skipped when already there.
h2-tools:
	command -v h2load >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client; }
# dnsmasq (Debian's), which proxy/tests/discovery_dns.rs runs on a high port as the nameserver whose records
# change under the proxy; installed once, skipped when already there.
dns-tools:
	command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsmasq-base; }

# Hostile clients against the real binary (tests/hostile): Python's h2 and raw sockets flood it,
# reset streams, trickle bodies, stop reading and hold a thousand idle WebSockets, while a
# well-behaved client must get every answer and RSS stays under bounds written from the config.
test-hostile: python-sdk
	$(CARGO) build -p modproxy
	$(VENV)/bin/ruff check tests/hostile
	$(VENV)/bin/ruff format --check tests/hostile
	$(VENV)/bin/pytest -q tests/hostile

# The Python SDK: the proxy binary for its end-to-end test, then ruff, and pytest (which also runs
# mypy --strict and stubtest, the check that _native.pyi matches the compiled module).
test-python: python-sdk etcd
	$(CARGO) build -p modproxy
	cd sdk-python && ../$(VENV)/bin/ruff check . ../examples/python-backend
	cd sdk-python && ../$(VENV)/bin/ruff format --check . ../examples/python-backend
	cd sdk-python && ../$(VENV)/bin/pytest

# The Node SDK: the proxy binary for its end-to-end test, the addon, the types, the tests.
test-node: node-sdk etcd
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

# Debian's etcd (3.4, /usr/bin/etcd) for proxy/tests/discovery_etcd.rs and the SDKs' registration tests,
# which start their own on free ports with a temporary data dir, and etcdctl (etcd-client), with which the
# SDK tests read what a backend registered; installed once, skipped when already there. No protoc: the SDK
# and the proxy talk to etcd through its JSON gateway.
.PHONY: etcd
etcd:
	test -x /usr/bin/etcd || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server; }
	command -v etcdctl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-client; }

# Debian's Chromium for the browser test; installed once (we run as root), skipped when already there.
# certutil (libnss3-tools) trusts the local CA in the NSS database the HTTPS run gives Chromium.
chromium:
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	command -v certutil >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnss3-tools; }

# The welcome page and the demo in headless Chromium (playwright-core), through the real proxy with the
# four example backends (the Go one built here, beside the Rust one).
test-browser: chromium python-sdk node-sdk go
	$(CARGO) build --workspace
	cd examples/go-backend && go build -o $(abspath $(TARGET_DIR))/debug/go-backend .
	cd tests/browser && npm ci --no-audit --no-fund
	cd tests/browser && npm test

# `modproxy client` output: browser clients (TS and JS) through `tsc --noEmit --strict`, generated from the
# fixture contract and from the Rust, Python and Node example backends (started on free ports and asked for
# `_describe`): right uses compile; misuses must not. The backend-to-backend stubs (--lang py, --lang node)
# through mypy --strict, ruff and tsc --checkJs the same way; the stubs committed in the Python and Node
# examples must be byte for byte what the running peer example generates.
# python-sdk, node-sdk: the examples run on .venv and sdk-node/ (mypy and ruff come with python-sdk).
test-client: python-sdk node-sdk
	$(CARGO) build -p modproxy -p rust-backend
	cd tests/client && npm ci --no-audit --no-fund
	cd tests/client && npm test

# The release layout: dist/modproxy-VERSION.tar.gz with bin/modproxy, conf/, html/, logs/, start.sh,
# stop.sh, modproxy.service and sdk/ (the wheel, the npm tarballs, the crate; packaging/dist.sh says
# more). The SDKs are the release builds python-sdk and node-sdk made; the crate is `cargo package`'s.
# `make dist PROFILE=debug` packs a debug proxy as modproxy-VERSION-debug.tar.gz instead, which is what
# the test uses, to spare a release build; it also lets `cargo package` pack uncommitted changes. A
# release needs a clean tree.
PROFILE ?= release
dist: python-sdk node-sdk
	$(CARGO) build --profile $(if $(filter debug,$(PROFILE)),dev,$(PROFILE)) -p modproxy
	$(CARGO) package -p modproxy-sdk $(if $(filter release,$(PROFILE)),,--allow-dirty)
	packaging/dist.sh $(TARGET_DIR)/$(PROFILE)/modproxy $(WHEELS)/modproxy_sdk-*.whl \
	  $$(ls -t $(TARGET_DIR)/package/modproxy-sdk-*.crate | head -n 1) \
	  dist $(if $(filter-out release,$(PROFILE)),-$(PROFILE))

# Unpacks that tarball into a temporary directory and uses it as a user would, with the checkout out of
# sight (a fresh HOME, virtual environment and npm cache): start.sh, the welcome page, stop.sh; a backend
# generated in each language from the release's SDKs, installed, tested and called through the proxy;
# the systemd unit checked with systemd-analyze where it is installed.
# PROFILE is set for dist as a prerequisite, not by a recursive make, so that python-sdk and node-sdk
# run once in `make test`.
test-dist: PROFILE = debug
test-dist: dist
	$(VENV)/bin/ruff check tests/dist
	$(VENV)/bin/ruff format --check tests/dist
	MODPROXY_DIST=$$(ls -t dist/modproxy-*-debug.tar.gz | head -n 1) $(VENV)/bin/pytest -q tests/dist

# Longer runs than `make test` makes: a million mixed good and bad requests checked for leaked descriptors
# and memory (and a fifth as many on pipelined socket and HTTP modules, over HTTP/1.1 and HTTP/2), and the
# kill-a-node-under-load scenarios, on release builds.
SOAK_REQUESTS ?= 1000000
.PHONY: soak
soak: h2-tools
	MODPROXY_SOAK_REQUESTS=$(SOAK_REQUESTS) $(CARGO) test --release -p modproxy --test resources --test faults -- --nocapture

# The benchmarks (bench/README.md): installs wrk and nginx (apt-get, once; h2load through h2-tools for the
# HTTP/2 rows), uvicorn + FastAPI into .venv/,
# builds everything in release mode, runs bench/run.py and writes bench/RESULTS.md. Quick run:
# `make bench BENCH_SECONDS=2 BENCH_ROUNDS=1 BENCH_ROWS=4,7` (run.py lists every setting).
# `make bench BENCH_BASELINE=<git ref>` also builds that commit's proxy (in target/baseline) and runs it in
# the proxy rows, in the same rounds, to report this build ÷ that one.
.PHONY: bench bench-baseline
bench: python-sdk node-sdk etcd h2-tools $(if $(BENCH_BASELINE),bench-baseline)
	@command -v wrk >/dev/null && command -v nginx >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light; }
	$(PY) -m pip install --quiet --disable-pip-version-check "fastapi>=0.110,<1" "uvicorn[standard]>=0.29,<1"
	$(CARGO) build --release -p modproxy
	$(CARGO) build --release --manifest-path bench/Cargo.toml --target-dir target
	BENCH_BASELINE=$(BENCH_BASELINE) BENCH_BASELINE_BIN=$(if $(BENCH_BASELINE),$(TARGET_DIR)/baseline/release/modproxy) \
	  timeout --kill-after=30 7200 $(PY) bench/run.py

bench-baseline:
	rm -rf $(TARGET_DIR)/baseline-src && git worktree prune
	git worktree add --detach $(TARGET_DIR)/baseline-src $(BENCH_BASELINE)
	$(CARGO) build --release -p modproxy --manifest-path $(TARGET_DIR)/baseline-src/Cargo.toml \
	  --target-dir $(TARGET_DIR)/baseline
	git worktree remove --force $(TARGET_DIR)/baseline-src

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

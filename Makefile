# Two commands for a fresh machine (Rust and npm present):
#   make run   - install what is missing, build, serve http://127.0.0.1:3000 (SQLite in ./data)
#   make test  - everything: formatting, lints, Rust tests and the Playwright suite
#   make bench - the project against the Socket.IO and Python chats, side by side
#                (bench/results/<date>.md; see bench/README.md)

SHELL := /bin/bash
.DEFAULT_GOAL := run

CARGO_LEPTOS_VERSION := 0.3.10
# The wasm-bindgen CLI must match the library version in Cargo.lock exactly.
WASM_BINDGEN_VERSION := $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/^version = "\(.*\)"/\1/p;q}' Cargo.lock)
E2E_DB := target/e2e/chat.db
# Runs a command with the local OpenID providers up (and stops them after).
WITH_OIDC := tools/oidc-provider/with-providers.sh
APT_UPDATED := target/.apt-updated
# The peers the benchmark compares against, and where their dependencies go.
# The baseline chat servers: ../shared/peers beside the checkout when there is
# one, else the copy of them kept in bench/peers.
PEERS := $(abspath $(if $(wildcard ../shared/peers/seed_ws_chat.py),../shared/peers,bench/peers))
export PEERS
BENCH_WORK := bench/work

.PHONY: run test deps browser-deps e2e-deps oidc-deps lint unit e2e clean-e2e bench bench-peers bench-deps

## Toolchain pieces the build needs, each installed only when missing.
deps:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@command -v cargo-leptos >/dev/null && cargo leptos --version | grep -q "$(CARGO_LEPTOS_VERSION)" \
		|| cargo install cargo-leptos@$(CARGO_LEPTOS_VERSION) --locked --features no_downloads
	@command -v wasm-bindgen >/dev/null && wasm-bindgen --version | grep -q "$(WASM_BINDGEN_VERSION)" \
		|| cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

run: deps
	mkdir -p data
	cargo leptos serve

## Debian's Chromium for Playwright (browsers cannot be downloaded by Playwright here).
browser-deps:
	@command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

e2e-deps: browser-deps
	@[ -x end2end/node_modules/.bin/playwright ] || (cd end2end && npm ci --no-audit --no-fund)

## The OpenID provider the tests sign in with (npm `oidc-provider`, run locally).
oidc-deps:
	@[ -d tools/oidc-provider/node_modules/oidc-provider ] || (cd tools/oidc-provider && npm ci --no-audit --no-fund)

lint:
	cargo fmt --all -- --check
	cargo clippy -p app -p server -p loadgen --all-targets -- -D warnings
	cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

# The sign-in tests talk to real OpenID providers on 127.0.0.1; loadgen's
# tests include a one-second smoke run against each peer. The fault tests
# (server binary as a child: kill -9, SIGTERM, stalled readers; a database
# file made unwritable mid-load) run on their own so their figures are printed,
# and so do the authorisation matrix (tests/authz.rs) and the upgrade of the
# committed v1 database (tests/migrate.rs), for their lines.
unit: oidc-deps bench-peers
	$(WITH_OIDC) cargo test -p app -p server -p loadgen -- --skip fault_ --skip every_cell_of_the_authorisation_table --skip a_v1_database_upgrades
	cargo test -p server --test faults --test db_fault -- --nocapture --test-threads=1 fault_
	cargo test -p server --test authz --test migrate -- --nocapture every_cell_of_the_authorisation_table a_v1_database_upgrades

# cargo-leptos builds the site, starts the server on a throwaway database and
# runs Playwright against it; the server offers the local OpenID provider as
# "Test ID". It runs on ports the OS picks (site and reload), never a fixed
# 3000 that something else may hold; cargo-leptos takes them from
# LEPTOS_SITE_ADDR and LEPTOS_RELOAD_PORT, Playwright from PLAYWRIGHT_BASE_URL,
# and global-setup.ts refuses a server that is not writing to this run's database.
E2E_FREE_PORTS := python3 -c 'import socket; s=[socket.socket() for _ in range(2)]; [x.bind(("127.0.0.1", 0)) for x in s]; print(*[x.getsockname()[1] for x in s])'
e2e: e2e-deps oidc-deps
	rm -f $(E2E_DB) $(E2E_DB)-wal $(E2E_DB)-shm
	mkdir -p $(dir $(E2E_DB))
	set -o pipefail; read -r port reload <<< "$$($(E2E_FREE_PORTS))"; \
	export LEPTOS_SITE_ADDR=127.0.0.1:$$port LEPTOS_RELOAD_PORT=$$reload \
		PLAYWRIGHT_BASE_URL=http://127.0.0.1:$$port; \
	echo "e2e: server on $$LEPTOS_SITE_ADDR (reload port $$reload)"; \
	DATABASE_URL=sqlite://$(E2E_DB) $(WITH_OIDC) bash -c '\
		CHAT_OIDC_ISSUER="$$CHAT_TEST_OIDC_ISSUER" CHAT_OIDC_CLIENT_ID=chat \
		CHAT_OIDC_CLIENT_SECRET=chat-test-secret CHAT_OIDC_NAME="Test ID" \
		cargo leptos end-to-end' 2>&1 | tee target/e2e/run.log
	@passed=$$(grep -oE '^ +[0-9]+ passed' target/e2e/run.log | tail -1 | tr -dc 0-9); \
	 failed=$$(grep -oE '^ +[0-9]+ failed' target/e2e/run.log | tail -1 | tr -dc 0-9); \
	 echo "playwright: $${passed:-0} passed, $${failed:-0} failed"; \
	 [ "$${passed:-0}" -gt 0 ] && [ "$${failed:-0}" -eq 0 ] \
		|| { echo "the e2e run did not pass (cargo-leptos exits 0 when the build fails)"; exit 1; }
	@! grep -n "panicked at" target/e2e/run.log || { echo "the server panicked during the e2e run"; exit 1; }

test: deps lint unit e2e

## The peers' dependencies, inside bench/work (pip `websockets` in a venv,
## npm `socket.io` from the peers' own lock file), each only when missing.
bench-peers:
	@[ -x $(BENCH_WORK)/venv/bin/python ] || python3 -m venv $(BENCH_WORK)/venv
	@$(BENCH_WORK)/venv/bin/python -c 'import websockets' 2>/dev/null \
		|| $(BENCH_WORK)/venv/bin/pip install -q -r bench/requirements.txt
	@mkdir -p $(BENCH_WORK)/peers
	@install -m 644 $(PEERS)/package.json $(PEERS)/package-lock.json $(PEERS)/socketio_chat.js $(BENCH_WORK)/peers/
	@[ -d $(BENCH_WORK)/peers/node_modules/socket.io ] || (cd $(BENCH_WORK)/peers && npm ci --no-audit --no-fund)

## Benchmark tools: wasm-opt (npm binaryen, for the release WASM) and oha.
bench-deps: bench-peers
	@[ -x bench/tools/node_modules/.bin/wasm-opt ] || (cd bench/tools && npm ci --no-audit --no-fund)
	@command -v oha >/dev/null || cargo install oha --locked

# Release build (WASM through wasm-opt), then every scenario against each
# server, pinned: server on core 0, load generator on core 1.
bench: deps bench-deps
	PATH="$(CURDIR)/bench/tools/node_modules/.bin:$$PATH" nice -n 10 cargo leptos build --release
	nice -n 10 cargo build --release -p loadgen
	PEERS=$(PEERS) bench/run.sh

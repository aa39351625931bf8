# The verbs users type; CI (.ci/run) calls `make test`.
# Each area keeps its own verbs in mk/<area>.mk and adds to TOOLS (installers run
# before any test) and TEST_EXTRA (suites beyond `cargo test`).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
TOOLS :=
TEST_EXTRA :=

.PHONY: help fmt fmt-check hack-check clippy test test-rust tools bench

# `make help` groups the verbs by the area their `## area: text` comment names; a verb whose
# comment names no area (or another one) is listed under "other", so none goes missing.
HELP_AREAS := train serve lambda infra bench test

help:
	@echo "Start with: make train-par (the main job), then make test."
	@verbs=$$(grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST)); \
	for area in $(HELP_AREAS); do \
		echo; echo "$$area:"; \
		grep -E "## $$area: " <<<"$$verbs" | sed -E "s/^([a-z0-9-]+):.*## $$area: /  make \1\t/" | expand -t 26; \
	done; \
	other=$$(grep -vE "## ($(subst $(eval) ,|,$(HELP_AREAS))): " <<<"$$verbs" || true); \
	if [ -n "$$other" ]; then \
		echo; echo "other:"; \
		sed -E 's/^([a-z0-9-]+):.*## /  make \1\t/' <<<"$$other" | expand -t 26; \
	fi

include $(sort $(wildcard mk/*.mk))

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

hack-check: ## test: check that workspace-hack still gives every member the test build's features
	CARGO=$(CARGO) workspace-hack/check.sh

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test-rust:
	$(CARGO) test --workspace --all-targets --locked

test: tools fmt-check hack-check clippy test-rust $(TEST_EXTRA) ## test: install tools, then fmt, clippy and every test

tools: $(TOOLS)

bench: bench-train bench-serve bench-refresh ## bench: every benchmark (bench-train + bench-serve + bench-refresh)

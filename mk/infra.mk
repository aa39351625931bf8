# Containers, the local compose stack and the AWS template (issue 5). See docs/deploy.md.
#
# Images are FROM scratch around static binaries built here, in a target directory of their
# own (target/static) so the release build never waits on the shared debug build's lock.

INFRA_TARGET := x86_64-unknown-linux-gnu
STATIC_TARGET_DIR := target/static
STATIC_BIN_DIR := $(STATIC_TARGET_DIR)/$(INFRA_TARGET)/release
STATIC_RUSTFLAGS := -C target-feature=+crt-static
INFRA_S3S_FS_VERSION := 0.14.1
INFRA_S3S_FS_ROOT := target/infra/s3s-fs
# cfn-lint: the one on PATH, else the one tool-cfn-lint installs into a venv of its own.
INFRA_VENV := .venv-infra
CFN_LINT ?= $(or $(shell command -v cfn-lint 2>/dev/null),$(CURDIR)/$(INFRA_VENV)/bin/cfn-lint)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

TOOLS += tool-cfn-lint tool-shellcheck
TEST_EXTRA += test-infra-lint test-compose

.PHONY: image up down static-binaries static-s3s-fs tool-cfn-lint tool-shellcheck \
	test-infra test-infra-lint test-compose

image: static-binaries static-s3s-fs ## infra: build static binaries and the scratch images (predict, trainer, s3s-fs)
	infra/images.sh predict trainer s3s-fs

# With --target, RUSTFLAGS reaches only the target's code, not build scripts or proc macros.
static-binaries:
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" CARGO_TARGET_DIR=$(STATIC_TARGET_DIR) \
		$(CARGO) build --release --locked --target $(INFRA_TARGET) -p predict -p trainer
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" CARGO_TARGET_DIR=$(STATIC_TARGET_DIR) \
		$(CARGO) build --release --locked --target $(INFRA_TARGET) --manifest-path infra/probe/Cargo.toml

# Built once (about 4 minutes on 2 cores), then reused.
static-s3s-fs:
	@if [ -x $(INFRA_S3S_FS_ROOT)/bin/s3s-fs ]; then \
		echo "s3s-fs (static): $(INFRA_S3S_FS_ROOT)/bin/s3s-fs"; \
	else \
		RUSTFLAGS="$(STATIC_RUSTFLAGS)" CARGO_PROFILE_RELEASE_STRIP=symbols \
		CARGO_TARGET_DIR=target/infra/s3s-fs-build \
		$(CARGO) install --locked s3s-fs --version $(INFRA_S3S_FS_VERSION) --features binary \
			--root $(INFRA_S3S_FS_ROOT) --target $(INFRA_TARGET); \
	fi

up: image ## infra: start the local stack (s3s-fs, one-shot train, predict on 127.0.0.1:8000)
	infra/stack.sh up

down: ## infra: stop the local stack and remove its containers, network and volume
	infra/stack.sh down

tool-cfn-lint:
	@if command -v cfn-lint >/dev/null 2>&1 || [ -x $(INFRA_VENV)/bin/cfn-lint ]; then \
		echo "cfn-lint: installed"; \
	else \
		python3 -m venv $(INFRA_VENV) && $(INFRA_VENV)/bin/pip install --quiet 'cfn-lint>=1.51,<2'; \
	fi

tool-shellcheck:
	@if command -v shellcheck >/dev/null 2>&1; then \
		echo "shellcheck: installed"; \
	else \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq shellcheck; \
	fi

test-infra: test-infra-lint test-compose ## test: every infra test: lints, then the compose stack end to end

test-infra-lint: ## test: cfn-lint the template, shellcheck every script, test the probe
	CFN_LINT="$(CFN_LINT)" infra/tests/lint.sh
	$(CARGO) fmt --manifest-path infra/probe/Cargo.toml -- --check
	CARGO_TARGET_DIR=target/infra/probe-dev $(CARGO) clippy --locked --all-targets \
		--manifest-path infra/probe/Cargo.toml -- -D warnings
	CARGO_TARGET_DIR=target/infra/probe-dev $(CARGO) test --locked --manifest-path infra/probe/Cargo.toml

test-compose: image ## test: the compose stack end to end under a project name of its own
	infra/tests/compose.sh

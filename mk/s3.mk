# S3 artifact store (issue 4): the s3s-fs test server and the S3 benchmark.

S3S_FS_VERSION := 0.14.1

TOOLS += tool-s3s-fs

.PHONY: tool-s3s-fs bench-s3

# The tests start a real S3-compatible server; install it once, when missing.
tool-s3s-fs:
	@if command -v s3s-fs >/dev/null 2>&1 || [ -x "$${CARGO_HOME:-$$HOME/.cargo}/bin/s3s-fs" ]; then \
		echo "s3s-fs: installed"; \
	else \
		$(CARGO) install --locked s3s-fs --version $(S3S_FS_VERSION) --features binary; \
	fi

bench-s3: tool-s3s-fs ## bench: predict cold start from local S3 (median of 10) and round trips per object on publish
	bash bench/s3/run.sh

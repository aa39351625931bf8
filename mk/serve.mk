# The predict function: serve it, run it under the Lambda emulator, build the Lambda zip,
# benchmark it. Included by the root Makefile.

MODEL_URI ?= artifacts/digits
EVENT ?= function-url
LAMBDA_PORT ?= 9000
# Issue 3: the Lambda zip must not exceed 5 MB.
LAMBDA_ZIP_LIMIT ?= 5000000

.PHONY: serve watch invoke build-lambda bench-serve bench-refresh test-lambda tool-cargo-lambda tool-wrk

serve: ## serve: serve the model at MODEL_URI (default artifacts/digits) on HOST:PORT (0.0.0.0:8000)
	MODEL_URI=$(MODEL_URI) $(CARGO) run --release -p predict --bin predict

watch: tool-cargo-lambda ## lambda: run the function under `cargo lambda watch` (Lambda emulator, port LAMBDA_PORT)
	$(CARGO) lambda watch --package predict --bin predict --invoke-port $(LAMBDA_PORT) \
		--env-var MODEL_URI=$(if $(findstring ://,$(MODEL_URI)),$(MODEL_URI),$(abspath $(MODEL_URI)))

invoke: tool-cargo-lambda ## lambda: invoke the watched function with infra/events/$(EVENT).json
	$(CARGO) lambda invoke predict --invoke-port $(LAMBDA_PORT) --data-file infra/events/$(EVENT).json

# The three functions' zips, each held to issue 3's 5 MB (Lambda's own limit for a zip uploaded
# directly is 50 MB; a smaller zip is a shorter cold start): predict, train-worker (which also
# runs TrainWorkflow's plan and finish) and score.
build-lambda: tool-cargo-lambda ## lambda: cargo lambda build --release: zips in target/lambda/{predict,train-worker,score}/, each at most 5 MB
	$(CARGO) lambda build --release --package predict --bin predict --package train-worker --bin train-worker \
		--package score --bin score --output-format zip
	@target="$$($(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"; \
	for f in predict:$(LAMBDA_ZIP_LIMIT) train-worker:$(LAMBDA_ZIP_LIMIT) score:$(LAMBDA_ZIP_LIMIT); do \
		bin=$${f%%:*}; limit=$${f#*:}; zip="$$target/lambda/$$bin/bootstrap.zip"; \
		size=$$(stat -c %s "$$zip") || exit 1; \
		echo "build-lambda: $$zip: $$size bytes (limit $$limit)"; \
		[ "$$size" -le "$$limit" ] || { echo "build-lambda: $$bin's zip is over the limit; see [profile.release.package.*] in Cargo.toml" >&2; exit 1; }; \
	done

bench-serve: tool-wrk ## bench: predict vs the Python original vs bare axum (wrk -t2 -c32), cold start, RSS
	bench/serve/run.sh

bench-refresh: tool-wrk ## bench: live refresh: publish -> first new answer, p99 during swaps vs steady, S3 requests when idle
	bench/refresh/run.sh

test-lambda: tool-cargo-lambda ## test: every event fixture and the function URL through cargo lambda watch
	functions/predict/tests/lambda.sh

tool-cargo-lambda:
	@command -v cargo-lambda >/dev/null || pip install cargo-lambda

tool-wrk:
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }

TOOLS += tool-cargo-lambda tool-wrk
TEST_EXTRA += test-lambda

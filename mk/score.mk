# Batch scoring (issue 19): the score function's emulator suite, its 1 GiB memory run and
# its benchmark. Included by the root Makefile.

.PHONY: score test-score test-score-1g bench-score

INPUT ?=
OUTPUT ?=

score: ## lambda: score a file with the CLI: make score INPUT=in.csv OUTPUT=out.csv (MODEL_URI as for serve)
	MODEL_URI=$(MODEL_URI) $(CARGO) run --release -p score --bin score -- --input $(INPUT) --output $(OUTPUT)

test-score: tool-cargo-lambda tool-s3s-fs ## test: score under cargo lambda watch on s3s-fs: fixtures, gzip, bad rows, redelivery, a 256 MiB file under a 128 MiB RSS cap, all compared with predict
	functions/score/tests/lambda.sh

test-score-1g: tool-cargo-lambda tool-s3s-fs ## test: the same suite with a 1 GiB file under the template's 512 MiB (slow: minutes in a debug build)
	SCORE_LARGE_MB=1024 SCORE_RSS_CAP_MB=512 functions/score/tests/lambda.sh

bench-score: ## bench: score vs scikit-learn predict_proba on a 1M-row CSV (read, score, write), rows/s and peak RSS
	bench/score/run.sh

TEST_EXTRA += test-score

# Distributed training on AWS Lambda (issue 18): the train-worker function, a distributed
# fit against local emulators, its tests and benchmark. Included by the root Makefile.

.PHONY: train-lambda test-distributed bench-distributed

train-lambda: tool-cargo-lambda tool-s3s-fs ## train: a distributed fit (--mode lambda) against s3s-fs + cargo lambda watch, started and stopped here (ARGS="--shards 2")
	functions/train-worker/tests/train-lambda.sh $(ARGS)

test-distributed: tool-cargo-lambda tool-s3s-fs ## test: --mode lambda = seq bit for bit (digits, 200k rows, 1-3 shards), killed worker, changed data, no such function
	functions/train-worker/tests/distributed.sh

bench-distributed: tool-cargo-lambda tool-s3s-fs ## bench: Lambda round trip, per-round overhead, --mode par vs lambda wall time, worker memory
	bench/distributed/run.sh

TEST_EXTRA += test-distributed

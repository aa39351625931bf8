# Trainer verbs (issue 2). Included by the root Makefile.

TRAINER_BIN := target/release/trainer
TRAINER_RUN := $(CARGO) run --quiet --release -p trainer --

.PHONY: train-seq train-par compare bench-train

train-par: ## train: train on data/digits.csv with rayon (all cores); publish to ./artifacts
	$(TRAINER_RUN) fit --mode par --report reports/train-par.json

train-seq: ## train: the same training on one thread (no rayon); publish to ./artifacts
	$(TRAINER_RUN) fit --mode seq --report reports/train-seq.json

compare: ## train: train seq and par on the same work; print the original's table + speedup
	$(TRAINER_RUN) compare --report reports/compare.json

bench-train: ## bench: trainer targets: accuracy, vs scikit-learn (own venv), par/seq, scaling, memory
	$(CARGO) build --quiet --release -p trainer
	python3 bench/train/bench.py --trainer $(TRAINER_BIN)

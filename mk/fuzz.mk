# Coverage-guided fuzzing of every parser that input reaches (issue 16); see fuzz/README.md.
# Not part of `make test`: it runs for a fixed time, not to a verdict. Builds go to fuzz/target,
# apart from the main target/.

FUZZ_SECONDS ?= 60

.PHONY: fuzz

fuzz: ## test: fuzz each target for FUZZ_SECONDS (default 60) and print executions and crashes
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

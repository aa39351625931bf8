# Step Functions workflows and the template deployed for real (issue 20): the template turned
# into plain CloudFormation by aws-sam-translator and created in moto's CloudFormation; state
# machines executed by moto's Step Functions interpreter with their Lambda calls sent to
# `cargo lambda watch`. See docs/workflows.md. Included by the root Makefile.

WORKFLOWS_VENV := .venv-workflows
WORKFLOWS_REQUIREMENTS := infra/workflows/requirements.txt
WORKFLOWS_PYTEST := $(CURDIR)/$(WORKFLOWS_VENV)/bin/pytest -p no:cacheprovider -q

TOOLS += tool-workflows
TEST_EXTRA += test-workflows-deploy test-workflows-engine test-workflows-score

.PHONY: tool-workflows test-workflows test-workflows-deploy test-workflows-engine test-workflows-score

# (Re)installed whenever the pinned requirements change.
tool-workflows:
	@if cmp -s $(WORKFLOWS_REQUIREMENTS) $(WORKFLOWS_VENV)/.requirements 2>/dev/null; then \
		echo "workflows venv: installed"; \
	else \
		python3 -m venv $(WORKFLOWS_VENV) && \
		$(WORKFLOWS_VENV)/bin/pip install --quiet -r $(WORKFLOWS_REQUIREMENTS) && \
		cp $(WORKFLOWS_REQUIREMENTS) $(WORKFLOWS_VENV)/.requirements; \
	fi

test-workflows: test-workflows-deploy test-workflows-engine test-workflows-score ## test: every workflow suite (deploy to moto, Step Functions engine, ScoreWorkflow)

test-workflows-deploy: tool-workflows ## test: infra/template.yaml through aws-sam-translator into moto's CloudFormation; checks what docs/deploy.md relies on
	cd infra/workflows && $(WORKFLOWS_PYTEST) tests/test_deploy.py tests/test_triggers.py

# The probe function (infra/workflows/probe-fn) builds in a target directory of its own.
WORKFLOWS_PROBE := --manifest-path infra/workflows/probe-fn/Cargo.toml
WORKFLOWS_PROBE_TARGET := CARGO_TARGET_DIR=target/workflows/probe-fn

test-workflows-engine: tool-workflows tool-cargo-lambda ## test: moto's Step Functions interpreter calling cargo lambda watch: Task, Retry, Catch, Distributed Map over S3
	$(CARGO) fmt $(WORKFLOWS_PROBE) -- --check
	$(WORKFLOWS_PROBE_TARGET) $(CARGO) clippy --locked --all-targets $(WORKFLOWS_PROBE) -- -D warnings
	cd infra/workflows && $(WORKFLOWS_PYTEST) tests/test_engine.py

test-workflows-score: tool-workflows tool-cargo-lambda ## test: ScoreWorkflow deployed to moto and run: the real score function under cargo lambda watch scores a prefix
	cd infra/workflows && $(WORKFLOWS_PYTEST) tests/test_score_workflow.py

# One state machine of the template, run locally (infra/workflows/run.py): moto and one
# `cargo lambda watch` per function it calls, started and stopped by the command.
# `make workflow-train` / `make workflow-score` become this with their state machine's name.
STATE_MACHINE ?=
WORKFLOW_INPUT ?= {}
WORKFLOW_PUT ?=
.PHONY: workflow-run
workflow-run: tool-workflows tool-cargo-lambda ## infra: run STATE_MACHINE of the template locally (moto + cargo lambda watch); WORKFLOW_INPUT, WORKFLOW_PUT=LOCAL=KEY
	@[ -n "$(STATE_MACHINE)" ] || { echo "workflow-run: set STATE_MACHINE (a state machine's logical id in infra/template.yaml)" >&2; exit 2; }
	$(WORKFLOWS_VENV)/bin/python infra/workflows/run.py --state-machine "$(STATE_MACHINE)" \
		--input '$(WORKFLOW_INPUT)' $(foreach p,$(WORKFLOW_PUT),--put $(p))

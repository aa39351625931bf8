# Step Functions workflows and the template deployed for real (issue 20): the template turned
# into plain CloudFormation by aws-sam-translator and created in moto's CloudFormation; state
# machines executed by moto's Step Functions interpreter with their Lambda calls sent to
# `cargo lambda watch`. See docs/workflows.md. Included by the root Makefile.

WORKFLOWS_VENV := .venv-workflows
WORKFLOWS_REQUIREMENTS := infra/workflows/requirements.txt
WORKFLOWS_PYTEST := $(CURDIR)/$(WORKFLOWS_VENV)/bin/pytest -p no:cacheprovider -q

TOOLS += tool-workflows
TEST_EXTRA += test-workflows-deploy test-workflows-engine test-workflows-score test-workflows-train

.PHONY: tool-workflows test-workflows test-workflows-deploy test-workflows-engine test-workflows-score \
	test-workflows-train

# (Re)installed whenever the pinned requirements change.
tool-workflows:
	@if cmp -s $(WORKFLOWS_REQUIREMENTS) $(WORKFLOWS_VENV)/.requirements 2>/dev/null; then \
		echo "workflows venv: installed"; \
	else \
		python3 -m venv $(WORKFLOWS_VENV) && \
		$(WORKFLOWS_VENV)/bin/pip install --quiet -r $(WORKFLOWS_REQUIREMENTS) && \
		cp $(WORKFLOWS_REQUIREMENTS) $(WORKFLOWS_VENV)/.requirements; \
	fi

test-workflows: test-workflows-deploy test-workflows-engine test-workflows-score test-workflows-train ## test: every workflow suite (deploy to moto, Step Functions engine, ScoreWorkflow, TrainWorkflow)

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

test-workflows-train: tool-workflows tool-cargo-lambda ## test: TrainWorkflow deployed to moto and run with the real train-worker: = trainer fit's model, predict follows it, a failed CV task retried, one failing for good
	cd infra/workflows && $(WORKFLOWS_PYTEST) tests/test_train_workflow.py

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

# `make workflow-train` / `make workflow-score`: workflow-run with their state machine, the files
# they need uploaded, and the stack's bucket filled into the input. Model `digits` under the
# template's defaults (ModelPrefix models, ModelName digits, TrainDataPrefix data).
DATA ?= data/digits.csv
TRAIN_SETTINGS ?=
SCORE_BATCH ?= batch-1
WORKFLOWS_RUN := $(WORKFLOWS_VENV)/bin/python infra/workflows/run.py
comma := ,
.PHONY: workflow-train workflow-score

workflow-train: tool-workflows tool-cargo-lambda ## infra: TrainWorkflow run locally: DATA (data/digits.csv) put under data/, trained into s3://<bucket>/models/digits; TRAIN_SETTINGS='"shards": 2, "folds": 3' adds fields
	@[ -f "$(DATA)" ] || { echo "workflow-train: DATA=$(DATA): no such file" >&2; exit 2; }
	$(WORKFLOWS_RUN) --state-machine TrainWorkflow --put "$(DATA)=data/$(notdir $(DATA))" \
		--input '{"data": "s3://{ModelBucketName}/data/$(notdir $(DATA))", "store": "s3://{ModelBucketName}/models", "name": "digits"$(if $(TRAIN_SETTINGS),$(comma) $(TRAIN_SETTINGS))}'

# The scoring run needs a model in the stack's bucket: it is trained here first (`trainer fit`,
# debug build, into a temporary local store), then uploaded with the rows of DATA split into CSV
# files of 600 rows under incoming/SCORE_BATCH/.
workflow-score: tool-workflows tool-cargo-lambda ## infra: ScoreWorkflow run locally: trains digits (trainer fit, local temp store), uploads it and the rows of DATA in CSVs of 600 under incoming/SCORE_BATCH (batch-1)/, scores them
	@[ -f "$(DATA)" ] || { echo "workflow-score: DATA=$(DATA): no such file" >&2; exit 2; }
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	echo "workflow-score: training a model into $$tmp/store (trainer fit)" >&2; \
	$(CARGO) run --quiet -p trainer --bin trainer -- fit --mode par --data "$(DATA)" \
		--store "$$tmp/store" --name digits >&2; \
	mkdir "$$tmp/incoming"; \
	tail -n +2 "$(DATA)" | split -l 600 -d --additional-suffix=.csv \
		--filter='{ head -n 1 "$(DATA)"; cat; } > "$$FILE"' - "$$tmp/incoming/part-"; \
	$(WORKFLOWS_RUN) --state-machine ScoreWorkflow --put-dir "$$tmp/store=models" \
		--put-dir "$$tmp/incoming=incoming/$(SCORE_BATCH)" --input '{"prefix": "incoming/$(SCORE_BATCH)/"}'

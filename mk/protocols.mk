# API docs and the serving protocols of the predict function (issue 6); see docs/serving.md.
#
# The in-process tests (functions/predict/tests/{openapi,protocols}.rs) run with `cargo test`.
# These run the real binary against clients nobody here wrote, installed from PyPI into a
# venv of their own, and the /docs page in Debian's chromium.

CLIENTS_VENV := .venv-clients
CLIENTS_REQS := functions/predict/tests/clients/requirements.txt
PROTOCOLS_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

TOOLS += tool-chromium tool-clients
TEST_EXTRA += test-protocols

.PHONY: tool-chromium tool-clients test-protocols test-clients test-browser test-schemathesis

tool-chromium:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: installed"; \
	else \
		$(PROTOCOLS_SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(PROTOCOLS_SUDO) apt-get install -y -qq chromium; \
	fi

tool-clients: $(CLIENTS_VENV)/.installed

# Re-installed when the requirements change.
$(CLIENTS_VENV)/.installed: $(CLIENTS_REQS)
	python3 -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install --quiet --disable-pip-version-check -r $(CLIENTS_REQS)
	touch $@

test-protocols: tool-chromium tool-clients ## test: the predict binary against tritonclient, pandas, MLflow, prometheus_client, chromium and schemathesis
	functions/predict/tests/clients/run.sh clients browser schemathesis

test-clients: tool-clients ## test: only the third-party clients
	functions/predict/tests/clients/run.sh clients

test-schemathesis: tool-clients ## test: only schemathesis against /openapi.json (bounded to a minute; no 5xx, server alive)
	functions/predict/tests/clients/run.sh schemathesis

test-browser: tool-chromium tool-clients ## test: only the /docs page in headless chromium (screenshot in target/test-artifacts/)
	functions/predict/tests/clients/run.sh browser

#!/usr/bin/env bash
# Protocol tests against the real `predict` binary (`make test-protocols`):
#   1. publish a model into a temporary store (the trainer when it builds and runs,
#      otherwise the model-crate test model of examples/test_model.rs);
#   2. start `predict` on 127.0.0.1, port 0 (the kernel picks a free one; read back from
#      its log);
#   3. run the suites named on the command line against it:
#        clients  third-party clients from PyPI (tritonclient, pandas, MLflow, prometheus_client)
#        browser  headless chromium on /docs, driven over the DevTools protocol
#        schemathesis  property-based requests for every operation of /openapi.json
#                 (bounded: SCHEMATHESIS_MAX_TIME seconds, default 60): no answer may be
#                 a 5xx, and the server must be alive afterwards
#   4. stop the server this script started (by its PID) and clean up.
# Usage: run.sh [clients] [browser]   (default: both)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../.." && pwd)"
cd "$root"
here="functions/predict/tests/clients"
venv="${CLIENTS_VENV:-$root/.venv-clients}"
target="${CARGO_TARGET_DIR:-$root/target}"
artifacts="$target/test-artifacts"
suites=("$@")
[[ ${#suites[@]} -gt 0 ]] || suites=(clients browser)

if [[ ! -x "$venv/bin/python" ]]; then
    echo "protocols: no client venv at $venv; run 'make tool-clients'" >&2
    exit 1
fi

# Sets $work (a scratch directory) and an EXIT trap that stops what was started.
# shellcheck source=SCRIPTDIR/../background.sh
source functions/predict/tests/background.sh

fail() {
    echo "protocols: FAIL: $*" >&2
    if [[ -f "$work/predict.log" ]]; then
        echo "--- predict log (last 30 lines) ---" >&2
        tail -n 30 "$work/predict.log" >&2
    fi
    exit 1
}

cargo build --quiet --locked -p predict --bin predict
store="$work/store"
if cargo build --quiet --locked -p trainer 2>/dev/null &&
    "$target/debug/trainer" fit --data data/digits.csv --store "$store" >"$work/train.log" 2>&1 &&
    [[ -d "$store/digits" ]]; then
    echo "protocols: model trained by the trainer"
else
    rm -rf "$store"
    cargo run --quiet --locked -p predict --example test_model -- "$store" >/dev/null
    echo "protocols: model built by examples/test_model.rs (trainer not available)"
fi

start_in_background "$work/predict.log" env MODEL_URI="$store/digits" HOST=127.0.0.1 PORT=0 \
    LOG_FORMAT=text RUST_LOG=info "$target/debug/predict"
server_pid=$started_pid
listening() {
    addr="$(grep -oE 'addr=127\.0\.0\.1:[0-9]+' "$work/predict.log" | head -n 1 | cut -d= -f2 || true)"
    [[ -n "$addr" ]]
}
addr=""
wait_until_ready "$server_pid" predict 10 listening
url="http://$addr"
echo "protocols: predict (pid $server_pid) on $url"

mkdir -p "$artifacts"
status=0
for suite in "${suites[@]}"; do
    case "$suite" in
        clients) "$venv/bin/python" "$here/test_clients.py" "$url" "$root/data/digits.csv" || status=1 ;;
        browser) "$venv/bin/python" "$here/browser.py" "$url" "$artifacts" || status=1 ;;
        schemathesis)
            # Only `not_a_server_error`: the other checks judge the schema's precision,
            # which is not what this suite is for (issue 16: nothing may kill the server).
            "$venv/bin/schemathesis" run "$url/openapi.json" \
                --checks not_a_server_error \
                --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
                --max-time "${SCHEMATHESIS_MAX_TIME:-60}" \
                --seed "${SCHEMATHESIS_SEED:-16}" \
                --request-timeout 10 --workers 2 \
                --report junit --report-junit-path "$artifacts/schemathesis.xml" || status=1
            ;;
        *) fail "unknown suite $suite" ;;
    esac
done
kill -0 "$server_pid" 2>/dev/null || fail "predict died during the tests"
[[ $status -eq 0 ]] || fail "a suite failed"
echo "protocols: ok"

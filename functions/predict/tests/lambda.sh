#!/usr/bin/env bash
# The predict function under the real Lambda emulator (`make test-lambda`):
#   1. train a fresh model into a temporary store (the trainer binary when it builds,
#      otherwise the model-crate test model of `examples/test_model.rs`);
#   2. start `cargo lambda watch` on a free loopback port with MODEL_URI pointing at it;
#   3. invoke every event fixture in infra/events/ with `cargo lambda invoke --data-file`
#      and check the answers;
#   4. call the function-URL path of the emulator over HTTP with curl (a prediction and an
#      error);
#   5. publish a new version while the emulator runs: after MODEL_REFRESH_SECONDS, the next
#      invocation answers from it (x-model-version), with no restart;
#   (the init error a missing model reports is checked by tests/init_error.rs, not here:
#   cargo-lambda 1.9.2's emulator answers the function's /runtime/init/error POST only
#   some of the time, so a check through it would be flaky);
#   6. stop the emulator this script started (its own process group, by id) and clean up.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"

command -v cargo-lambda >/dev/null || pip install --quiet cargo-lambda

# Sets $work (a scratch directory) and an EXIT trap that stops what was started.
# shellcheck source=SCRIPTDIR/background.sh
source functions/predict/tests/background.sh

fail() {
    echo "test-lambda: FAIL: $*" >&2
    local log
    for log in "$work"/watch-*.log; do
        [[ -f "$log" ]] || continue
        echo "--- $(basename "$log") (last 40 lines) ---" >&2
        tail -n 40 "$log" >&2
    done
    exit 1
}

target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

# 1. A fresh model.
store="$work/store"
if cargo build --quiet -p trainer 2>"$work/trainer-build.log" &&
    "$target_dir/debug/trainer" fit --data data/digits.csv --store "$store" >"$work/train.log" 2>&1; then
    echo "test-lambda: model trained with the trainer binary"
else
    echo "test-lambda: trainer unavailable; publishing the model-crate test model"
    cargo run --quiet -p predict --example test_model -- "$store" >/dev/null
fi
name="$(find "$store" -mindepth 2 -maxdepth 2 -name latest -printf '%h\n' | head -n 1)"
[[ -n "$name" ]] || fail "no model was published under $store"
model_uri="$name"

# The emulator on a free loopback port, in a process group of its own; sets $port.
# $1: a name for its log, $2: the MODEL_URI it gives the function. Ready when the port
# accepts connections (an HTTP probe would itself invoke the function).
start_watch() {
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    start_in_background "$work/watch-$1.log" cargo lambda watch --package predict --bin predict \
        --ignore-changes --invoke-address 127.0.0.1 --invoke-port "$port" \
        --env-var "MODEL_URI=$2" --env-var "RUST_LOG=info" --env-var "MODEL_REFRESH_SECONDS=1"
    wait_until_ready "$started_pid" "cargo lambda watch ($1)" 60 port_open "$port"
}

# 2. The emulator. Build first so the first invoke does not wait on it.
cargo build --quiet -p predict --bin predict
start_watch good "$model_uri"

check_answer() { # $1: what, stdin: a Lambda HTTP response or a plain body ($2 = plain)
    python3 -c '
import json, sys
what, plain = sys.argv[1], sys.argv[2] == "plain"
raw = sys.stdin.read()
try:
    doc = json.loads(raw)
    if not plain:
        status = doc.get("statusCode")
        assert status == 200, f"statusCode {status}: {raw}"
        doc = json.loads(doc["body"])
    assert doc["predicted_class"] == 0, doc
    assert doc["label"] == "0", doc
    assert len(doc["probabilities"]) == 10, doc
    assert abs(sum(doc["probabilities"]) - 1) < 1e-9, doc
except Exception as e:
    sys.exit(f"{what}: {e!r}: {raw[:500]}")
print(f"test-lambda: ok  {what}: predicted_class 0")
' "$1" "${2:-event}"
}

# 3. Every event fixture through the runtime API.
events=(infra/events/*.json)
[[ ${#events[@]} -ge 4 ]] || fail "expected at least 4 event fixtures, found ${#events[@]}"
for ev in "${events[@]}"; do
    out="$(cargo lambda invoke predict --invoke-address 127.0.0.1 --invoke-port "$port" \
        --data-file "$ev" 2>"$work/invoke.err")" || fail "invoke $ev: $(cat "$work/invoke.err")"
    check_answer "$(basename "$ev")" <<<"$out" || fail "$ev"
done

# 4. The function URL path of the emulator, over HTTP.
url="http://127.0.0.1:$port/lambda-url/predict/predict"
body="$(curl -sS --fail-with-body -H 'content-type: application/json' \
    --data-binary @bench/serve/body.json "$url")" || fail "POST $url: $body"
check_answer "function URL over HTTP" plain <<<"$body" || fail "function URL"
code="$(curl -sS -o "$work/err.json" -w '%{http_code}' -H 'content-type: application/json' \
    --data-binary '{"image": [1, 2, 3]}' "$url")"
[[ "$code" == 422 ]] || fail "short image: expected 422, got $code: $(cat "$work/err.json")"
grep -q '"code":"wrong_feature_count"' "$work/err.json" || fail "422 body: $(cat "$work/err.json")"
echo "test-lambda: ok  function URL error: 422 wrong_feature_count"
health="$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/lambda-url/predict/health")"
[[ "$health" == 200 ]] || fail "GET /health through the function URL: $health"
echo "test-lambda: ok  function URL GET /health: 200"


# 5. Live refresh: a new version is served by the next invocation after the interval.
version_of() { # the x-model-version of GET /health through the function URL
    curl -sS -D - -o /dev/null "http://127.0.0.1:$port/lambda-url/predict/health" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-model-version" { print $2 }'
}
before="$(version_of)"
[[ -n "$before" ]] || fail "no x-model-version header on GET /health"
if [[ -x "$target_dir/debug/trainer" ]] &&
    "$target_dir/debug/trainer" fit --data data/digits.csv --seed 7 --alphas 1 --store "$store" >"$work/train2.log" 2>&1; then
    :
else
    cargo run --quiet -p predict --example test_model -- "$store" >/dev/null
fi
sleep 1.5
after="$(version_of)"
latest="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$model_uri/latest")"
[[ "$after" == "$latest" && "$after" != "$before" ]] ||
    fail "after a new publish and the refresh interval: serving $after, latest is $latest (was $before)"
echo "test-lambda: ok  live refresh: $before -> $after without a restart"
echo "test-lambda: ${#events[@]} events and the function URL passed"

#!/usr/bin/env bash
# `make bench-serve`: the predict function against the Python original and against the
# ceiling of the HTTP stack, in one run, with the same wrk settings for all three:
#   wrk -t2 -c32 -d${DURATION}s --latency, POSTing the original's body (bench/serve/body.json).
# Then cold start (spawn -> first 200, median of 10), resident memory under load, and the
# Lambda zip size when `make build-lambda` has made it. Prints a table with ratios and
# writes reports/bench-serve.json. All traffic goes to 127.0.0.1; every server started
# here is stopped by its id.
#
# Environment: DURATION (s, default 10), WARMUP (s, default 2), MODEL_URI (default: a fresh
# model in a temporary store), PREDICT_PORT / BARE_PORT / PY_PORT (default 18000-18002).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

duration="${DURATION:-10}"
warmup="${WARMUP:-2}"
predict_port="${PREDICT_PORT:-18000}"
bare_port="${BARE_PORT:-18001}"
py_port="${PY_PORT:-18002}"
body_file="$root/bench/serve/body.json"
venv="$root/.venv-bench-serve"
work="$(mktemp -d)"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "bench-serve: wrk is missing (make tools)" >&2; exit 1; }

echo "bench-serve: building (release)"
cargo build --quiet --release -p predict --bin predict --example bare
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
predict_bin="$target_dir/release/predict"
bare_bin="$target_dir/release/examples/bare"

if [[ -z "${MODEL_URI:-}" ]]; then
    store="$work/store"
    if cargo build --quiet --release -p trainer 2>/dev/null &&
        "$target_dir/release/trainer" fit --data data/digits.csv --store "$store" >/dev/null 2>&1; then
        echo "bench-serve: model trained with the trainer"
    else
        echo "bench-serve: trainer unavailable; using the model-crate test model"
        cargo run --quiet -p predict --example test_model -- "$store" >/dev/null
    fi
    MODEL_URI="$(find "$store" -mindepth 2 -maxdepth 2 -name latest -printf '%h\n' | head -n 1)"
fi
export MODEL_URI

if [[ ! -x "$venv/bin/python" ]]; then
    echo "bench-serve: creating $venv (FastAPI + scikit-learn reference)"
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import fastapi, uvicorn, sklearn' 2>/dev/null ||
    "$venv/bin/pip" install --quiet -r bench/serve/requirements.txt

wait_200() { # port
    for _ in $(seq 600); do
        code="$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
            --data-binary @"$body_file" "http://127.0.0.1:$1/predict" || true)"
        [[ "$code" == 200 ]] && return 0
        sleep 0.1
    done
    echo "bench-serve: nothing answered 200 on port $1" >&2
    return 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# run_wrk NAME PORT PID: warm up, measure, and sample the server's RSS while loaded.
run_wrk() {
    local name=$1 port=$2 pid=$3
    BODY_FILE="$body_file" wrk -t2 -c32 -d"${warmup}s" -s bench/serve/post.lua \
        "http://127.0.0.1:$port/predict" >/dev/null
    BODY_FILE="$body_file" wrk -t2 -c32 -d"${duration}s" --latency -s bench/serve/post.lua \
        "http://127.0.0.1:$port/predict" >"$work/$name.wrk" &
    local wrk_pid=$! peak=0 now
    while kill -0 "$wrk_pid" 2>/dev/null; do
        now="$(rss_kb "$pid")"
        ((now > peak)) && peak=$now
        sleep 0.25
    done
    wait "$wrk_pid"
    echo "$peak" >"$work/$name.rss"
    cat "$work/$name.wrk"
}

echo "bench-serve: Python reference (FastAPI + scikit-learn, 1 uvicorn worker)"
(cd bench/serve && exec "$venv/bin/python" -m uvicorn reference_app:app \
    --host 127.0.0.1 --port "$py_port" --log-level warning) &
py_pid=$!
pids+=("$py_pid")
wait_200 "$py_port"
run_wrk python "$py_port" "$py_pid"
kill -TERM "$py_pid"; wait "$py_pid" 2>/dev/null || true

echo "bench-serve: bare axum ceiling (fixed answer)"
PORT="$bare_port" "$bare_bin" &
bare_pid=$!
pids+=("$bare_pid")
wait_200 "$bare_port"
run_wrk bare "$bare_port" "$bare_pid"
kill -TERM "$bare_pid"; wait "$bare_pid" 2>/dev/null || true

echo "bench-serve: predict ($MODEL_URI)"
HOST=127.0.0.1 PORT="$predict_port" RUST_LOG=warn "$predict_bin" &
predict_pid=$!
pids+=("$predict_pid")
wait_200 "$predict_port"
run_wrk predict "$predict_port" "$predict_pid"
hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/$predict_pid/status")"
kill -TERM "$predict_pid"; wait "$predict_pid" || { echo "bench-serve: predict exited non-zero" >&2; exit 1; }

echo "bench-serve: cold start, spawn -> first 200 (median of 10)"
cold="$(HOST=127.0.0.1 PORT="$predict_port" RUST_LOG=warn python3 bench/serve/coldstart.py \
    10 "$predict_port" "$body_file" -- "$predict_bin")"
echo "bench-serve: cold start of the Python reference (median of 3)"
py_cold="$(cd bench/serve && python3 "$root/bench/serve/coldstart.py" 3 "$py_port" "$body_file" -- \
    "$venv/bin/python" -m uvicorn reference_app:app --host 127.0.0.1 --port "$py_port" --log-level warning)"

zip="$target_dir/lambda/predict/bootstrap.zip"
zip_bytes=0
[[ -f "$zip" ]] && zip_bytes="$(stat -c %s "$zip")"

mkdir -p reports
python3 - "$work" "$hwm" "$cold" "$py_cold" "$zip_bytes" "$duration" <<'EOF'
import json, re, sys

work, hwm_kb, cold, py_cold, zip_bytes, duration = sys.argv[1:7]

def wrk(name):
    text = open(f"{work}/{name}.wrk").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    def ms(v, unit):
        return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    p = {q: ms(*re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()) for q in ("50", "99")}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    rss = int(open(f"{work}/{name}.rss").read()) / 1024
    return {"rps": rps, "p50_ms": p["50"], "p99_ms": p["99"], "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock.group(1) if sock else "", "peak_rss_mb": rss}

py, bare, pr = wrk("python"), wrk("bare"), wrk("predict")
cold_runs = [float(x) for x in cold.split()]
py_cold_runs = [float(x) for x in py_cold.split()]
res = {
    "wrk": f"wrk -t2 -c32 -d{duration}s --latency -s bench/serve/post.lua (body: bench/serve/body.json)",
    "python": py, "bare_axum": bare, "predict": pr,
    "ratio_vs_python": pr["rps"] / py["rps"], "ratio_vs_bare": pr["rps"] / bare["rps"],
    "predict_vmhwm_mb": int(hwm_kb) / 1024,
    "cold_start_ms_median": cold_runs[0], "cold_start_ms_runs": cold_runs[1:],
    "python_cold_start_ms_median": py_cold_runs[0],
    "lambda_zip_bytes": int(zip_bytes),
}
json.dump(res, open("reports/bench-serve.json", "w"), indent=2)

def row(name, r):
    return f"| {name:<28} | {r['rps']:>10,.0f} | {r['p50_ms']:>7.2f} | {r['p99_ms']:>7.2f} | {r['peak_rss_mb']:>7.1f} |"

ok = lambda c: "ok" if c else "MISSED"
zip_mb = int(zip_bytes) / 1e6
print()
print("| server (2 wrk threads, 32 conns) | requests/s | p50 ms | p99 ms | RSS MB |")
print("|---|---:|---:|---:|---:|")
print(row("Python FastAPI + sklearn", py))
print(row("bare axum, fixed answer", bare))
print(row("predict", pr))
print()
print(f"predict / Python       {res['ratio_vs_python']:8.1f}x   (target >= 50x)   {ok(res['ratio_vs_python'] >= 50)}")
print(f"predict / bare axum    {res['ratio_vs_bare']:8.2f}x   (target >= 0.8x)  {ok(res['ratio_vs_bare'] >= 0.8)}")
print(f"predict p99            {pr['p99_ms']:8.2f} ms  (target <= 5 ms)  {ok(pr['p99_ms'] <= 5)}")
print(f"cold start, median     {cold_runs[0]:8.2f} ms  (target <= 20 ms) {ok(cold_runs[0] <= 20)}   Python: {py_cold_runs[0]:.0f} ms")
print(f"RSS under load, peak   {max(pr['peak_rss_mb'], res['predict_vmhwm_mb']):8.1f} MB  (target <= 20 MB) {ok(max(pr['peak_rss_mb'], res['predict_vmhwm_mb']) <= 20)}")
if int(zip_bytes):
    print(f"Lambda zip             {zip_mb:8.2f} MB  (target <= 5 MB)  {ok(zip_mb <= 5)}")
else:
    print("Lambda zip             not built (run `make build-lambda` first)")
for name, r in (("python", py), ("bare", bare), ("predict", pr)):
    if r["non_2xx"] or r["socket_errors"]:
        print(f"warning: {name}: non-2xx {r['non_2xx']}, socket errors {r['socket_errors']}")
print("written: reports/bench-serve.json")
EOF

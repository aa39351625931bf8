# shellcheck shell=bash
# Sourced by tests/distributed.sh, tests/train-lambda.sh and bench/distributed/run.sh:
# builds trainer and train-worker, starts s3s-fs (data and store) and `cargo lambda watch`
# running train-worker, each on a free loopback port in a process group of its own, and
# exports what the trainer needs to reach them. The EXIT trap of background.sh stops them.
#
# Before sourcing, define `fail MESSAGE`; optionally set WATCH_CONCURRENCY (default 2) and
# WATCH_RELEASE=1 (the worker built with --release, for benchmarks).
# After: $work, $trainer, $s3dir (s3s-fs's data directory; bucket `bucket`), $store
# (s3://bucket/models), $watch_pid, and AWS_* in the environment.

command -v cargo-lambda >/dev/null || pip install --quiet cargo-lambda
command -v s3s-fs >/dev/null || [[ -x "$HOME/.cargo/bin/s3s-fs" ]] ||
    cargo install --locked s3s-fs --version 0.14.1 --features binary
s3s_fs="$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")"

# shellcheck source=SCRIPTDIR/../../predict/tests/background.sh
source functions/predict/tests/background.sh

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
release_flag=()
profile=debug
if [[ "${WATCH_RELEASE:-0}" == 1 ]]; then
    release_flag=(--release)
    profile=release
fi
cargo build --quiet "${release_flag[@]}" -p trainer --bin trainer -p train-worker --bin train-worker
# shellcheck disable=SC2034  # used by the sourcing scripts
trainer="$target_dir/$profile/trainer"

s3dir="$work/s3"
mkdir -p "$s3dir/bucket"
s3_port="$(free_port)"
export AWS_ACCESS_KEY_ID=test-key AWS_SECRET_ACCESS_KEY=test-secret AWS_REGION=us-east-1
start_in_background "$work/s3s-fs.log" "$s3s_fs" --host 127.0.0.1 --port "$s3_port" \
    --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$s3dir"
wait_until_ready "$started_pid" s3s-fs 30 port_open "$s3_port"
export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$s3_port"

# start_watch PORT: the emulator on PORT; sets $watch_pid.
start_watch() {
    start_in_background "$work/watch.log" cargo lambda watch "${release_flag[@]}" \
        --package train-worker --bin train-worker \
        --ignore-changes --invoke-address 127.0.0.1 --invoke-port "$1" \
        --concurrency "${WATCH_CONCURRENCY:-2}" \
        --env-var "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" \
        --env-var "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY" \
        --env-var "AWS_REGION=$AWS_REGION" --env-var "AWS_ENDPOINT_URL_S3=$AWS_ENDPOINT_URL_S3" \
        --env-var "RUST_LOG=info" --env-var "NO_COLOR=1"
    watch_pid="$started_pid"
    wait_until_ready "$watch_pid" "cargo lambda watch" 180 port_open "$1"
}
lambda_port="$(free_port)"
start_watch "$lambda_port"
export AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$lambda_port"
# shellcheck disable=SC2034  # used by the sourcing scripts
store="s3://bucket/models"

# worker_pids: the train-worker processes below the emulator started here (by ancestry,
# not by name: other train-workers on this machine are not ours).
worker_pids() {
    ps -eo pid=,ppid=,comm= | python3 -c '
import sys
root = int(sys.argv[1])
procs = [l.split(None, 2) for l in sys.stdin.read().splitlines()]
parent = {int(p): int(pp) for p, pp, _ in procs}
for p, _, comm in procs:
    p, up = int(p), int(p)
    while up in parent and up != root and up > 1:
        up = parent[up]
    if up == root and comm.strip() == "train-worker":
        print(p)
' "$watch_pid"
}

#!/usr/bin/env bash
# Distributed training against real components (`make test-distributed`, issue 18):
#   s3s-fs on loopback holds the data and the store; `cargo lambda watch --concurrency 2`
#   runs train-worker; the trainer binary is the coordinator.
#   1. digits: --mode lambda (CV tasks, then the refit here and over 1, 2 and 3 shards)
#      publishes the model of --mode seq and --mode par, bit for bit (same model_id);
#      on warm workers the log shows CV tasks overlapping in time; a second fit uploads nothing;
#   2. a generated 200k-row set: the data-parallel refit over 1, 2, 3 shards = seq;
#   3. a worker killed in the middle of a gradient task: retried, same model;
#   4. staged data changed on S3 after staging: refused, nothing published;
#   5. no such function: a clear error within seconds; a local store: refused.
# Everything started here is stopped by its process-group id on exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"

fail() {
    echo "test-distributed: FAIL: $*" >&2
    local log
    for log in "$work"/*.log; do
        [[ -f "$log" ]] || continue
        echo "--- $(basename "$log") (last 30 lines) ---" >&2
        tail -n 30 "$log" >&2
    done
    exit 1
}
ok() { echo "test-distributed: ok: $*"; }

# shellcheck source=SCRIPTDIR/emulators.sh
source functions/train-worker/tests/emulators.sh

# field FILE KEY: a top-level field of a JSON report.
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# fit RUN ARGS...: train (the model name is part of the model id: pass the same --name to
# runs that must agree), the report in $work/RUN.json.
fit() {
    local run="$1"
    shift
    "$trainer" fit --store "$store" --report "$work/$run.json" "$@" \
        >"$work/$run.out" 2>"$work/$run.err" ||
        { cat "$work/$run.err" >&2; fail "trainer fit $run $*"; }
}

# 1. digits: the default grid (5 folds x 8 alphas) in seq, par and lambda (CV tasks, the
# refit here); then one alpha (the refit alone) in seq and over 1, 2, 3 shards.
fit digits-seq --name digits --mode seq
fit digits-par --name digits --mode par --threads 2
want="$(field "$work/digits-seq.json" model_id)"
[[ "$(field "$work/digits-par.json" model_id)" == "$want" ]] || fail "par model_id differs from seq"
fit digits-lambda --name digits --mode lambda --function train-worker --concurrency 4
got="$(field "$work/digits-lambda.json" model_id)"
[[ "$got" == "$want" ]] || fail "digits --mode lambda: model_id $got, seq gave $want"
[[ "$(field "$work/digits-lambda.json" tasks)" == 5 ]] || fail "digits: not 5 CV tasks"
ok "digits, 5 folds x 8 alphas: --mode lambda = seq = par ($want)"
fit digits1-seq --name digits --mode seq --alphas 1
want="$(field "$work/digits1-seq.json" model_id)"
for shards in 1 2 3; do
    fit "digits-lambda-$shards" --name digits --mode lambda --function train-worker --alphas 1 --shards "$shards"
    got="$(field "$work/digits-lambda-$shards.json" model_id)"
    [[ "$got" == "$want" ]] || fail "digits --shards $shards: model_id $got, seq gave $want"
done
ok "digits, alpha 1: the data-parallel refit over 1, 2, 3 shards = seq ($want)"
# One shard holds every row: the same bytes as the CV object, found already.
grep -q "staged data found" "$work/digits-lambda-1.err" || fail "the second digits fit uploaded its data again"
ok "a second fit on the same data reuses the staged objects"

# Overlap, on warm workers: the shard runs above have started both emulator instances (on a
# cold emulator the second instance may still be starting while the first, optimised, runs
# all five folds in a few tens of milliseconds). The same model again.
from_line=$(($(wc -l <"$work/watch.log") + 1))
fit digits-lambda-warm --name digits --mode lambda --function train-worker --concurrency 4
[[ "$(field "$work/digits-lambda-warm.json" model_id)" == "$(field "$work/digits-lambda.json" model_id)" ]] ||
    fail "digits --mode lambda on warm workers: another model_id"
tail -n "+$from_line" "$work/watch.log" >"$work/watch-warm.txt"
python3 - "$work/watch-warm.txt" <<'PY' || fail "no two CV tasks overlapped in time"
import re, sys
spans = [(int(a), int(b)) for a, b in re.findall(r'cv start_ms=(\d+) end_ms=(\d+)', open(sys.argv[1]).read())]
assert len(spans) >= 5, spans
overlap = sum(1 for i, (a, b) in enumerate(spans) for (c, d) in spans[i + 1:] if a < d and c < b)
print(f"test-distributed: ok: {len(spans)} CV tasks in the workers' log, {overlap} overlapping pairs")
assert overlap > 0
PY

# 2. 200k generated rows, one alpha (the refit alone: every evaluation a round of tasks).
"$trainer" generate --rows 200000 --features 20 --classes 3 --seed 5 --out "$work/gen.csv" >/dev/null
gen=(--name gen --data "$work/gen.csv" --alphas 1 --max-iter 30)
fit gen-seq --mode seq "${gen[@]}"
want="$(field "$work/gen-seq.json" model_id)"
for shards in 1 2 3; do
    fit "gen-lambda-$shards" --mode lambda --function train-worker --shards "$shards" "${gen[@]}"
    got="$(field "$work/gen-lambda-$shards.json" model_id)"
    [[ "$got" == "$want" ]] || fail "200k rows --shards $shards: model_id $got, seq gave $want"
done
ok "200k rows: data-parallel refit over 1, 2, 3 shards = seq ($want)"

# 3. Faults in the middle of a gradient task, on a fit long enough (hundreds of rounds of a
# few ms each, with the trainer optimised) that the fault lands while it runs.
long=(--name gen-long --data "$work/gen.csv" --alphas 1 --max-iter 400 --tol 1e-12)
fit gen-long-seq --mode seq "${long[@]}"
want_long="$(field "$work/gen-long-seq.json" model_id)"

# Faults in the middle of a gradient task. wait_for_task PATTERN: until the workers' log
# (appended to since $1 lines) shows PATTERN.
wait_for_task() {
    for _ in $(seq 600); do
        tail -n "+$1" "$work/watch.log" | grep -q "$2" && return 0
        sleep 0.05
    done
    return 1
}

# 3a. Worker processes killed (SIGKILL) mid-task. cargo-lambda 1.9's emulator neither
# answers the lost invocations (it enforces no timeout) nor starts new workers, so every
# attempt ends at --task-timeout: the fit must stop with an error naming the task and the
# function, and publish nothing (not the last good point of its line search).
versions_before="$(find "$s3dir/bucket/models/gen-long" -name model.json | wc -l)"
lines_before="$(wc -l <"$work/watch.log")"
"$trainer" fit --store "$store" --report "$work/gen-killed.json" \
    --mode lambda --function train-worker --shards 2 --task-timeout 4 --retries 1 "${long[@]}" \
    >"$work/gen-killed.out" 2>"$work/gen-killed.err" &
fit_pid=$!
killed=""
if wait_for_task "$lines_before" 'gradient round 3 shard 0" gradient start_ms'; then
    for pid in $(worker_pids); do
        kill -KILL "$pid" && killed="$killed $pid"
    done
fi
[[ -n "$killed" ]] || fail "found no worker process to kill"
if wait "$fit_pid"; then fail "a fit whose workers were killed succeeded"; fi
grep -Eq 'task "gradient round [0-9]+ shard [01]" on function "train-worker" failed after 2 attempts' \
    "$work/gen-killed.err" || fail "the error does not name the task: $(tail -n 2 "$work/gen-killed.err")"
[[ "$(find "$s3dir/bucket/models/gen-long" -name model.json | wc -l)" == "$versions_before" ]] ||
    fail "a model was published by the failed fit"
ok "workers killed mid-task, none to retry on: $(tail -n 1 "$work/gen-killed.err" | cut -c1-140)...; nothing published"

# The emulator does not recover from 3a: start a fresh one on the same port.
kill -KILL -- "-$watch_pid" 2>/dev/null || true
start_watch "$lambda_port"

# 3b. The emulator and its workers killed mid-task, then started again on the same port:
# the coordinator's invocations fail (connection lost), its retries resend them to a new
# worker; same model.
lines_before="$(wc -l <"$work/watch.log")"
"$trainer" fit --store "$store" --report "$work/gen-retried.json" \
    --mode lambda --function train-worker --shards 2 --retries 8 "${long[@]}" \
    >"$work/gen-retried.out" 2>"$work/gen-retried.err" &
fit_pid=$!
wait_for_task "$lines_before" 'gradient round 3 shard 0" gradient start_ms' ||
    fail "round 3 never started"
kill -KILL -- "-$watch_pid" 2>/dev/null || true
start_watch "$lambda_port"
wait "$fit_pid" || { cat "$work/gen-retried.err" >&2; fail "the fit did not survive the emulator's restart"; }
retries="$(field "$work/gen-retried.json" retries)"
[[ "$retries" -ge 1 ]] || fail "the emulator was restarted mid-task but the report counts $retries retries"
[[ "$(field "$work/gen-retried.json" model_id)" == "$want_long" ]] || fail "the model after retries differs"
ok "the emulator killed and restarted mid-task: $retries retries, same model"

# 4. Staged data changed on S3 after staging: refused, nothing published. A fresh split
# (seed 9) staged by a fit whose function does not exist (it stages, then fails at its first
# task), so no worker has read or cached it; its objects are then overwritten, and the real
# fit finds them staged (uploads nothing) and hands the changed bytes to its workers.
if "$trainer" fit --store "$store" --name changed --mode lambda --function no-such-function \
    --shards 2 --seed 9 >"$work/stage-only.out" 2>"$work/stage-only.err"; then
    fail "a fit with no such function succeeded"
fi
grep -q "staged" "$work/stage-only.err" || fail "nothing staged: $(tail -n 2 "$work/stage-only.err")"
replaced=0
for f in "$s3dir"/bucket/models/_staging/*/*.bin; do
    [[ -f "$f" ]] || continue
    # The digits fits staged their objects with seed 42; only this split's are new.
    find "$f" -newer "$work/gen-retried.json" | grep -q . || continue
    # Written in s3s-fs's data directory, as a process with access to the bucket could:
    # same key, other bytes.
    head -c 100 /dev/urandom >"$f"
    replaced=$((replaced + 1))
done
[[ "$replaced" -ge 2 ]] || fail "found $replaced staged objects to change"
if "$trainer" fit --store "$store" --name changed --mode lambda --function train-worker \
    --shards 2 --seed 9 >"$work/changed.out" 2>"$work/changed.err"; then
    fail "a fit on changed staged data succeeded"
fi
grep -q "staged data found" "$work/changed.err" || fail "the fit staged its data again: $(head -n 3 "$work/changed.err")"
# Refused by the worker's sha256 check ("staged data changed"), or earlier by the S3
# client's checksum of the stored object; either way the error names the object.
grep -q "_staging/" "$work/changed.err" || fail "the error does not name the staged object: $(tail -n 3 "$work/changed.err")"
[[ ! -e "$s3dir/bucket/models/changed" ]] || fail "something was published under models/changed"
ok "staged data changed after staging: refused, nothing published: $(tail -n 1 "$work/changed.err" | cut -c1-160)..."

# 5. No such function; a local store.
started=$(date +%s)
if "$trainer" fit --store "$store" --name nofunc --mode lambda --function no-such-function \
    >"$work/nofunc.out" 2>"$work/nofunc.err"; then
    fail "a fit with no such function succeeded"
fi
took=$(($(date +%s) - started))
grep -q "no-such-function" "$work/nofunc.err" || fail "the error does not name the function: $(cat "$work/nofunc.err")"
[[ "$took" -le 15 ]] || fail "no such function took $took s to report"
ok "no such function: $(tail -n 1 "$work/nofunc.err") (${took} s)"
if "$trainer" fit --store "$work/local" --mode lambda --function train-worker >/dev/null 2>"$work/local.err"; then
    fail "--mode lambda with a local store succeeded"
fi
grep -q "needs an S3 store" "$work/local.err" || fail "local store: $(cat "$work/local.err")"
ok "a local store is refused: $(tail -n 1 "$work/local.err")"
echo "test-distributed: all passed"

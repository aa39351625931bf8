#!/usr/bin/env bash
# `make bench-distributed` (issue 18): the Lambda engine against local emulators, release
# builds (s3s-fs + `cargo lambda watch --release --concurrency $WATCH_CONCURRENCY`):
#   1. round trip of an empty task (`trainer ping`);
#   2. a data-parallel refit: per-round overhead (coordinator wall time minus the slowest
#      worker's compute) beside the compute;
#   3. wall time of --mode par and --mode lambda on digits (default grid: 5 CV tasks) and on
#      a generated set (BENCH_ROWS x BENCH_FEATURES x BENCH_CLASSES, BENCH_SHARDS shards),
#      with each worker's peak RSS against the whole feature matrix.
# Results as JSON in reports/bench-distributed.json and a summary on stdout. On a 2-core
# machine the "workers" share the coordinator's cores: the figures measure overheads, not
# the speed-up real Lambda workers (each with its own vCPU) would give; docs/distributed.md
# turns them into the on-paper table.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
fail() {
    echo "bench-distributed: FAIL: $*" >&2
    [[ -f "${work:-}/watch.log" ]] && tail -n 30 "$work/watch.log" >&2
    exit 1
}
export WATCH_RELEASE=1 WATCH_CONCURRENCY="${WATCH_CONCURRENCY:-4}"
rows="${BENCH_ROWS:-200000}" features="${BENCH_FEATURES:-50}" classes="${BENCH_CLASSES:-10}"
shards="${BENCH_SHARDS:-4}"
# shellcheck source=SCRIPTDIR/../../functions/train-worker/tests/emulators.sh
source functions/train-worker/tests/emulators.sh
mkdir -p reports

"$trainer" ping --function train-worker --count 50 >"$work/ping.json" || fail "trainer ping"

fit() { # RUN ARGS...
    local run="$1"
    shift
    "$trainer" fit --store "$store" --report "$work/$run.json" "$@" >/dev/null 2>"$work/$run.err" ||
        { cat "$work/$run.err" >&2; fail "trainer fit $run"; }
}
fit digits-par --mode par
fit digits-lambda --mode lambda --function train-worker --concurrency 5
fit digits-lambda-warm --mode lambda --function train-worker --concurrency 5
"$trainer" generate --rows "$rows" --features "$features" --classes "$classes" --seed 7 \
    --out "$work/gen.csv" >/dev/null
gen=(--name gen --data "$work/gen.csv" --alphas 1)
fit gen-par --mode par "${gen[@]}"
fit gen-lambda --mode lambda --function train-worker --shards "$shards" --concurrency "$shards" "${gen[@]}"

python3 - "$work" "$rows" "$features" "$classes" "$shards" <<'PY'
import json, statistics, sys, collections
work, rows, features, classes, shards = sys.argv[1], *map(int, sys.argv[2:])
load = lambda n: json.load(open(f"{work}/{n}.json"))
ping = load("ping")
out = {"ping": {k: ping[k] for k in ("count", "first_ms", "median_ms", "min_ms", "max_ms")}}
for n in ("digits-par", "digits-lambda", "digits-lambda-warm", "gen-par", "gen-lambda"):
    r = load(n)
    out[n] = {k: r.get(k) for k in ("mode", "fit_seconds", "cv_seconds", "refit_seconds", "load_seconds",
                                    "model_id", "evaluations", "tasks", "retries", "invoke_seconds",
                                    "rounds", "feature_matrix_bytes", "peak_rss_bytes", "n_train")}
assert out["digits-par"]["model_id"] == out["digits-lambda"]["model_id"], "digits models differ"
assert out["gen-par"]["model_id"] == out["gen-lambda"]["model_id"], "generated models differ"
g = load("gen-lambda")
rounds = collections.defaultdict(list)
for t in g["task_timings"]:
    if t["kind"] == "gradient":
        rounds[t["id"].split(" shard")[0]].append(t)
# A round's overhead: its wall time minus its slowest task's worker time. Compute: rounds in
# which no worker had to load its shard from S3 (a cold worker's first task reads and parses
# it; the emulator hands invocations to any of its instances, so loads spread over rounds).
over, comp, loads = [], [], 0
for ts in rounds.values():
    wall = max(t["seconds"] for t in ts)
    work_s = max(t["worker_seconds"] for t in ts)
    over.append(wall - work_s)
    loads += sum(1 for t in ts if t["loaded"])
    if not any(t["loaded"] for t in ts):
        comp.append(work_s)
out["round"] = {
    "rounds": len(over),
    "rounds_without_loads": len(comp),
    "shard_loads": loads,
    "overhead_ms_median": 1000 * statistics.median(over) if over else None,
    "compute_ms_median": 1000 * statistics.median(comp) if comp else None,
}
out["gen-lambda-task-timings"] = g["task_timings"]
peaks = [t["peak_rss_bytes"] for t in g["task_timings"] if t.get("peak_rss_bytes")]
out["worker_peak_rss_bytes_max"] = max(peaks) if peaks else None
out["whole_matrix_bytes"] = 8 * out["gen-lambda"]["n_train"] * features
out["shape"] = {"rows": rows, "features": features, "classes": classes, "shards": shards}
json.dump(out, open("reports/bench-distributed.json", "w"), indent=2)
p = out["ping"]
print(f"empty task round trip: median {p['median_ms']:.2f} ms (min {p['min_ms']:.2f}, max {p['max_ms']:.2f}; first {p['first_ms']:.1f} ms), {p['count']} sequential")
for n in ("digits-par", "digits-lambda", "digits-lambda-warm", "gen-par", "gen-lambda"):
    r = out[n]
    extra = f", {r['tasks']} tasks, {r['retries']} retries, invoke {r['invoke_seconds']:.3f} s" if r.get("tasks") else ""
    print(f"{n:>20}: fit {r['fit_seconds']:.3f} s (cv {r['cv_seconds']:.3f}, refit {r['refit_seconds']:.3f}){extra}")
rd = out["round"]
cm = rd["compute_ms_median"]
print(f"data-parallel refit, {rows} x {features} x {classes}, {shards} shards: {rd['rounds']} rounds, {rd['shard_loads']} shard loads; "
      f"per round {rd['overhead_ms_median']:.1f} ms overhead (median), "
      + (f"{cm:.1f} ms worker compute (median of {rd['rounds_without_loads']} rounds without loads)" if cm is not None else "no round without a load"))
if out["worker_peak_rss_bytes_max"]:
    print(f"worker peak RSS {out['worker_peak_rss_bytes_max'] / 1e6:.1f} MB vs the whole matrix {out['whole_matrix_bytes'] / 1e6:.1f} MB")
print("report: reports/bench-distributed.json")
PY

#!/usr/bin/env bash
# `make train-lambda`: one distributed fit (--mode lambda) of TRAINER_DATA (default
# data/digits.csv) against local emulators: s3s-fs holds the staged data and the store,
# `cargo lambda watch` runs train-worker. Both are started here and stopped on exit.
# Extra arguments go to `trainer fit` (e.g. --shards 2 --concurrency 4).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
fail() {
    echo "train-lambda: FAIL: $*" >&2
    [[ -f "${work:-}/watch.log" ]] && tail -n 30 "$work/watch.log" >&2
    exit 1
}
# shellcheck source=SCRIPTDIR/emulators.sh
source functions/train-worker/tests/emulators.sh
"$trainer" fit --store "$store" --mode lambda --function train-worker "$@" ||
    fail "trainer fit --mode lambda"
echo "train-lambda: the model is in the emulated store, removed on exit; tasks per worker:"
grep -c ' ok$' "$work/watch.log" | sed 's/^/  tasks logged by the workers: /'

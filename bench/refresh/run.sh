#!/usr/bin/env bash
# `make bench-refresh`: live model refresh (issue 17) against the release `predict` on
# loopback, with a local store and, when s3s-fs is installed, with the model in s3s-fs:
# publish -> first answer from the new version (median of TRIALS, split into poll phase and
# load + verify + swap), wrk p50 / p99 while `latest` moves every 2 s vs the same run with
# no-op publishes (side by side, alternating), and the store requests of an unchanged model
# (S3). See bench/refresh/bench.py. Writes reports/bench-refresh.json.
#
# Environment: TRIALS (10), DURATION (wrk seconds, 10), ROUNDS (steady/swaps pairs, 4),
# WINDOW (idle seconds, 30), STORES (local,s3; s3 only when s3s-fs is installed),
# PREDICT_BIN / TRAINER_BIN (other builds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

command -v wrk >/dev/null || { echo "bench-refresh: wrk is missing (make tools)" >&2; exit 1; }
if [[ -z "${PREDICT_BIN:-}" || -z "${TRAINER_BIN:-}" ]]; then
    echo "bench-refresh: building (release)"
    cargo build --quiet --release --locked -p predict -p trainer --bin predict --bin trainer
fi
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

stores="${STORES:-local,s3}"
if [[ ",$stores," == *,s3,* ]] && ! command -v s3s-fs >/dev/null; then
    if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    else
        echo "bench-refresh: s3s-fs is not installed (make tool-s3s-fs); local store only"
        stores=local
    fi
fi

mkdir -p reports
exec python3 bench/refresh/bench.py \
    --predict "${PREDICT_BIN:-$target_dir/release/predict}" \
    --trainer "${TRAINER_BIN:-$target_dir/release/trainer}" \
    --stores "$stores" --trials "${TRIALS:-10}" --duration "${DURATION:-10}" \
    --rounds "${ROUNDS:-4}" --window "${WINDOW:-30}" --json reports/bench-refresh.json

#!/usr/bin/env bash
# `make bench-s3`: build the release binaries, then bench/s3/bench.py (see its docstring).
# PREDICT_BIN / TRAINER_BIN point it at other builds.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${PREDICT_BIN:-}" || -z "${TRAINER_BIN:-}" ]]; then
  cargo build --release --locked -p predict -p trainer
fi
mkdir -p reports
python3 bench/s3/bench.py \
  --trainer "${TRAINER_BIN:-target/release/trainer}" \
  --predict "${PREDICT_BIN:-target/release/predict}" \
  --runs "${RUNS:-10}" --json reports/bench-s3.json

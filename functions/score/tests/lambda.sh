#!/usr/bin/env bash
# The score function under `cargo lambda watch` on s3s-fs, compared with predict
# (make test-score; see lambda_test.py for the steps). SCORE_LARGE_MB sets the size of the
# file scored under the memory cap SCORE_RSS_CAP_MB (make test-score-1g: 1024 MiB).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
command -v cargo-lambda >/dev/null || pip install --quiet cargo-lambda
python3 -c 'import boto3' 2>/dev/null || pip install --quiet boto3
# Build first, so no invocation waits on a build.
cargo build --quiet -p predict --bin predict -p score --bin score
exec python3 functions/score/tests/lambda_test.py

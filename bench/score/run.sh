#!/usr/bin/env bash
# make bench-score: build the score binary (release) and run bench.py (see its docstring).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
cargo build --release --quiet -p score --bin score
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
exec python3 bench/score/bench.py --score "$target_dir/release/score" "$@"

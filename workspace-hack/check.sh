#!/usr/bin/env bash
# Fails when a member built on its own (`cargo build -p M`, as the images, cargo-lambda and
# `make train-*` do) would resolve a dependency with other features than the workspace's test
# build, i.e. when workspace-hack/Cargo.toml has fallen out of step and a command would
# compile that dependency (and everything above it) a second time.
# Prints each such package with the features the member's own build gives it; add those
# features to workspace-hack/Cargo.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}

# Differences that are there on purpose (see workspace-hack/Cargo.toml): regex's unicode
# tables (only a dev-dependency wants them) and storage's dev-only `test-server` feature.
allowed='^(regex-automata|regex-syntax) |^storage v'

tree() {
    "$CARGO" tree --locked "$@" -f '{p} [{f}]' --prefix none | sed 's/ (\*)$//' | sort -u
}

ws=$(mktemp)
trap 'rm -f "$ws"' EXIT
tree --workspace -e normal,build,dev >"$ws"
status=0
for member in $("$CARGO" metadata --locked --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(*(p["name"] for p in json.load(sys.stdin)["packages"] if p["name"] != "workspace-hack"))'); do
    diff=$(tree -p "$member" -e normal,build | comm -23 - "$ws" | grep -Ev "$allowed" || true)
    if [[ -n $diff ]]; then
        echo "workspace-hack: \`cargo build -p $member\` resolves these with other features than the test build:" >&2
        while IFS= read -r line; do
            echo "  $line" >&2
        done <<<"$diff"
        status=1
    fi
done
if [[ $status -eq 0 ]]; then
    echo "workspace-hack: every member's own build resolves the test build's features"
fi
exit $status

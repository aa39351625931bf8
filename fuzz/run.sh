#!/usr/bin/env bash
# `make fuzz`: build the fuzz targets with cargo-fuzz on stable Rust (no sanitizer), replay the
# saved reproducers, then fuzz each target for FUZZ_SECONDS and print, per target, the
# executions done and whether it crashed. Exits non-zero if any target crashed (or any saved
# reproducer still does). See fuzz/README.md.
#
#   FUZZ_SECONDS   seconds of fuzzing per target (default 60)
#   FUZZ_TARGETS   targets to run (default: every target in fuzz/fuzz_targets/)
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-$(for f in fuzz_targets/*.rs; do basename "$f" .rs; done)}
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=target/$host/release

# libFuzzer options for every target:
# - rss_limit_mb: the whole process's peak RSS (libFuzzer's own thread checks it; works
#   without a sanitizer): catches memory that piles up over many requests.
# - malloc_limit_mb: one allocation over 64 MB. libFuzzer sees allocations only through a
#   sanitizer's hooks, so this applies to FUZZ_SANITIZER=address builds only; the per-input
#   budget of src/lib.rs is what bounds allocations in the default build.
# - timeout: one input taking 10 s is a finding too (a request could starve the server).
common=(-rss_limit_mb=1024 -malloc_limit_mb=64 -timeout=10 -print_final_stats=1)
# Inputs up to 1 MiB (+ the route's selector bytes and a little past the body limit, for
# the routes target); libFuzzer grows lengths gradually, so a short run stays on small ones.
max_len() {
    case $1 in
    routes) echo $((1024 * 1024 + 16)) ;;
    *) echo $((1024 * 1024)) ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
# --sanitizer none: the address sanitizer (cargo-fuzz's default) needs -Zsanitizer, a
# nightly-only flag. Everything else cargo-fuzz passes is stable.
cargo fuzz build --sanitizer "${FUZZ_SANITIZER:-none}" --target-dir target

failed=0
summary=()
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    # Saved reproducers first, one process each (libFuzzer stops at the first crash).
    for r in regressions/"$t"/*; do
        [[ -f $r ]] || continue
        if "$bin_dir/$t" "${common[@]}" "$r" >"artifacts/$t/replay.log" 2>&1; then
            summary+=("$(printf '%-9s reproducer %s: fixed' "$t" "$r")")
        else
            summary+=("$(printf '%-9s reproducer %s: STILL CRASHES' "$t" "$r")")
            failed=1
        fi
    done
    log=artifacts/$t/fuzz.log
    # libFuzzer takes one dictionary: the JSON one and the target's own.
    cat dicts/json.dict "dicts/$t.dict" >"artifacts/$t/dict" 2>/dev/null || true
    rm -f "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* "artifacts/$t"/slow-unit-*
    echo "fuzz: $t for ${seconds}s (log: fuzz/$log)"
    rc=0
    "$bin_dir/$t" "${common[@]}" -max_len="$(max_len "$t")" -max_total_time="$seconds" \
        -dict="artifacts/$t/dict" -artifact_prefix="artifacts/$t/" "corpus/$t" "seeds/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log" | tail -n 1)
    if [[ $rc -eq 0 ]]; then
        verdict="no crash"
    else
        failed=1
        kind=$(grep -m 1 -oE 'ERROR: libFuzzer: [a-z -]+|memory allocation of [0-9]+ bytes failed|panicked at [^ ]+' "$log" || true)
        input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | head -n 1)
        verdict="CRASH (exit $rc): ${kind:-see the log}; input fuzz/${input:-?}"
    fi
    summary+=("$(printf '%-9s %10s execs  %s' "$t" "${execs:-?}" "$verdict")")
done

echo
echo "fuzz summary (${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
exit "$failed"

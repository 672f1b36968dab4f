#!/usr/bin/env bash
# tests/run.sh - runs every test program and script and ends with "N passed, N failed[, N skipped]".
#
# Test programs: build/tests/test_* (C unit tests, harness.c) and tests/integration/*.sh,
# tests/check/*.sh. Each prints TAP-style lines; a program that exits non-zero without
# reporting a failure (a crash) counts as one failure of its own.
#
# RC_TEST_ONLY="glob glob ...": run only the programs and scripts whose name (without directory
# and .sh) matches one of the shell globs, e.g. "reliability_* attack_scenarios" (make
# test-reliability uses it). Unset: run everything.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
passed=0 failed=0 skipped=0
failures=()

selected() {
    [ -z "${RC_TEST_ONLY:-}" ] && return 0
    local g
    for g in $RC_TEST_ONLY; do
        # shellcheck disable=SC2254 # the pattern is meant to be a glob
        case "$1" in $g) return 0 ;; esac
    done
    return 1
}

run_one() {
    local name=$1; shift
    local out rc line
    out=$(RC_TEST_SUITE=$name timeout "${RC_TEST_TIMEOUT:-600}" "$@" 2>&1)
    rc=$?
    local saw_fail=0 results=0 detail=()
    # A test's "#" detail lines may come before or after its result line: keep the ones since
    # the last result and print them under a failure.
    while IFS= read -r line; do
        case "$line" in
        "ok - "*"# SKIP"*) skipped=$((skipped + 1)); results=$((results + 1)); echo "$line"; detail=() ;;
        "ok - "*) passed=$((passed + 1)); results=$((results + 1)); detail=()
            [ -n "${VERBOSE:-}" ] && echo "$line" ;;
        "not ok - "*) failed=$((failed + 1)); results=$((results + 1)); saw_fail=1
            failures+=("${line#not ok - }"); echo "$line"
            [ ${#detail[@]} -gt 0 ] && printf '%s\n' "${detail[@]}"; detail=() ;;
        "#"*) if [ -n "${VERBOSE:-}" ]; then echo "$line"; elif [ $saw_fail -eq 1 ] && [ ${#detail[@]} -eq 0 ]; then echo "$line"; else detail+=("$line"); fi ;;
        *) [ -n "${VERBOSE:-}" ] && echo "  $line" ;;
        esac
    done <<<"$out"
    if [ $rc -eq 0 ] && [ $results -eq 0 ]; then
        failed=$((failed + 1)); failures+=("$name (reported no results)")
        echo "not ok - $name reported no test results"
    fi
    if [ $rc -ne 0 ] && [ $saw_fail -eq 0 ]; then
        failed=$((failed + 1)); failures+=("$name (exit status $rc)")
        echo "not ok - $name exited with status $rc"
        echo "$out" | tail -n 20 | sed 's/^/#   /'
    fi
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    selected "$(basename "$t")" || continue
    run_one "$(basename "$t")" "$t"
done
for t in tests/check/*.sh tests/integration/*.sh; do
    [ -f "$t" ] || continue
    case "$t" in *_lib.sh) continue ;; esac # helpers sourced by the tests, not tests
    selected "$(basename "$t" .sh)" || continue
    run_one "$(basename "$t" .sh)" env BUILD="$BUILD" bash "$t"
done

if [ ${#failures[@]} -gt 0 ]; then
    echo "failed:"
    printf '  %s\n' "${failures[@]}"
fi
if [ $skipped -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ $failed -eq 0 ]

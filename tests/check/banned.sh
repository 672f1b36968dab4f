#!/usr/bin/env bash
# tests/check/banned.sh - the banned-function / close-on-exec check passes on the project and
# still catches every rule on a known-bad sample (so it cannot pass vacuously).
cd "$(dirname "$0")/../.."
. tests/lib.sh

if out=$(scripts/check-banned.py 2>&1); then
    t_ok tree_clean
else
    t_fail tree_clean "$out"
fi

sample=$(mktemp --suffix=.c)
trap 'rm -f "$sample"' EXIT
cp tests/check/banned-sample.c.txt "$sample"
out=$(scripts/check-banned.py "$sample")
for rule in "banned function sprintf" "banned function strcpy" "banned function atoi" \
    "open() without a CLOEXEC" "socket() without a CLOEXEC" "fopen() mode without 'e'" \
    "memcmp() on a secret-like"; do
    if grep -qF "$rule" <<<"$out"; then t_ok "catches: $rule"; else t_fail "catches: $rule"; fi
done
# Comments, strings, CLOEXEC calls split over lines and opted-out lines are not findings.
if [ "$(wc -l <<<"$out")" -eq 7 ]; then t_ok no_false_positives; else t_fail no_false_positives "$out"; fi
t_done

#!/usr/bin/env bash
# tests/integration/webhook_cli.sh - runcell-webhook's body handling at and over its 1 MiB cap
# (a regression: reading past the reserved chunk corrupted the heap on large regular files).
cd "$(dirname "$0")/../.."
. tests/lib.sh
BUILD=${BUILD:-build}
cli=$BUILD/runcell-webhook
export ANTHROPIC_WEBHOOK_SIGNING_KEY=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -x "$cli" ]; then t_skip setup "$cli not built"; t_done; fi

head -c 1048576 /dev/zero | tr '\0' a >"$tmp/max"
head -c 1572864 /dev/zero | tr '\0' a >"$tmp/over"
sig=$("$cli" sign --id msg_1 --timestamp 1700000000 <"$tmp/max" 2>/dev/null)
if [[ $sig == v1,* ]]; then t_ok body_at_cap_signed; else t_fail body_at_cap_signed "got '$sig'"; fi
if "$cli" verify --id msg_1 --timestamp 1700000000 --now 1700000000 --signature "$sig" <"$tmp/max" 2>/dev/null; then
    t_ok body_at_cap_verifies
else
    t_fail body_at_cap_verifies
fi
out=$("$cli" sign --id msg_1 --timestamp 1 <"$tmp/over" 2>&1)
rc=$?
if [ $rc -eq 2 ] && grep -q "exceeds 1048576 bytes" <<<"$out"; then t_ok body_over_cap_refused; else t_fail body_over_cap_refused "rc=$rc: $out"; fi
out=$(head -c 1572864 /dev/zero | "$cli" sign --id msg_1 --timestamp 1 2>&1)
rc=$?
if [ $rc -eq 2 ]; then t_ok piped_body_over_cap_refused; else t_fail piped_body_over_cap_refused "rc=$rc: $out"; fi
t_done

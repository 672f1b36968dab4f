#!/usr/bin/env bash
# tests/integration/parity.sh - `make test`'s entry to the parity check
# (tests/conformance/parity.sh): for every scenario in tests/scenarios, the tool result texts of
# runcell-runner and of the official SDK worker, compared call by call on the same emulator,
# every difference either listed in tests/conformance/parity-allow.json or a failure. Says
# "skipped" (with the reason) when the emulator or runner is not built or the SDK cannot be
# installed.
exec "$(dirname "$0")/../conformance/parity.sh" "$@"

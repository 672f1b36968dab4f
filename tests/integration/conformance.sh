#!/usr/bin/env bash
# tests/integration/conformance.sh - `make test`'s entry to the official-SDK conformance run
# (tests/conformance/run.sh): every scenario in tests/scenarios played by the SDK's
# EnvironmentWorker against runcell-emulator. Says "skipped" (with the reason) when the emulator
# is not built or the npm registry is unreachable.
exec "$(dirname "$0")/../conformance/run.sh" "$@"

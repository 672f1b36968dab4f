#!/usr/bin/env bash
# scripts/demo.sh - `make demo`: the main job on one machine, no account needed.
#
# Target flow (docs/ARCHITECTURE.md): start runcell-emulator with a scripted agent, start an
# unprivileged nginx with nginx/test.conf in front of runcell-fcgi, start runcell-launcher, create an
# environment, agent and session, and watch the scripted agent's tool calls run in a runc container.
# Until the emulator (issue 3) and the control plane (issue 7) land, this says so and fails.
set -u
cd "$(dirname "$0")/.."
missing=()
for b in runcell-emulator runcell-fcgi runcell-launcher runcell-runner; do
    [ -x "build/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -gt 0 ]; then
    cat >&2 <<MSG
make demo: not available yet.
It will: start runcell-emulator (the local Managed Agents API), nginx -> runcell-fcgi (webhooks),
runcell-launcher (one runc container per session), create an environment, an agent and a session,
and show the scripted agent's tool calls executing inside the container.
Missing binaries: ${missing[*]} (see the open issues: emulator, runner, control plane).
MSG
    exit 2
fi
echo "make demo: all binaries present; the demo flow lands with the control plane (issue 7)" >&2
exit 2

#!/usr/bin/env bash
# tests/integration/launcher_activation.sh - runcell-launcher under real systemd-socket-activate
# (the way runcell-launcher.socket starts it): it takes the SOCK_SEQPACKET socket passed as fd 3
# instead of binding its own, serves `runcell status` through it, and leaves the socket file in
# place on exit (systemd owns it, so a restart loses no delivery).
cd "$(dirname "$0")/../.."
. tests/lib.sh
BUILD=${BUILD:-build}
LAUNCHER=$BUILD/runcell-launcher CLI=$BUILD/runcell
if [ "$(id -u)" != 0 ]; then t_skip all "needs root (the launcher is a root daemon)"; t_done; fi
for b in "$LAUNCHER" "$CLI"; do [ -x "$b" ] || { t_skip all "$b not built"; t_done; }; done
command -v systemd-socket-activate >/dev/null || { t_skip all "systemd-socket-activate not installed"; t_done; }
D=$(mktemp -d /tmp/rc-lact.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    for m in $(awk -v p="$D/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$m" 2>/dev/null
    done
    rm -rf "$D"
}
trap cleanup EXIT
SOCK=$D/launcher.sock
mkdir -p "$D/rootfs/bin" && echo demo >"$D/rootfs/bin/placeholder"
tar -C "$D/rootfs" -cf "$D/snap.tar" . # any snapshot: no session is started here
export RUNCELL_SNAPSHOT=$D/snap.tar RUNCELL_STATE_DIR=$D/state RUNCELL_RUN_DIR=$D/run RUNCELL_LAUNCHER_SOCKET=$SOCK \
    ANTHROPIC_BASE_URL=http://127.0.0.1:9 RUNCELL_CAPACITY=3
systemd-socket-activate --seqpacket -l "$SOCK" -E RUNCELL_SNAPSHOT -E RUNCELL_STATE_DIR -E RUNCELL_RUN_DIR \
    -E RUNCELL_LAUNCHER_SOCKET -E ANTHROPIC_BASE_URL -E RUNCELL_CAPACITY \
    "$LAUNCHER" >"$D/log" 2>&1 &
PID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
out=$(RUNCELL_LAUNCHER_SOCKET=$SOCK timeout 20 "$CLI" status 2>&1)
if grep -q "capacity" <<<"$out" && grep -q 3 <<<"$out"; then t_ok status_through_activated_socket; else t_fail status_through_activated_socket "$out; $(tail -n 5 "$D/log")"; fi
if grep -q "(from systemd)" "$D/log"; then t_ok took_fd3; else t_fail took_fd3 "$(tail -n 5 "$D/log")"; fi
if kill -0 "$PID" 2>/dev/null; then t_ok still_serving; else t_fail still_serving "$(tail -n 3 "$D/log")"; fi
kill "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
PID=
if grep -q "(from systemd)" "$D/log" && [ -S "$SOCK" ]; then t_ok socket_kept_on_exit; else t_fail socket_kept_on_exit "the activated socket file was removed"; fi
t_done

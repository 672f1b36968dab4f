#!/usr/bin/env bash
# tests/integration/oci_keyring.sh - containers do not spend the kernel key quota of the uid
# every session's root is mapped to (real runc, as root). runc's default gives each container a
# new session keyring owned by that shared host uid; with the kernel's default quota (200 keys
# per uid) a host would then stop starting sessions at about 200. rc_runc_create runs
# `runc create --no-new-keyring` from a fresh anonymous session keyring made by root instead, so
# each container gets an empty keyring of its own and the mapped uid's count does not grow.
# shellcheck source=tests/integration/oci_lib.sh
. "$(dirname "$0")/oci_lib.sh"

oci_require
oci_setup

# qnkeys UID: keys charged to UID's quota (/proc/key-users: "uid: usage n/ni qn/max ..."), 0
# when the uid has none.
qnkeys() {
    awk -v u="$1:" '$1 == u {split($4, a, "/"); print a[1]; f = 1} END {if (!f) print 0}' /proc/key-users
}

oci_bundle probe
P=$(oci_session probe)
oci run "$P" -- /bin/cat /proc/self/uid_map >"$OCI_T/map.out" 2>&1
HOST_UID=$(awk '$1 == 0 {print $2}' "$OCI_T/map.out")
if [ -z "$HOST_UID" ] || [ "$HOST_UID" = 0 ]; then
    t_fail mapped_uid "no user namespace mapping seen: $(head -c 200 "$OCI_T/map.out")"
    t_done
fi
t_ok mapped_uid

before=$(qnkeys "$HOST_UID")
pids=()
for i in 1 2 3 4; do
    oci_bundle "k$i"
    oci run "$(oci_session "k$i")" -- /bin/sleep 4 >/dev/null 2>&1 &
    pids+=($!)
done
# Wait until all four inits run (runc state), then count.
for _ in $(seq 100); do
    n=0
    for d in "$OCI_T"/state/runc/*k[1-4]; do [ -d "$d" ] && n=$((n + 1)); done
    [ "$n" -ge 4 ] && break
    sleep 0.1
done
during=$(qnkeys "$HOST_UID")
check_eq four_containers_running "$n" 4
check_eq no_key_charged_to_mapped_root "$during" "$before"
wait "${pids[@]}"
check_eq containers_exit_cleanly "$(pgrep -fc "runc --root $OCI_T/state/runc" || true)" 0
t_done

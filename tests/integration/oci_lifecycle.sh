#!/usr/bin/env bash
# tests/integration/oci_lifecycle.sh - bundles and containers over their life (issue 5):
# create->start->exit->delete leaves no mount, cgroup, runc state or bundle; the workspace
# survives a re-claim and goes with the retention policy; two sessions from one snapshot share
# the one extracted tree; runc does not stay behind a detached container; an outside `rm` stops a
# running one; the overlay root is writable without touching the snapshot; a joined network
# namespace is used as given; container output is capped. Real runc, as root.
. "$(dirname "$0")/oci_lib.sh"

oci_require
oci_setup

ST=$OCI_T/state
SNAPDIR=$OCI_SNAPDIR

# Everything runcell may leave behind for one session.
leftovers() {
    local s=$1 out=
    [ -e "$ST/bundles/$s" ] && out="$out bundle"
    [ -e "$ST/runc/$s" ] && out="$out runc-state"
    ls -d /sys/fs/cgroup/*/"$OCI_CGROUP_PARENT/$s" /sys/fs/cgroup/"$OCI_CGROUP_PARENT/$s" \
        >/dev/null 2>&1 && out="$out cgroup"
    oci_mounts | grep -q "/bundles/$s/" && out="$out mount"
    echo "${out# }"
}

# ---- create -> start -> exit -> delete ----
A=$(oci_session a)
oci_bundle a
t_check bundle_dir_exists test -f "$ST/bundles/$A/config.json"
t_check config_is_private test "$(stat -c %a "$ST/bundles/$A/config.json")" = 600
t_check rootfs_idmapped_mount bash -c "grep -q ' $ST/bundles/$A/rootfs .*idmapped' /proc/self/mountinfo"
echo hello >"$OCI_T/hello"
oci run "$A" -- /bin/oci_probe as-agent /bin/sh -c 'echo from-a > /workspace/keep.txt; echo out-a' >"$OCI_T/a.out" 2>&1
check_eq run_exit_0 "$?" 0
t_check stdout_echoed grep -q '^out-a$' "$OCI_T/a.out"
t_check output_log_written grep -q '^out-a$' "$ST/bundles/$A/output.log"
check_eq container_gone_after_run "$(leftovers "$A" | sed 's/bundle//; s/mount//; s/^ *//')" ""
oci rm "$A"
check_eq rm_exit_0 "$?" 0
check_eq nothing_left_after_rm "$(leftovers "$A")" ""
t_check workspace_kept_after_rm test -f "$ST/workspaces/$A/data/keep.txt"
t_check workspace_marked_ended test -f "$ST/workspaces/$A/ended"

# ---- re-claim: the agent finds its files ----
oci_bundle a
t_check reclaim_bundle_create test -f "$ST/bundles/$A/config.json"
t_check reclaim_clears_end_mark test ! -e "$ST/workspaces/$A/ended"
oci run "$A" -- /bin/cat /workspace/keep.txt >"$OCI_T/reclaim.out" 2>&1
check_eq reclaim_sees_workspace "$(cat "$OCI_T/reclaim.out")" from-a
oci bundle create "$A" --snapshot "$OCI_DIGEST" >/dev/null 2>"$OCI_T/dup.err"
check_eq second_create_refused "$?" 1
t_check second_create_message grep -q 'already exists' "$OCI_T/dup.err"

# ---- retention ----
out=$(oci workspace prune --retention 0)
check_eq prune_keeps_live_session "$out" "removed 0 workspaces"
oci rm "$A" >/dev/null 2>&1
out=$(oci workspace prune --retention 3600)
check_eq prune_respects_retention "$out" "removed 0 workspaces"
out=$(oci workspace prune --retention 0)
check_eq prune_removes_ended "$out" "removed 1 workspace"
t_check workspace_gone test ! -e "$ST/workspaces/$A"

# ---- two sessions at once share one extracted snapshot ----
oci snapshot import "$OCI_TAR" >/dev/null 2>&1
check_eq reimport_extracts_once "$(ls "$ST/snapshots/sha256" | wc -l)" 1
B=$(oci_session b)
C=$(oci_session c)
oci_bundle b
oci_bundle c
oci run "$B" -- /bin/sh -c 'stat -c %i /bin/busybox; sleep 3' >"$OCI_T/b.out" 2>&1 &
PB=$!
oci run "$C" -- /bin/sh -c 'stat -c %i /bin/busybox; sleep 3' >"$OCI_T/c.out" 2>&1 &
PC=$!
sleep 1.5
check_eq b_running "$(oci state "$B" | cut -d' ' -f1)" running
check_eq c_running "$(oci state "$C" | cut -d' ' -f1)" running
# Detached: once started, no runc process stays behind for either container.
if pgrep -f "runc --root $ST/runc" >/dev/null; then t_fail no_runc_process_stays "$(pgrep -af "runc --root $ST/runc")"; else
    t_ok no_runc_process_stays; fi
check_eq snapshot_held_while_running "$(oci snapshot ls | awk 'NR == 2 {print $6}')" yes
wait $PB $PC
host_ino=$(stat -c %i "$SNAPDIR/bin/busybox")
check_eq b_uses_shared_tree "$(head -n 1 "$OCI_T/b.out")" "$host_ino"
check_eq c_uses_shared_tree "$(head -n 1 "$OCI_T/c.out")" "$host_ino"
check_eq b_root_path "$(sed -n 's/^[[:space:]]*"path":[[:space:]]*"\([^"]*\)".*/\1/p' "$ST/bundles/$B/config.json" | head -n 1)" \
    "$ST/bundles/$B/rootfs"
oci rm "$B" --purge-workspace >/dev/null 2>&1
oci rm "$C" --purge-workspace >/dev/null 2>&1
check_eq b_nothing_left "$(leftovers "$B")" ""
check_eq c_nothing_left "$(leftovers "$C")" ""

#-- -- rm from another process stops a running container -- --
D=$(oci_session d)
oci_bundle d
oci run "$D" -- /bin/sleep 300 >/dev/null 2>&1 &
PD=$!
sleep 1
check_eq d_running "$(oci state "$D" | cut -d' ' -f1)" running
start=$(date +%s)
oci rm "$D" --grace 1 >/dev/null 2>"$OCI_T/rmd.err"
check_eq rm_running_exit_0 "$?" 0
wait $PD
check_eq run_sees_kill_137 "$?" 137
if [ $(($(date +%s) - start)) -lt 60 ]; then t_ok rm_running_in_time; else t_fail rm_running_in_time; fi
check_eq d_nothing_left "$(leftovers "$D")" ""

#-- -- overlay : a writable root that leaves the snapshot alone -- --
E=$(oci_session e)
oci_bundle e --writable-root
t_check overlay_mounted bash -c "grep -q ' $ST/bundles/$E/overlay/merged .* overlay ' /proc/self/mountinfo"
oci run "$E" -- /bin/sh -c 'echo x > /installed && mkdir -p /opt/pkg && echo ok' >"$OCI_T/e.out" 2>&1
check_eq overlay_root_writable "$(tail -n 1 "$OCI_T/e.out")" ok
oci run "$E" -- /bin/cat /installed >"$OCI_T/e2.out" 2>&1
check_eq overlay_upper_kept_between_runs "$(cat "$OCI_T/e2.out")" x
t_check overlay_write_in_upper test -f "$ST/bundles/$E/overlay/upper/installed"
t_check snapshot_untouched test ! -e "$SNAPDIR/installed"
oci rm "$E" --purge-workspace >/dev/null 2>&1
check_eq overlay_nothing_left "$(leftovers "$E")" ""

#-- -- a joined network namespace -- --
if command -v ip >/dev/null && ip netns add "rcoci$$" 2>/dev/null; then
    F=$(oci_session f)
    oci_bundle f --netns "/run/netns/rcoci$$"
    oci run "$F" -- /bin/sh -c 'readlink /proc/self/ns/net; /bin/oci_probe | grep "^net="' >"$OCI_T/f.out" 2>&1
    check_eq joined_netns "$(head -n 1 "$OCI_T/f.out")" "net:[$(stat -L -c %i "/run/netns/rcoci$$")]"
    check_eq joined_netns_only_lo "$(sed -n 2p "$OCI_T/f.out")" net=lo
    oci rm "$F" --purge-workspace >/dev/null 2>&1
    ip netns del "rcoci$$"
else
    t_skip joined_netns "ip netns unavailable"
fi

#-- -- container output is capped -- --
G=$(oci_session g)
oci_bundle g
oci run "$G" --output-max 64K -- /bin/sh -c 'yes 0123456789 | head -c 3000000' >/dev/null 2>&1
size=$(stat -c %s "$ST/bundles/$G/output.log")
if [ "$size" -ge 65536 ] && [ "$size" -lt 66000 ]; then t_ok output_log_capped; else
    t_fail output_log_capped "output.log is $size bytes for a 64 KiB cap"; fi
t_check output_cap_marker grep -q 'output cap reached' "$ST/bundles/$G/output.log"
oci rm "$G" --purge-workspace >/dev/null 2>&1

#-- -- snapshot prune keeps what bundles use -- --
H=$(oci_session h)
oci_bundle h
oci snapshot prune --older-than 0 >/dev/null 2>&1
check_eq prune_keeps_snapshot_of_a_bundle "$(ls "$ST/snapshots/sha256" | wc -l)" 1
oci run "$H" -- /bin/true >/dev/null 2>&1
check_eq bundle_runs_after_prune "$?" 0
oci rm "$H" --purge-workspace >/dev/null 2>&1
oci snapshot prune --older-than 0 >/dev/null 2>&1
check_eq prune_removes_unused_snapshot "$(ls "$ST/snapshots/sha256" | wc -l)" 0

t_done

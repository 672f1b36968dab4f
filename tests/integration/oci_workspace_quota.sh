#!/usr/bin/env bash
# tests/integration/oci_workspace_quota.sh - per-session workspace size cap (docs/OCI.md
# "Workspace size cap"): `bundle create --workspace-size` makes <state>/workspaces/<s>/fs.img (a
# sparse ext4 image) and loop-mounts it on the workspace. A container writing past its cap gets
# ENOSPC and nothing else fills; two sessions have their own caps; the image survives rm +
# re-create (files still there); purge removes it; no loop device or mount stays behind; a bad
# image refuses the bundle cleanly. Real runc, as root.
. "$(dirname "$0")/oci_lib.sh"

oci_require
for tool in losetup mkfs.ext4 mountpoint; do
    if ! command -v "$tool" >/dev/null; then
        t_skip all "$tool not installed (e2fsprogs, util-linux)"
        exit 0
    fi
done
if [ ! -e /dev/loop-control ]; then
    t_skip all "no /dev/loop-control (loop devices)"
    exit 0
fi
oci_setup

ST=$OCI_T/state

# Loop devices backed by an image under this test's dir.
loops() { losetup -a 2>/dev/null | grep -F "$OCI_T/" || true; }
ws_mounted() { mountpoint -q "$ST/workspaces/$1/data"; }
# Allocated KiB of a file (sparse images cost what is used).
alloc_k() { du -k "$1" | cut -f1; }

# ---- a capped workspace ----
A=$(oci_session a)
B=$(oci_session b)
t0=$(date +%s%N)
oci_bundle a --workspace-size 64M
check_eq create_capped_exit_0 "$?" 0
t1=$(date +%s%N)
IMG_A=$ST/workspaces/$A/fs.img
t_check image_made test -f "$IMG_A"
check_eq image_root_only "$(stat -c '%a %u' "$IMG_A")" "600 0"
check_eq image_apparent_size "$(stat -c %s "$IMG_A")" $((64 << 20))
t_check workspace_is_mount ws_mounted "$A"
check_eq workspace_is_ext4 "$(stat -f -c %T "$ST/workspaces/$A/data")" ext2/ext3
t_check workspace_nodev_nosuid bash -c "grep ' $ST/workspaces/$A/data ' /proc/self/mountinfo | grep -q 'nosuid,nodev'"
t_check loop_device_attached bash -c "losetup -a | grep -qF '$IMG_A'"
check_eq workspace_root_agents "$(stat -c %u "$ST/workspaces/$A/data")" $((100000 + 1000))
check_eq workspace_starts_empty "$(ls -A "$ST/workspaces/$A/data")" ""

# ---- writing past the cap: ENOSPC inside, nothing outside ----
host_before=$(df -k --output=avail "$OCI_T" | tail -n 1)
oci run "$A" -- /bin/oci_probe as-agent /bin/sh -c \
    'echo kept > /workspace/keep.txt; dd if=/dev/zero of=/workspace/big bs=1M count=100 2>/tmp/err; echo "rc=$?"; cat /tmp/err; echo tmp-ok > /tmp/t && cat /tmp/t' \
    >"$OCI_T/fill.out" 2>&1
t_check fill_fails grep -q '^rc=[1-9]' "$OCI_T/fill.out"
if grep -qi 'no space left' "$OCI_T/fill.out"; then t_ok fill_enospc; else
    t_fail fill_enospc "$(tr '\n' ' ' <"$OCI_T/fill.out")"; fi
t_check rest_of_container_writable grep -q '^tmp-ok$' "$OCI_T/fill.out"
big=$(stat -c %s "$ST/workspaces/$A/data/big" 2>/dev/null || echo 0)
if [ "$big" -gt $((48 << 20)) ] && [ "$big" -le $((64 << 20)) ]; then t_ok big_file_stops_at_cap; else
    t_fail big_file_stops_at_cap "big is $big bytes for a 64 MiB cap"; fi
a_k=$(alloc_k "$IMG_A")
if [ "$a_k" -le $((64 * 1024)) ]; then t_ok image_within_cap; else t_fail image_within_cap "$a_k KiB"; fi
host_after=$(df -k --output=avail "$OCI_T" | tail -n 1)
if [ $((host_before - host_after)) -lt $((80 * 1024)) ]; then t_ok host_fs_untouched; else
    t_fail host_fs_untouched "host lost $((host_before - host_after)) KiB"; fi
t_check host_still_writable bash -c "echo x > '$OCI_T/host-write' && test -s '$OCI_T/host-write'"

# ---- a second session has its own cap, unaffected by the full one ----
oci_bundle b --workspace-size 32M
check_eq create_b_exit_0 "$?" 0
oci run "$B" -- /bin/oci_probe as-agent /bin/sh -c \
    'head -c 20000000 /dev/zero > /workspace/w1 && echo w1-ok; head -c 20000000 /dev/zero > /workspace/w2 2>/dev/null || echo w2-full' \
    >"$OCI_T/b.out" 2>&1
t_check b_writes_while_a_full grep -q '^w1-ok$' "$OCI_T/b.out"
t_check b_has_own_cap grep -q '^w2-full$' "$OCI_T/b.out"
size_a=$(df -k --output=size "$ST/workspaces/$A/data" | tail -n 1)
size_b=$(df -k --output=size "$ST/workspaces/$B/data" | tail -n 1)
if [ "$size_a" -gt $((48 * 1024)) ] && [ "$size_b" -lt $((33 * 1024)) ] && [ "$size_b" -gt $((24 * 1024)) ]; then
    t_ok caps_per_session; else t_fail caps_per_session "sizes $size_a KiB, $size_b KiB"; fi

# ---- rm keeps the image, unmounted; re-create (no size given) mounts it again ----
oci rm "$A"
check_eq rm_exit_0 "$?" 0
t_check rm_unmounts_workspace bash -c "! mountpoint -q '$ST/workspaces/$A/data'"
t_check rm_frees_loop bash -c "! losetup -a | grep -qF '$IMG_A'"
t_check rm_keeps_image test -f "$IMG_A"
t_check rm_marks_ended test -f "$ST/workspaces/$A/ended"
oci_bundle a
check_eq recreate_exit_0 "$?" 0
t_check recreate_mounts_image ws_mounted "$A"
oci run "$A" -- /bin/oci_probe as-agent /bin/sh -c 'cat /workspace/keep.txt; rm /workspace/big; head -c 30000000 /dev/zero > /workspace/again && echo again-ok' \
    >"$OCI_T/reclaim.out" 2>&1
t_check reclaim_sees_files grep -q '^kept$' "$OCI_T/reclaim.out"
t_check reclaim_space_reusable grep -q '^again-ok$' "$OCI_T/reclaim.out"

# ---- rm of a running container: its workspace still unmounts ----
oci run "$A" -- /bin/sh -c 'exec 3>/workspace/open; sleep 300' >/dev/null 2>&1 &
PA=$!
sleep 1
oci rm "$A" --grace 1 >/dev/null 2>&1
check_eq rm_running_exit_0 "$?" 0
wait $PA 2>/dev/null
t_check rm_running_unmounts bash -c "! mountpoint -q '$ST/workspaces/$A/data'"
t_check rm_running_frees_loop bash -c "! losetup -a | grep -qF '$IMG_A'"

# ---- purge removes image and mount ----
oci rm "$B" --purge-workspace
check_eq purge_exit_0 "$?" 0
t_check purge_removes_workspace test ! -e "$ST/workspaces/$B"
out=$(oci workspace prune --retention 0)
check_eq prune_removes_ended_image "$out" "removed 1 workspace"
t_check prune_removed_a test ! -e "$ST/workspaces/$A"

# ---- refusals leave nothing ----
C=$(oci_session c)
oci_bundle c --workspace-size 1M
check_eq too_small_refused "$?" 1
t_check too_small_message grep -q 'workspace size must be' "$OCI_T/bundle.out"
t_check too_small_no_bundle test ! -e "$ST/bundles/$C"
mkdir -p "$ST/workspaces/$C/fs.img"
oci_bundle c --workspace-size 64M
check_eq bad_image_refused "$?" 1
t_check bad_image_message grep -q 'workspace image of .* is not a file' "$OCI_T/bundle.out"
t_check bad_image_no_bundle test ! -e "$ST/bundles/$C"
t_check bad_image_no_mount bash -c "! mountpoint -q '$ST/workspaces/$C/data'"
oci rm "$C" --purge-workspace >/dev/null 2>&1

# ---- a workspace with files from before the cap keeps them (no cap, a warning) ----
D=$(oci_session d)
oci_bundle d
echo old >"$ST/workspaces/$D/data/old.txt"
oci rm "$D" >/dev/null 2>&1
oci_bundle d --workspace-size 64M
check_eq legacy_create_exit_0 "$?" 0
t_check legacy_warned grep -q 'from before its size cap' "$OCI_T/bundle.out"
t_check legacy_files_visible test -f "$ST/workspaces/$D/data/old.txt"
t_check legacy_no_image test ! -e "$ST/workspaces/$D/fs.img"
oci rm "$D" --purge-workspace >/dev/null 2>&1

# ---- cost: bundle create with a fresh 10 GiB image vs none, and a re-create ----
E=$(oci_session e)
F=$(oci_session f)
t2=$(date +%s%N)
oci_bundle e
t3=$(date +%s%N)
oci_bundle f --workspace-size 10G
check_eq create_10g_exit_0 "$?" 0
t4=$(date +%s%N)
oci rm "$F" >/dev/null 2>&1
t5=$(date +%s%N)
oci_bundle f
t6=$(date +%s%N)
f_k=$(alloc_k "$ST/workspaces/$F/fs.img")
echo "# bundle create: no cap $(((t3 - t2) / 1000000)) ms, fresh 10G image $(((t4 - t3) / 1000000)) ms" \
    "(64M: $(((t1 - t0) / 1000000)) ms), re-create with the image $(((t6 - t5) / 1000000)) ms;" \
    "10G image allocates $f_k KiB"
if [ "$f_k" -lt $((64 * 1024)) ]; then t_ok image_10g_sparse; else t_fail image_10g_sparse "$f_k KiB"; fi
oci rm "$E" --purge-workspace >/dev/null 2>&1
oci rm "$F" --purge-workspace >/dev/null 2>&1

# ---- nothing left ----
check_eq no_loop_devices_left "$(loops)" ""
check_eq no_mounts_left "$(oci_mounts)" ""

t_done

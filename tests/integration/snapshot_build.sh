#!/usr/bin/env bash
# tests/integration/snapshot_build.sh - scripts/build-snapshot.sh (minimal base) end to end: the
# printed digest, the manifest, reproducibility, tool manifests, compression and the runner
# placeholder; then the tarball through the real snapshot store (runcell-oci snapshot import/ls/
# prune): imported once even by concurrent importers, and the tree is usable (bash and the runner
# run in it under chroot) and hardened (no setuid bits, read-only directories).
# The debian base needs minutes and the Debian archive: run with RUNCELL_TEST_DEBIAN=1.
. "$(dirname "$0")/../lib.sh"
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
OCI=$BUILD/runcell-oci
RUNNER=$BUILD/runcell-runner
T=$(mktemp -d /tmp/rc-snapshot-test.XXXXXX)
trap 'rm -rf --one-file-system "$T"' EXIT
export SOURCE_DATE_EPOCH=1700000000

build() { BUILD=$BUILD scripts/build-snapshot.sh "$@" 2>"$T/build.err"; }
jqe() { jq -e "$@" >/dev/null; }

if ! [ -x /bin/busybox ] || ! [ -x /bin/bash-static ]; then
    t_skip minimal_build "busybox-static or bash-static not installed (scripts/install-deps.sh)"
    t_done
fi

# ---- build -----------------------------------------------------------------------------------
digest=$(build --out "$T/min" --runner "$RUNNER")
t_check build_prints_digest_only bash -c "[[ '$digest' =~ ^sha256:[0-9a-f]{64}$ ]]"
t_check digest_is_sha256_of_tarball \
    bash -c "[ 'sha256:$(sha256sum "$T/min.tar" | cut -d' ' -f1)' = '$digest' ]"
t_check manifest_fields jqe --arg d "$digest" \
    '.digest == $d and .base == "minimal" and .tarball == "min.tar" and .size > 0
     and (.build_time | test("^[0-9-]+T[0-9:]+Z$")) and .tools_manifest == null' "$T/min.json"
if [ -x "$RUNNER" ]; then
    t_check manifest_runner_sha jqe --arg s "$(sha256sum "$RUNNER" | cut -d' ' -f1)" \
        '.runner_sha256 == $s and .runner_version != "placeholder"' "$T/min.json"
else
    t_skip manifest_runner_sha "$RUNNER not built"
fi
tar -tf "$T/min.tar" >"$T/list"
t_check tarball_has_shells_and_runner bash -c "grep -qx './bin/bash' '$T/list' &&
    grep -qx './bin/busybox' '$T/list' && grep -qx './bin/sh' '$T/list' &&
    grep -qx './usr/local/bin/runcell-runner' '$T/list' && grep -qx './etc/passwd' '$T/list'"
if [ -x "$RUNNER" ]; then
    t_check tarball_has_runner_libs bash -c "grep -q '^./lib64/ld-linux' '$T/list' &&
        grep -q 'libcurl.so' '$T/list' && grep -q 'libc.so.6' '$T/list'"
fi
t_check tarball_has_mountpoints bash -c "for d in workspace tmp proc sys dev run/runcell; do
    grep -qx \"./\$d/\" '$T/list' || exit 1; done"
t_check tarball_numeric_root_owner bash -c "tar -tvf '$T/min.tar' ./bin/bash | grep -q ' 0/0 '"

again=$(build --out "$T/min2" --runner "$RUNNER")
t_check reproducible_digest [ "$again" = "$digest" ]

echo '{"tools": []}' >"$T/tools-in.json"
with_tools=$(build --out "$T/tools" --runner "$RUNNER" --tools "$T/tools-in.json")
t_check tools_manifest_changes_digest [ "$with_tools" != "$digest" ]
t_check tools_manifest_installed bash -c "tar -tf '$T/tools.tar' | grep -qx './etc/runcell/tools.json'"
t_check tools_manifest_recorded jqe --arg s "$(sha256sum "$T/tools-in.json" | cut -d' ' -f1)" \
    '.tools_manifest_sha256 == $s and (.tools_manifest | endswith("tools-in.json"))' "$T/tools.json"
echo 'not json' >"$T/bad.json"
if build --out "$T/bad" --tools "$T/bad.json" >/dev/null; then
    t_fail bad_tools_manifest_refused
else
    t_ok bad_tools_manifest_refused
fi

zst=$(build --out "$T/minz" --runner "$RUNNER" --compress zstd)
t_check zstd_tarball bash -c "[ -f '$T/minz.tar.zst' ] && [ '$zst' != '$digest' ] &&
    [ 'sha256:$(sha256sum "$T/minz.tar.zst" 2>/dev/null | cut -d' ' -f1)' = '$zst' ]"

ph=$(build --out "$T/ph" --runner "$T/no-such-runner")
t_check placeholder_warns grep -q 'placeholder' "$T/build.err"
t_check placeholder_manifest jqe '.runner_version == "placeholder" and .runner_sha256 == null' \
    "$T/ph.json"
t_check placeholder_digest bash -c "[[ '$ph' =~ ^sha256: ]]"

# ---- import through the store -----------------------------------------------------------------
if ! [ -x "$OCI" ]; then
    t_skip store_import "$OCI not built"
    t_done
fi
S=$T/state
oci() { "$OCI" --state-dir "$S" "$@" 2>>"$T/oci.err"; }
imported=$(oci snapshot import "$T/min.tar")
t_check import_prints_same_digest [ "$imported" = "$digest" ]
t_check import_idempotent [ "$(oci snapshot import "$T/min.tar")" = "$digest" ]
# Concurrent importers of one (compressed) tarball: all succeed, one extraction.
for i in 1 2 3 4; do oci snapshot import "$T/minz.tar.zst" >"$T/conc.$i" & done
wait
t_check concurrent_imports_agree bash -c "for i in 1 2 3 4; do
    [ \"\$(cat '$T/conc.'\$i)\" = '$zst' ] || exit 1; done"
t_check concurrent_imports_extract_once \
    bash -c "[ \$(grep -c 'snapshot: imported $zst' '$T/oci.err') -eq 1 ]"
t_check ls_lists_both bash -c "oci_out=\$('$OCI' --state-dir '$S' snapshot ls 2>/dev/null);
    grep -q '$digest' <<<\"\$oci_out\" && grep -q '$zst' <<<\"\$oci_out\""

rootfs=$(find "$S" -maxdepth 4 -type d -path "*/sha256/${digest#sha256:}/rootfs" | head -n1)
t_check rootfs_found [ -n "$rootfs" ]
if [ -n "$rootfs" ]; then
    t_check rootfs_no_setuid bash -c "[ -z \"\$(find '$rootfs' -perm /6000 -print -quit)\" ]"
    t_check rootfs_dirs_read_only bash -c "[ -z \"\$(find '$rootfs' -type d -perm /222 \
        ! -path '$rootfs/workspace' ! -path '$rootfs/tmp' ! -path '$rootfs/dev' \
        ! -path '$rootfs/run' ! -path '$rootfs/run/runcell' ! -path '$rootfs/mnt' \
        ! -path '$rootfs/mnt/memory' -print -quit)\" ]"
    t_check rootfs_dev_empty bash -c "[ -z \"\$(ls -A '$rootfs/dev')\" ]"
    t_check rootfs_no_group_other_write_files \
        bash -c "[ -z \"\$(find '$rootfs' -type f -perm /022 -print -quit)\" ]"
    if [ "$(id -u)" -eq 0 ]; then
        t_check rootfs_bash_runs bash -c "[ \"\$(chroot '$rootfs' /bin/bash -c 'echo \$((6*7))')\" = 42 ]"
        t_check rootfs_busybox_runs chroot "$rootfs" /bin/sh -c 'ls / >/dev/null && id -u >/dev/null'
        if [ -x "$RUNNER" ]; then
            t_check rootfs_runner_links bash -c "chroot '$rootfs' /usr/local/bin/runcell-runner --help >/dev/null"
        fi
        t_check rootfs_accounts chroot "$rootfs" /bin/sh -c \
            'grep -q "^runner:x:990:" /etc/passwd && grep -q "^agent:x:1000:" /etc/passwd'
    else
        t_skip rootfs_bash_runs "not root (chroot)"
    fi
fi

t_check prune_removes_all bash -c "'$OCI' --state-dir '$S' snapshot prune --older-than 0 >/dev/null 2>&1 &&
    [ -z \"\$('$OCI' --state-dir '$S' snapshot ls 2>/dev/null | grep sha256)\" ]"
t_check prune_left_no_tree bash -c "[ -z \"\$(find '$S' -path '*/sha256/*' -print -quit)\" ]"

# ---- debian base (opt-in) ---------------------------------------------------------------------
if [ "${RUNCELL_TEST_DEBIAN:-}" = 1 ] && [ "$(id -u)" -eq 0 ]; then
    deb=$(BUILD=$BUILD scripts/build-snapshot.sh --base debian --out "$T/deb" --runner "$RUNNER" \
        --compress zstd 2>"$T/deb.err")
    t_check debian_build bash -c "[[ '$deb' =~ ^sha256: ]]"
    t_check debian_import [ "$(oci snapshot import "$T/deb.tar.zst")" = "$deb" ]
    drootfs=$(find "$S" -maxdepth 4 -type d -path "*/sha256/${deb#sha256:}/rootfs" | head -n1)
    t_check debian_dev_empty bash -c "[ -z \"\$(ls -A '$drootfs/dev')\" ]"
    # git opens /dev/null at start; a container gets /dev from runc, a chroot from this bind
    # mount in a private mount namespace.
    t_check debian_tools unshare -m sh -c "mount --bind /dev '$drootfs/dev' && chroot '$drootfs' \
        /bin/bash -c 'git --version && curl --version && rg --version && python3 --version' \
        </dev/null >/dev/null"
    if [ -x "$RUNNER" ]; then
        t_check debian_runner_links bash -c \
            "chroot '$drootfs' /usr/local/bin/runcell-runner --help </dev/null >/dev/null"
    fi
else
    t_skip debian_base "opt-in: RUNCELL_TEST_DEBIAN=1 as root (minutes, needs the Debian archive)"
fi
t_done

# tests/integration/oci_lib.sh - helpers shared by the oci_*.sh integration tests (issue 5):
# real runc, as root. Builds a tiny snapshot tarball (static busybox + the static oci_probe),
# imports it into a private state dir with runcell-oci, and cleans every container, mount,
# cgroup and file up on exit.
#
# Sourced, not run: tests/run.sh also executes every tests/integration/*.sh, so running this
# file directly only reports itself as skipped.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "ok - oci_lib.sourced_helper # SKIP helper sourced by oci_*.sh"
    exit 0
fi

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. tests/lib.sh

BUILD=${BUILD:-build}
OCI=$(pwd)/$BUILD/runcell-oci
OCI_T=
OCI_SESSIONS=()
OCI_CGROUP_PARENT=runcell

# Skip the whole suite (one SKIP line) unless root, runc, a static busybox and a C compiler that
# can link -static are here.
oci_require() {
    local why=
    if [ "$(id -u)" != 0 ]; then why="needs root"
    elif ! command -v runc >/dev/null; then why="runc not installed"
    elif [ ! -x "$OCI" ]; then why="$OCI not built"
    elif ! command -v busybox >/dev/null; then why="busybox not installed (apt-get install busybox-static)"
    elif ldd "$(command -v busybox)" >/dev/null 2>&1; then why="busybox is not static (apt-get install busybox-static)"
    elif ! command -v cc >/dev/null; then why="no C compiler for the static probe"
    fi
    if [ -n "$why" ]; then
        t_skip all "$why"
        exit 0
    fi
}

oci() { "$OCI" --state-dir "$OCI_T/state" "$@"; }

# Mount points of ours still present (below the test dir).
oci_mounts() { awk -v p="$OCI_T/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo; }

oci_cleanup() {
    local s m
    [ -n "$OCI_T" ] || return 0
    for s in "${OCI_SESSIONS[@]}"; do oci rm "$s" --purge-workspace >/dev/null 2>&1; done
    for m in $(oci_mounts | sort -r); do umount -l "$m" 2>/dev/null; done
    [ -n "$(oci_mounts)" ] || rm -rf "$OCI_T"
}
trap oci_cleanup EXIT

# The minimal snapshot (scripts/build-snapshot.sh) with the static probe appended; when that
# script cannot run here, a busybox rootfs made on the spot. Sets OCI_TAR and OCI_BASE.
oci_tarball() {
    local extra=$OCI_T/extra rfs a
    mkdir -p "$extra/bin"
    if ! cc -static -O2 -D_GNU_SOURCE -o "$extra/bin/oci_probe" tests/tools/oci_probe.c 2>"$OCI_T/cc.err"; then
        t_skip all "cannot link the probe -static: $(head -c 200 "$OCI_T/cc.err")"
        exit 0
    fi
    if BUILD=$BUILD scripts/build-snapshot.sh --base minimal --out "$OCI_T/minimal" \
        >/dev/null 2>"$OCI_T/snapshot.err"; then
        OCI_TAR=$OCI_T/minimal.tar OCI_BASE=minimal
        tar --append -f "$OCI_TAR" -C "$extra" --numeric-owner --owner=0 --group=0 ./bin/oci_probe
        return 0
    fi
    echo "# build-snapshot.sh failed, using a busybox rootfs: $(tail -n 1 "$OCI_T/snapshot.err")"
    rfs=$OCI_T/rootfs OCI_BASE=busybox
    mkdir -p "$rfs/bin" "$rfs/etc" "$rfs/root"
    chmod 700 "$rfs/root"
    cp "$extra/bin/oci_probe" "$(command -v busybox)" "$rfs/bin/"
    for a in sh ls cat id echo sleep true touch stat env readlink head wc yes rm mkdir; do
        ln -s busybox "$rfs/bin/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/workspace:/bin/sh\n' >"$rfs/etc/passwd"
    OCI_TAR=$OCI_T/snap.tar
    tar -C "$rfs" --numeric-owner --owner=0 --group=0 -cf "$OCI_TAR" .
}

# Build the snapshot and import it: sets OCI_T, OCI_TAR, OCI_BASE, OCI_DIGEST, OCI_SNAPDIR.
oci_setup() {
    OCI_T=$(mktemp -d /tmp/rc-oci-test.XXXXXX)
    chmod 755 "$OCI_T"
    oci_tarball
    OCI_DIGEST=$(oci snapshot import "$OCI_TAR" 2>"$OCI_T/import.err")
    if [ -z "$OCI_DIGEST" ]; then
        t_fail setup "snapshot import failed: $(cat "$OCI_T/import.err")"
        t_done
    fi
    OCI_SNAPDIR=$OCI_T/state/snapshots/sha256/${OCI_DIGEST#sha256:}/rootfs
}

# oci_bundle NAME [bundle create options...]: a session id unique to this run, remembered for
# cleanup; prints it.
oci_session() { echo "sesn_t$$$1"; }
oci_bundle() {
    local s
    s=$(oci_session "$1")
    shift
    OCI_SESSIONS+=("$s")
    oci bundle create "$s" --snapshot "$OCI_DIGEST" "$@" >"$OCI_T/bundle.out" 2>&1
}

# Value of key=... in a probe output file.
pv() { sed -n "s/^$2=//p" "$1" | head -n 1; }

# check_eq NAME GOT WANT
check_eq() {
    if [ "$2" = "$3" ]; then t_ok "$1"; else t_fail "$1" "got '$2', want '$3'"; fi
}

#!/usr/bin/env bash
# bench/container_start.sh - session container start: runcell-oci vs a bare `runc run` of
# /bin/true on the same root filesystem, and the second-session start from a small vs a ~500 MB
# snapshot, in one run. Needs root and runc (skipped otherwise).
#
# Snapshots: the minimal one from scripts/build-snapshot.sh (busybox, bash, the runner and its
# libraries), and the same tarball padded with one 500 MB-ish file of random bytes. Both are
# imported once (the first session's extraction, reported for information); every measured start
# is then a "second session": the tree is already in the store.
#
# runcell start = `runcell-oci bundle create` (config.json, idmapped read-only root, workspace,
# state dir) + `runcell-oci run -- runcell-runner --help` (runc create + start in new user, pid,
# mount, ... namespaces with the seccomp profile and cgroup limits) until the runner's first line
# of output reaches us; the bundle is removed afterwards (not timed). Anchor: `runc run` of
# /bin/true from a `runc spec` config whose root is the snapshot's extracted tree (read-only),
# until it exits. Each iteration runs the three in a rotating order; the first two are warm-up.
# Times come from bash's $EPOCHREALTIME (no fork to read the clock).
#
# Targets (DESIGN.md section 5, issue 5): runcell <= 2x bare runc (ratio <= 2.0); the large and
# small snapshot within 10 % (ratio 0.90 to 1.10).
#
# Environment: BUILD, BENCH_OUT, BENCH_SCALE (iterations = 50 x scale), BENCH_KEEP (bench/lib.sh);
# BENCH_PAD_MB (size of the padded snapshot, default 500).
set -u
BN_NAME=container_start
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

OCI_BIN=$PWD/$BUILD/runcell-oci
RUNNER=$BUILD/runcell-runner
ITER=$((50 * BENCH_SCALE))
WARMUP=2
PAD_MB=${BENCH_PAD_MB:-500}
CUR_S=

skip_all() {
    bn_skip "container start" "$1"
    bn_table
    exit 0
}

oci() { "$OCI_BIN" --state-dir "$BN_DIR/state" "$@"; }

# Mounts still present below the scratch dir (a bundle's rootfs, if a run was interrupted).
# shellcheck disable=SC2317 # called from cleanup_oci, at exit
our_mounts() { awk -v p="$BN_DIR/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo; }

# shellcheck disable=SC2317 # run at exit (bn_at_exit)
cleanup_oci() {
    local s m
    [ -n "$CUR_S" ] && oci rm "$CUR_S" --purge-workspace >/dev/null 2>&1
    runc --root "$BN_DIR/runc-bare" list -q 2>/dev/null | while read -r s; do
        runc --root "$BN_DIR/runc-bare" delete -f "$s" >/dev/null 2>&1
    done
    for m in $(our_mounts | sort -r); do umount -l "$m" 2>/dev/null; done
}

# ---- set-up -----------------------------------------------------------------------------------

# build_snapshots: $BN_DIR/small.tar and $BN_DIR/large.tar, imported; SMALL_D, LARGE_D digests,
# SMALL_MB, LARGE_MB sizes, SMALL_IMPORT_S, LARGE_IMPORT_S first-import times.
build_snapshots() {
    local pad t0
    BUILD=$BUILD scripts/build-snapshot.sh --base minimal --out "$BN_DIR/small" --runner "$RUNNER" \
        >/dev/null 2>"$BN_DIR/snapshot.err" || return 1
    SMALL_MB=$(($(stat -c %s "$BN_DIR/small.tar") / 1048576))
    pad=$((PAD_MB - SMALL_MB))
    [ "$pad" -gt 0 ] || pad=1
    mkdir -p "$BN_DIR/pad"
    head -c "${pad}M" /dev/urandom >"$BN_DIR/pad/pad.bin"
    cp "$BN_DIR/small.tar" "$BN_DIR/large.tar"
    tar --append -f "$BN_DIR/large.tar" -C "$BN_DIR/pad" --numeric-owner --owner=0 --group=0 ./pad.bin ||
        return 1
    rm -f "$BN_DIR/pad/pad.bin"
    LARGE_MB=$(($(stat -c %s "$BN_DIR/large.tar") / 1048576))
    t0=$EPOCHREALTIME
    SMALL_D=$(oci snapshot import "$BN_DIR/small.tar" 2>>"$BN_DIR/import.err") || return 1
    SMALL_IMPORT_S=$(elapsed_ms "$t0" "$EPOCHREALTIME")
    t0=$EPOCHREALTIME
    LARGE_D=$(oci snapshot import "$BN_DIR/large.tar" 2>>"$BN_DIR/import.err") || return 1
    LARGE_IMPORT_S=$(elapsed_ms "$t0" "$EPOCHREALTIME")
    rm -f "$BN_DIR/large.tar" # the store keeps the extracted tree; the tarball is not needed
    [ -n "$SMALL_D" ] && [ -n "$LARGE_D" ]
}

# The anchor's bundle: `runc spec`, no terminal, /bin/true, the small snapshot's tree read-only.
make_bare_bundle() {
    local rootfs=$BN_DIR/state/snapshots/sha256/${SMALL_D#sha256:}/rootfs
    mkdir -p "$BN_DIR/bare" "$BN_DIR/runc-bare"
    (cd "$BN_DIR/bare" && runc spec) || return 1
    jq --arg r "$rootfs" '.process.terminal = false | .process.args = ["/bin/true"] |
        .root = {path: $r, readonly: true}' "$BN_DIR/bare/config.json" >"$BN_DIR/bare/c.json" &&
        mv "$BN_DIR/bare/c.json" "$BN_DIR/bare/config.json"
}

# elapsed_ms T0 T1: milliseconds between two $EPOCHREALTIME readings.
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'; }

# ---- one start of each kind ---------------------------------------------------------------------

# start_runcell small|large I: create + run until the runner's first line, then rm (untimed).
start_runcell() {
    local kind=$1 i=$2 d s t0 t1 t2 fd line pid rc
    if [ "$kind" = small ]; then d=$SMALL_D; else d=$LARGE_D; fi
    s=sesn_bench$$_${kind}_$i
    CUR_S=$s
    t0=$EPOCHREALTIME
    oci bundle create "$s" --snapshot "$d" >/dev/null 2>>"$BN_DIR/oci.err" || return 1
    exec {fd}< <(exec "$OCI_BIN" --state-dir "$BN_DIR/state" run "$s" -- \
        /usr/local/bin/runcell-runner --help 2>>"$BN_DIR/oci.err")
    pid=$!
    IFS= read -r -u "$fd" line
    t1=$EPOCHREALTIME
    cat <&"$fd" >/dev/null
    exec {fd}<&-
    wait "$pid"
    rc=$?
    t2=$EPOCHREALTIME
    oci rm "$s" --purge-workspace >/dev/null 2>>"$BN_DIR/oci.err" && CUR_S=
    case "$line" in usage:*) ;; *)
        bn_log "$kind: unexpected first line '$line' (run status $rc)"
        return 1
        ;;
    esac
    [ "$i" -lt "$WARMUP" ] && return 0
    elapsed_ms "$t0" "$t1" >>"$BN_DIR/$kind.first_line.ms"
    elapsed_ms "$t0" "$t2" >>"$BN_DIR/$kind.exit.ms"
}

start_bare() {
    local i=$1 t0 t1
    t0=$EPOCHREALTIME
    runc --root "$BN_DIR/runc-bare" run --bundle "$BN_DIR/bare" "bare$$_$i" \
        >/dev/null 2>>"$BN_DIR/runc.err" </dev/null || return 1
    t1=$EPOCHREALTIME
    [ "$i" -lt "$WARMUP" ] && return 0
    elapsed_ms "$t0" "$t1" >>"$BN_DIR/bare.exit.ms"
}

# ---- main -------------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || skip_all "needs root (runc, namespaces, mounts)"
command -v runc >/dev/null || skip_all "runc not installed"
command -v jq >/dev/null || skip_all "jq not installed"
if [ ! -x "$OCI_BIN" ] || [ ! -x "$RUNNER" ]; then
    skip_all "runcell-oci / runcell-runner not built in $BUILD"
fi
[ -n "${EPOCHREALTIME:-}" ] || skip_all "bash 5 needed (\$EPOCHREALTIME)"
chmod 755 "$BN_DIR" # runc 1.1 resolves mount sources as the container's unprivileged root
bn_at_exit cleanup_oci

bn_log "building and importing the snapshots (small + ${PAD_MB} MB)"
build_snapshots ||
    skip_all "snapshot build/import failed: $(cat "$BN_DIR/snapshot.err" "$BN_DIR/import.err" 2>/dev/null |
        tail -n 3 | tr '\n' ' ')"
make_bare_bundle || skip_all "runc spec failed"
bn_log "snapshots: ${SMALL_MB} MB imported in ${SMALL_IMPORT_S} ms, ${LARGE_MB} MB in ${LARGE_IMPORT_S} ms"

status=0
for ((i = 0; i < ITER + WARMUP; i++)); do
    case $((i % 3)) in
    0) order="bare small large" ;;
    1) order="small large bare" ;;
    2) order="large bare small" ;;
    esac
    for k in $order; do
        if [ "$k" = bare ]; then
            start_bare "$i" || { bn_log "bare runc failed: $(tail -n 2 "$BN_DIR/runc.err")"; status=1; break 2; }
        else
            start_runcell "$k" "$i" || { bn_log "runcell-oci failed: $(tail -n 3 "$BN_DIR/oci.err")"; status=1; break 2; }
        fi
    done
done
bn_log "$ITER iterations done"

st_small=$(bn_stats "$BN_DIR/small.first_line.ms" 2>/dev/null || echo "0 - - -")
st_large=$(bn_stats "$BN_DIR/large.first_line.ms" 2>/dev/null || echo "0 - - -")
st_bare=$(bn_stats "$BN_DIR/bare.exit.ms" 2>/dev/null || echo "0 - - -")
st_small_exit=$(bn_stats "$BN_DIR/small.exit.ms" 2>/dev/null || echo "0 - - -")
s50=$(bn_field "$st_small" 2)
l50=$(bn_field "$st_large" 2)
b50=$(bn_field "$st_bare" 2)

bn_row "container start to runner's first line, ${SMALL_MB} MB snapshot, p50 (n=$(bn_field "$st_small" 1))" \
    "$(bn_unit "$s50" ms)" "$(bn_unit "$b50" ms) (bare runc run /bin/true)" "$(bn_ratio "$s50" "$b50")" \
    "ratio <= 2.0" "$(bn_yesno bn_ratio_le "$s50" "$b50" 2.0)"
bn_row "container start to runner's first line, p95" "$(bn_unit "$(bn_field "$st_small" 3)" ms)" \
    "$(bn_unit "$(bn_field "$st_bare" 3)" ms)" "$(bn_ratio "$(bn_field "$st_small" 3)" "$(bn_field "$st_bare" 3)")" - -
bn_row "container create + run + exit (runner --help), p50" "$(bn_unit "$(bn_field "$st_small_exit" 2)" ms)" \
    "$(bn_unit "$b50" ms)" "$(bn_ratio "$(bn_field "$st_small_exit" 2)" "$b50")" - -
met=no
if [ "$s50" != - ] && [ "$l50" != - ] && bn_ratio_le "$l50" "$s50" 1.10 && ! bn_ratio_le "$l50" "$s50" 0.8999; then
    met=yes
fi
bn_row "second session, ${LARGE_MB} MB vs ${SMALL_MB} MB snapshot, p50 (n=$(bn_field "$st_large" 1))" \
    "$(bn_unit "$l50" ms)" "$(bn_unit "$s50" ms)" "$(bn_ratio "$l50" "$s50")" "ratio 0.90 - 1.10" "$met"
bn_row "first session: snapshot import (extraction), ${LARGE_MB} MB vs ${SMALL_MB} MB" \
    "$(bn_unit "$LARGE_IMPORT_S" ms)" "$(bn_unit "$SMALL_IMPORT_S" ms)" \
    "$(bn_ratio "$LARGE_IMPORT_S" "$SMALL_IMPORT_S")" - -
bn_table
exit $status

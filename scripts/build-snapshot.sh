#!/usr/bin/env bash
# scripts/build-snapshot.sh - builds a snapshot tarball (a session container's root filesystem)
# and a JSON manifest beside it, and prints the tarball's digest ("sha256:<hex>") on stdout.
#
# Bases:
#   minimal  static busybox (Debian busybox-static) with its applets, bash-static as /bin/bash,
#            runcell-runner and the shared libraries it needs (per ldd), users root/runner/agent.
#            Seconds to build, no network; what the tests use.
#   debian   debootstrap --variant=minbase of bookworm from the Debian archive, plus coreutils,
#            git, curl, ripgrep, python3 and the runner (its libraries from the archive, or copied
#            from this host when a package is missing). Minutes and network; needs root.
#
# The tarball is reproducible: names sorted, numeric owners, every mtime set to SOURCE_DATE_EPOCH
# (default: the commit time of HEAD), GNU format; so the digest changes exactly when the content
# does (a new runner, a new tool manifest). The manifest records what went in:
#   {"digest","base","runner_version","runner_sha256","build_time","tools_manifest",
#    "tools_manifest_sha256","tarball","size"}
# Rebuild when the runner or the tool manifest changes; the snapshot digest is a deploy artifact.
#
# Usage: scripts/build-snapshot.sh [--base minimal|debian] [--out PATH] [--runner FILE]
#            [--tools MANIFEST.json] [--compress none|gzip|zstd|xz]
#   --out PATH    writes PATH.tar[.gz|.zst|.xz] and PATH.json (default build/snapshots/<base>)
#   --runner FILE the runner binary (default $BUILD/runcell-runner, BUILD defaults to build);
#                 when missing, a placeholder that exits 127 is installed and the manifest says so
#   --tools FILE  custom tools manifest, installed as /etc/runcell/tools.json
# Needs: tar, jq, sha256sum; busybox-static and bash-static (minimal); debootstrap (debian);
# gzip/zstd/xz for --compress.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNNER_UID=990 # the runner's account inside the container (see docs/SNAPSHOTS.md)
AGENT_UID=1000 # the agent's (tools') account
base=minimal out="" runner="${BUILD:-build}/runcell-runner" tools="" compress=none

die() { echo "build-snapshot: $*" >&2; exit 1; }
say() { echo "build-snapshot: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --base) base=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --runner) runner=${2:?}; shift 2 ;;
    --tools) tools=${2:?}; shift 2 ;;
    --compress) compress=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done
case "$base" in minimal | debian) ;; *) die "--base must be minimal or debian" ;; esac
case "$compress" in
none) ext=tar ;; gzip) ext=tar.gz ;; zstd) ext=tar.zst ;; xz) ext=tar.xz ;;
*) die "--compress must be none, gzip, zstd or xz" ;;
esac
[ -n "$out" ] || out=build/snapshots/$base
mkdir -p "$(dirname "$out")"
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
if [ -n "$tools" ]; then
    [ -f "$tools" ] || die "tools manifest $tools not found"
    jq -e 'type == "object"' "$tools" >/dev/null || die "tools manifest $tools is not a JSON object"
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/runcell-snapshot.XXXXXX")
cleanup() { rm -rf --one-file-system "$stage"; }
trap cleanup EXIT
root=$stage/root
mkdir -p "$root"
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

# ---- the runner and its libraries -------------------------------------------------------------

# Copy a host file to the same absolute path under the root, following symlinks.
copy_host_file() {
    local f=$1
    [ -e "$root$f" ] && return 0
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
}

# Every library ldd resolves for $1 (and the dynamic loader), when not already in the root.
copy_libs() {
    local bin=$1 line path
    while read -r line; do
        case "$line" in
        *"=> not found"*) die "ldd: a library of $bin is missing on this host: $line" ;;
        *"=> /"*) path=${line#*=> }; path=${path%% (*} ;;
        /*) path=${line%% (*} ;;
        *) continue ;;
        esac
        copy_host_file "$path"
    done < <(ldd "$bin" 2>/dev/null || true)
}

runner_version=placeholder runner_sha=""
install_runner() {
    mkdir -p "$root/usr/local/bin"
    if [ -x "$runner" ]; then
        install -m 0755 "$runner" "$root/usr/local/bin/runcell-runner"
        runner_sha=$(sha256sum "$runner" | cut -d' ' -f1)
        runner_version=$(git describe --always --dirty 2>/dev/null || echo unknown)
        [ "$base" = minimal ] && copy_libs "$runner"
        # The small tool executor the runner prefers (docs/RUNNER.md, "Privilege separation");
        # without it the runner re-executes itself for the same job, with a larger footprint.
        local executor
        executor=$(dirname "$runner")/runcell-tool-executor
        if [ -x "$executor" ]; then
            install -m 0755 "$executor" "$root/usr/local/bin/runcell-tool-executor"
            [ "$base" = minimal ] && copy_libs "$executor"
        fi
        return 0
    fi
    say "WARNING: $runner does not exist (run make first); installing a placeholder runner"
    cat >"$root/usr/local/bin/runcell-runner" <<'EOF'
#!/bin/sh
echo "runcell-runner: placeholder (this snapshot was built without the runner binary)" >&2
exit 127
EOF
    chmod 0755 "$root/usr/local/bin/runcell-runner"
}

# ---- accounts, tools, mount points ----------------------------------------------------------

write_accounts() {
    mkdir -p "$root/etc" "$root/root" "$root/home/agent"
    chmod 0700 "$root/root"
    if [ "$base" = minimal ]; then
        cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/bash
runner:x:$RUNNER_UID:$RUNNER_UID:runcell runner:/nonexistent:/bin/false
agent:x:$AGENT_UID:$AGENT_UID:agent:/home/agent:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
        cat >"$root/etc/group" <<EOF
root:x:0:
runner:x:$RUNNER_UID:
agent:x:$AGENT_UID:
nogroup:x:65534:
EOF
        echo "passwd: files" >"$root/etc/nsswitch.conf"
        echo "group: files" >>"$root/etc/nsswitch.conf"
    else
        chroot "$root" groupadd -r -g "$RUNNER_UID" runner
        chroot "$root" useradd -r -u "$RUNNER_UID" -g runner -d /nonexistent -s /bin/false runner
        chroot "$root" groupadd -g "$AGENT_UID" agent
        chroot "$root" useradd -u "$AGENT_UID" -g agent -d /home/agent -s /bin/bash agent
    fi
}

install_tools_manifest() {
    [ -n "$tools" ] || return 0
    mkdir -p "$root/etc/runcell"
    install -m 0644 "$tools" "$root/etc/runcell/tools.json"
}

make_mountpoints() {
    mkdir -p "$root"/{workspace,tmp,proc,sys,dev,run/runcell}
    chmod 1777 "$root/tmp"
}

# ---- bases -------------------------------------------------------------------------------------

build_minimal() {
    local bb=/bin/busybox bash=/bin/bash-static applet
    if [ ! -x "$bb" ] || ldd "$bb" >/dev/null 2>&1; then
        die "static $bb missing (apt-get install busybox-static)"
    fi
    [ -x "$bash" ] || die "$bash missing (apt-get install bash-static)"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc}
    install -m 0755 "$bb" "$root/bin/busybox"
    install -m 0755 "$bash" "$root/bin/bash"
    for applet in $("$bb" --list); do
        case "$applet" in busybox | bash) continue ;; esac
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    ln -sf ../../bin/busybox "$root/usr/bin/env"
    install_runner
}

build_debian() {
    [ "$(id -u)" -eq 0 ] || die "the debian base needs root (debootstrap, chroot)"
    command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap)"
    local mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    local pkgs=coreutils,git,curl,ripgrep,python3,ca-certificates,passwd
    pkgs+=,libcurl4,libcjson1,libmicrohttpd12,libssl3
    say "debootstrap bookworm (minbase + $pkgs) from $mirror"
    debootstrap --variant=minbase --include="$pkgs" bookworm "$root" "$mirror" >&2
    install_runner
    if [ -x "$root/usr/local/bin/runcell-runner" ] && [ -n "$runner_sha" ]; then
        # Any library the archive did not provide comes from this (same release) host.
        while read -r line; do
            case "$line" in *"=> not found"*)
                lib=${line%% =>*}; lib=${lib//[[:space:]]/}
                hostlib=$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')
                [ -n "$hostlib" ] || die "library $lib of the runner not found on the host either"
                copy_host_file "$hostlib" ;;
            esac
        done < <(chroot "$root" ldd /usr/local/bin/runcell-runner 2>&1 || true)
    fi
}

# After every chroot step (they may write to /dev/null, which must then still be a device).
clean_debian() {
    chroot "$root" apt-get clean >&2
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
    # Device nodes and kernel filesystems are the container runtime's business, not the image's.
    rm -rf --one-file-system "${root:?}"/dev/* "$root"/proc/* "$root"/sys/* "$root"/run/* "$root"/tmp/*
}

"build_$base"
write_accounts
install_tools_manifest
[ "$base" = debian ] && clean_debian
make_mountpoints
if [ "$(id -u)" -eq 0 ]; then
    chown -R 0:0 "$root"
    chown "$AGENT_UID:$AGENT_UID" "$root/home/agent"
    owner_args=(--numeric-owner)
else
    owner_args=(--owner=0 --group=0 --numeric-owner)
    say "not root: every file is recorded as owned by root"
fi

# ---- tarball and manifest ---------------------------------------------------------------------

tarball=$out.$ext
tmp_tar=$stage/out.tar
tar --format=gnu --sort=name --mtime="@$epoch" "${owner_args[@]}" \
    -C "$root" -cf "$tmp_tar" .
case "$compress" in
none) mv "$tmp_tar" "$tarball" ;;
gzip) gzip -n -c "$tmp_tar" >"$tarball" ;;
zstd) zstd -q -T0 -c "$tmp_tar" >"$tarball" ;;
xz) xz -T0 -c "$tmp_tar" >"$tarball" ;;
esac
digest=sha256:$(sha256sum "$tarball" | cut -d' ' -f1)
tools_sha=""
[ -n "$tools" ] && tools_sha=$(sha256sum "$tools" | cut -d' ' -f1)
jq -n --arg digest "$digest" --arg base "$base" --arg rv "$runner_version" --arg rs "$runner_sha" \
    --arg bt "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg tm "$tools" --arg ts "$tools_sha" \
    --arg tb "$(basename "$tarball")" --argjson size "$(stat -c %s "$tarball")" \
    '{digest: $digest, base: $base, runner_version: $rv,
      runner_sha256: (if $rs == "" then null else $rs end), build_time: $bt,
      tools_manifest: (if $tm == "" then null else $tm end),
      tools_manifest_sha256: (if $ts == "" then null else $ts end),
      tarball: $tb, size: $size}' >"$out.json"
say "wrote $tarball ($(du -h "$tarball" | cut -f1)) and $out.json"
echo "$digest"

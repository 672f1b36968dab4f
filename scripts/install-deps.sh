#!/usr/bin/env bash
# scripts/install-deps.sh - installs everything runcell's build, tests and runtime need on Debian 12.
#
# Debian packages with apt-get (only those missing, so a second run is quiet and fast), and npm
# packages (test-only cross-checks) into the ignored prefix .deps/node. Run as root; a non-root run
# only reports what is missing. Nothing else on the machine is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
    build-essential pkg-config clang clang-format libclang-rt-14-dev
    libfcgi-dev libfcgi-bin libcurl4-openssl-dev libcjson-dev libssl-dev libmicrohttpd-dev
    runc nginx curl ca-certificates jq git iproute2 systemd e2fsprogs
    busybox-static bash-static debootstrap zstd xz-utils bzip2 zlib1g-dev openssl python3 shellcheck
    wrk
    # tests/integration/deploy_systemd_boot.sh: systemd-nspawn boots the units under systemd
    systemd-container
    # pgrep (scripts/stack.sh finds a stack's shims by their argv)
    procps
)
# Node.js runs the npm cross-checks; a machine may already have it from another source.
command -v node >/dev/null 2>&1 || DEB_PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || DEB_PACKAGES+=(npm)
# npm packages used by the cross-checks (pinned); installed under .deps/node.
NPM_PREFIX=.deps/node
NPM_PACKAGES=(standardwebhooks@1.1.1)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing Debian packages: ${missing[*]} (run as root to install)" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/runcell-apt.log 2>&1; then
        apt-get update -q >>/tmp/runcell-apt.log 2>&1 || true
        apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/runcell-apt.log 2>&1 || {
            echo "install-deps: apt-get failed; see /tmp/runcell-apt.log" >&2
            tail -n 20 /tmp/runcell-apt.log >&2
            exit 1
        }
    fi
fi

# npm: best effort (the registry may be unreachable); tests that need a package say "skipped".
need_npm=()
for spec in "${NPM_PACKAGES[@]}"; do
    name=${spec%@*}
    want=${spec##*@}
    have=$(node -p "require('./$NPM_PREFIX/node_modules/$name/package.json').version" 2>/dev/null || true)
    [ "$have" = "$want" ] || need_npm+=("$spec")
done
if [ ${#need_npm[@]} -gt 0 ] && command -v npm >/dev/null 2>&1; then
    mkdir -p "$NPM_PREFIX"
    if ! npm install --silent --no-audit --no-fund --prefix "$NPM_PREFIX" "${need_npm[@]}" \
        >/tmp/runcell-npm.log 2>&1; then
        echo "install-deps: npm install of ${need_npm[*]} failed (tests that need them will skip);" \
            "see /tmp/runcell-npm.log" >&2
    fi
fi
exit 0

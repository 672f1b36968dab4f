#!/usr/bin/env bash
# tests/integration/deploy_install.sh - `make install DESTDIR=... [PREFIX=...]` (issue 8): the
# binaries, the systemd units (their /usr/local paths rewritten to PREFIX), tmpfiles.d and
# sysusers.d files, the nginx snippet and test template, the examples, the setup scripts and the
# docs land in the right places with the right modes; /etc/runcell gets the example
# configuration only where nothing is there yet (a re-install keeps the operator's files); the
# installed units pass `systemd-analyze verify` against the installed binaries; and the
# post-install steps (systemd-sysusers, systemd-tmpfiles) on the installed tree give the modes
# docs/DEPLOYMENT.md promises. Nothing is written outside DESTDIR.
# shellcheck disable=SC2317 # functions called through check
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
T=$(mktemp -d /tmp/rc-deploy-install.XXXXXX)
trap 'rm -rf "$T"' EXIT

check() {
    local n=$1
    shift
    if "$@"; then t_ok "$n"; else t_fail "$n" "failed: $*"; fi
}
mode() { stat -c '%a' "$1" 2>/dev/null; }
etc_existed=no
[ -e /etc/runcell ] && etc_existed=yes

D=$T/root
if ! make --no-print-directory BUILD="$BUILD" install DESTDIR="$D" >"$T/install.out" 2>&1; then
    t_fail make_install "$(tail -n 5 "$T/install.out")"
    t_done
fi
t_ok make_install
P=$D/usr/local

# Binaries: every one built, 0755.
for b in runcell-fcgi runcell-launcher runcell runcell-runner; do
    if [ -x "$BUILD/$b" ]; then
        check "bin_$b" test "$(mode "$P/bin/$b")" = 755
    else
        t_skip "bin_$b" "$BUILD/$b not built"
    fi
done

if [ ! -f "$P/lib/systemd/system/runcell-fcgi.service" ]; then
    t_skip deployment_files "the Makefile's install target does not install the deployment files yet (units, nginx, examples: see docs/DEPLOYMENT.md)"
    t_done
fi

# ---- where everything goes, and modes --------------------------------------------------------------
U=$P/lib/systemd/system
for u in runcell-fcgi.socket runcell-fcgi.service runcell-launcher.socket runcell-launcher.service; do
    check "unit_$u" test "$(mode "$U/$u")" = 644
done
check tmpfiles_installed test "$(mode "$P/lib/tmpfiles.d/runcell.conf")" = 644
check sysusers_installed test "$(mode "$P/lib/sysusers.d/runcell.conf")" = 644
check nginx_snippet_installed cmp -s nginx/runcell.conf "$P/share/runcell/nginx/runcell.conf"
check nginx_test_template_installed cmp -s nginx/test.conf "$P/share/runcell/nginx/test.conf"
for f in runcell.env launcher.env policy.json tools-manifest.json; do
    check "example_$f" bash -c "cmp -s 'examples/$f' '$P/share/runcell/examples/$f' && [ \$(stat -c %a '$P/share/runcell/examples/$f') = 644 ]"
done
for s in create-environment.sh create-agent.sh render-nginx-test-conf.sh test-e2e.sh; do
    check "script_$s" test "$(mode "$P/share/runcell/scripts/$s")" = 755
done
check docs_installed test -f "$P/share/doc/runcell/DEPLOYMENT.md"
check etc_dir test "$(mode "$D/etc/runcell")" = 755
check etc_runcell_env_0600 test "$(mode "$D/etc/runcell/runcell.env")" = 600
check etc_launcher_env_0600 test "$(mode "$D/etc/runcell/launcher.env")" = 600
check etc_policy_0600 test "$(mode "$D/etc/runcell/policy.json")" = 600
check etc_tools_0644 test "$(mode "$D/etc/runcell/tools.json")" = 644
check etc_tools_is_the_example cmp -s examples/tools-manifest.json "$D/etc/runcell/tools.json"
check nothing_else_in_etc test "$(find "$D" -path "$D/usr" -prune -o -type f -print | sed "s|^$D||" | sort | tr '\n' ' ')" = \
    "/etc/runcell/launcher.env /etc/runcell/policy.json /etc/runcell/runcell.env /etc/runcell/tools.json "
check nothing_outside_destdir test "$etc_existed" = "$([ -e /etc/runcell ] && echo yes || echo no)"

# Units name the installed binaries and docs.
check units_name_prefix_bin bash -c "grep -h '^ExecStart=' '$U'/runcell-*.service | cut -d= -f2 | cut -d' ' -f1 | sort |
    diff - <(printf '%s\n' /usr/local/bin/runcell-fcgi /usr/local/bin/runcell-launcher) >/dev/null"
check unit_binaries_installed bash -c "for b in \$(grep -h '^ExecStart=' '$U'/runcell-*.service | cut -d= -f2 | cut -d' ' -f1); do
    [ -x '$D'\$b ] || exit 1; done"
check unit_docs_installed bash -c "for d in \$(grep -ho 'file:[^ ]*' '$U'/runcell-* | sort -u | cut -d: -f2); do
    [ -f '$D'\$d ] || exit 1; done"

# The installed units pass verify, against the installed binaries.
if command -v systemd-analyze >/dev/null 2>&1; then
    mkdir -p "$T/verify"
    for u in "$U"/runcell-*; do
        sed "s|^ExecStart=/|ExecStart=$D/|" "$u" >"$T/verify/${u##*/}"
    done
    for u in "$T"/verify/*; do
        n=${u##*/}
        if (cd "$T/verify" && systemd-analyze verify "./$n") >"$T/v.out" 2>&1 &&
            ! grep -v 'Failed to read .container\|Found container virtualization' "$T/v.out" | grep -q .; then
            t_ok "installed_verify_$n"
        else
            t_fail "installed_verify_$n" "$(head -n 5 "$T/v.out")"
        fi
    done
else
    t_skip installed_verify "systemd-analyze not installed"
fi

# The installed render script works from its installed place (it finds ../nginx).
check installed_render_script bash -c "'$P/share/runcell/scripts/render-nginx-test-conf.sh' --prefix '$T/ngx' \
    --port 18081 --fcgi-socket '$T/f.sock' >/dev/null && grep -q 'unix:$T/f.sock' '$T/ngx/runcell.conf'"
check installed_create_agent_dry_run bash -c "'$P/share/runcell/scripts/create-agent.sh' --dry-run |
    jq -e '.tools | length == 6' >/dev/null"

# ---- a re-install keeps the operator's configuration ---------------------------------------------
printf 'ANTHROPIC_ENVIRONMENT_ID=env_mine\n' >"$D/etc/runcell/runcell.env"
chmod 0640 "$D/etc/runcell/runcell.env"
if make --no-print-directory BUILD="$BUILD" install DESTDIR="$D" >"$T/install2.out" 2>&1; then
    check reinstall_keeps_env bash -c "[ \"\$(cat '$D/etc/runcell/runcell.env')\" = ANTHROPIC_ENVIRONMENT_ID=env_mine ] &&
        [ \$(stat -c %a '$D/etc/runcell/runcell.env') = 640 ]"
    check reinstall_says_kept grep -q 'kept /etc/runcell/runcell.env' "$T/install2.out"
else
    t_fail reinstall "$(tail -n 5 "$T/install2.out")"
fi

# ---- PREFIX=/usr --------------------------------------------------------------------------------
D2=$T/root-usr
if make --no-print-directory BUILD="$BUILD" install DESTDIR="$D2" PREFIX=/usr >"$T/install3.out" 2>&1; then
    check prefix_usr_units test -f "$D2/usr/lib/systemd/system/runcell-fcgi.service"
    check prefix_usr_exec_start bash -c "grep -q '^ExecStart=/usr/bin/runcell-fcgi$' '$D2/usr/lib/systemd/system/runcell-fcgi.service' &&
        grep -q '^ExecStart=/usr/bin/runcell-launcher ' '$D2/usr/lib/systemd/system/runcell-launcher.service'"
    check prefix_usr_no_local_paths bash -c "! grep -rq '/usr/local' '$D2/usr/lib/systemd/system' '$D2/usr/lib/tmpfiles.d' '$D2/usr/lib/sysusers.d'"
    check prefix_usr_nginx test -f "$D2/usr/share/runcell/nginx/runcell.conf"
    check prefix_usr_etc_still_etc test -f "$D2/etc/runcell/runcell.env"
else
    t_fail prefix_usr_install "$(tail -n 5 "$T/install3.out")"
fi

# ---- the post-install steps on the installed tree --------------------------------------------------
if [ "$(id -u)" != 0 ] || ! command -v systemd-sysusers >/dev/null || ! command -v systemd-tmpfiles >/dev/null; then
    t_skip post_install "needs root, systemd-sysusers and systemd-tmpfiles"
else
    for f in passwd group; do grep -E '^(root|nobody|nogroup|www-data):' "/etc/$f" >"$D/etc/$f" || true; done
    : >"$D/etc/shadow"
    : >"$D/etc/gshadow"
    check post_sysusers bash -c "systemd-sysusers --root='$D' '$P/lib/sysusers.d/runcell.conf' >'$T/su.out' 2>&1"
    check post_tmpfiles bash -c "systemd-tmpfiles --root='$D' --create '$P/lib/tmpfiles.d/runcell.conf' >'$T/tf.out' 2>&1"
    gid=$(awk -F: '$1 == "runcell-fcgi" {print $3}' "$D/etc/group")
    check post_env_readable_by_fcgi_group_only test "$(stat -c '%a %u:%g' "$D/etc/runcell/runcell.env")" = "640 0:$gid"
    check post_launcher_env_root_only test "$(stat -c '%a %u:%g' "$D/etc/runcell/launcher.env")" = "600 0:0"
    check post_run_and_state_dirs test "$(stat -c '%a' "$D/run/runcell" "$D/var/lib/runcell" | tr '\n' ' ')" = "711 711 "
fi

t_done

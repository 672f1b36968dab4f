#!/usr/bin/env bash
# tests/integration/deploy_units.sh - the systemd side of the deployment (issue 8): every unit in
# systemd/ passes `systemd-analyze verify` (units copied into a temp dir with their ExecStart
# paths pointing at the binaries in $BUILD), the security choices the docs promise are in the
# files, the units, the nginx snippet, runcell-fcgi and runcell-launcher agree on socket paths
# and the user, systemd-sysusers and systemd-tmpfiles (on a scratch root) create the user and
# the directories/modes of systemd/runcell.conf, `systemd-analyze security` rates runcell-fcgi
# as well confined, and the example env files cover every variable the binaries document.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
T=$(mktemp -d /tmp/rc-deploy-units.XXXXXX)
trap 'rm -rf "$T"' EXIT

check() {
    local n=$1
    shift
    if "$@"; then t_ok "$n"; else t_fail "$n" "failed: $*"; fi
}
# unit_value FILE KEY: the last value of KEY= in FILE (what systemd uses for single-value keys).
unit_value() { sed -n "s/^$2=//p" "$1" | tail -n 1; }

UNITS=(systemd/runcell-fcgi.socket systemd/runcell-fcgi.service
    systemd/runcell-launcher.socket systemd/runcell-launcher.service)
for u in "${UNITS[@]}" systemd/runcell.conf systemd/runcell.sysusers; do
    check "exists_${u##*/}" test -f "$u"
done

# ---- systemd-analyze verify --------------------------------------------------------------------
# The units name /usr/local/bin/<binary>; here that is $BUILD/<binary> (absolute), so verify
# checks real executables. A binary not built yet is replaced by a stub and said so.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    t_skip verify "systemd-analyze not installed (apt-get install systemd)"
else
    # Lines systemd-analyze prints about its own surroundings (inside a container), not the unit.
    VERIFY_NOISE='Failed to read .container\|Found container virtualization'
    mkdir -p "$T/bin" "$T/units"
    for b in runcell-fcgi runcell-launcher; do
        if [ -x "$BUILD/$b" ]; then
            ln -s "$(cd "$BUILD" && pwd)/$b" "$T/bin/$b"
        else
            printf '#!/bin/sh\nexit 1\n' >"$T/bin/$b"
            chmod 0755 "$T/bin/$b"
            echo "# $BUILD/$b not built: verifying against a stub"
        fi
    done
    for u in "${UNITS[@]}"; do
        sed "s|/usr/local/bin/|$T/bin/|g" "$u" >"$T/units/${u##*/}"
    done
    for u in "${UNITS[@]}"; do
        n=${u##*/}
        # Run from the units' directory so the unit and its Requires=/Also= partners are found.
        if (cd "$T/units" && systemd-analyze verify "./$n") >"$T/verify.out" 2>&1 &&
            ! grep -v -e "$VERIFY_NOISE" "$T/verify.out" | grep -q .; then
            t_ok "verify_$n"
        else
            t_fail "verify_$n" "$(head -n 5 "$T/verify.out")"
        fi
    done
    # The check itself works: a unit whose binary is missing or with a typo is refused.
    sed "s|^ExecStart=.*|ExecStart=$T/bin/no-such-binary|" "$T/units/runcell-fcgi.service" \
        >"$T/units/broken-exec.service"
    sed 's/^NoNewPrivileges=yes/NoNewPrivilege=yes/' "$T/units/runcell-fcgi.service" \
        >"$T/units/broken-key.service"
    for n in broken-exec broken-key; do
        if (cd "$T/units" && systemd-analyze verify "./$n.service") >"$T/verify.out" 2>&1 &&
            ! grep -v -e "$VERIFY_NOISE" "$T/verify.out" | grep -q .; then
            t_fail "verify_catches_$n" "systemd-analyze verify accepted a broken unit"
        else
            t_ok "verify_catches_$n"
        fi
    done

    # Exposure score of the unprivileged handler (0 = fully confined, 10 = unconfined).
    if systemd-analyze security --offline=yes "$T/units/runcell-fcgi.service" >"$T/sec.out" 2>&1; then
        score=$(sed -n 's/.*Overall exposure level for runcell-fcgi.service: \([0-9.]*\).*/\1/p' "$T/sec.out")
        echo "# systemd-analyze security: runcell-fcgi.service exposure $score"
        check fcgi_security_exposure_at_most_2 awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }'
    else
        t_skip fcgi_security_exposure_at_most_2 "systemd-analyze security --offline not supported here"
    fi
fi

# ---- the security choices, as written ----------------------------------------------------------
F=systemd/runcell-fcgi.service
L=systemd/runcell-launcher.service
check fcgi_dedicated_user test "$(unit_value $F User)" = runcell-fcgi
check fcgi_not_dynamic_user bash -c "! grep -q '^DynamicUser=yes' $F"
check fcgi_no_new_privileges test "$(unit_value $F NoNewPrivileges)" = yes
check fcgi_protect_system_strict test "$(unit_value $F ProtectSystem)" = strict
check fcgi_private_tmp test "$(unit_value $F PrivateTmp)" = yes
check fcgi_empty_capability_set bash -c "grep -qx 'CapabilityBoundingSet=' $F && ! grep -q '^CapabilityBoundingSet=.' $F"
check fcgi_address_families test "$(unit_value $F RestrictAddressFamilies)" = "AF_UNIX AF_INET AF_INET6"
check fcgi_syscall_filter test "$(unit_value $F SystemCallFilter)" = @system-service
check fcgi_env_file test "$(unit_value $F EnvironmentFile)" = /etc/runcell/runcell.env
check fcgi_socket_activated test "$(unit_value $F Requires)" = runcell-fcgi.socket
check fcgi_no_runtime_directory bash -c "! grep -q '^RuntimeDirectory=' $F $L"
check launcher_kill_mode_process test "$(unit_value $L KillMode)" = process
check launcher_delegate test "$(unit_value $L Delegate)" = yes
check launcher_runs_as_root bash -c "! grep -q '^User=' $L"
check launcher_never_reads_fcgi_env bash -c "! grep -q 'runcell.env' <(grep -v '^#' $L)"
check launcher_env_file bash -c "grep -q -- '--env-file /etc/runcell/launcher.env' $L"
check launcher_no_namespacing bash -c \
    "! grep -qE '^(PrivateTmp|ProtectSystem|ProtectHome|PrivateDevices|PrivateMounts|ReadWritePaths|SystemCallFilter|RestrictAddressFamilies)=' $L"

# ---- the pieces agree ----------------------------------------------------------------------------
fcgi_sock=$(unit_value systemd/runcell-fcgi.socket ListenStream)
launcher_sock=$(unit_value systemd/runcell-launcher.socket ListenSequentialPacket)
check fcgi_socket_path test "$fcgi_sock" = /run/runcell/fcgi.sock
# Every fastcgi_pass of the snippet (webhook, healthz, metrics) goes to that socket.
check nginx_passes_to_the_fcgi_socket test "$(grep -E '^[[:space:]]*fastcgi_pass ' nginx/runcell.conf |
    sort | uniq -c | tr -s ' ')" = " 3 fastcgi_pass unix:$fcgi_sock;"
check launcher_socket_is_seqpacket test "$launcher_sock" = /run/runcell/launcher.sock
check launcher_socket_owned_by_fcgi_user test \
    "$(unit_value systemd/runcell-launcher.socket SocketUser) $(unit_value systemd/runcell-launcher.socket SocketMode)" = "runcell-fcgi 0600"
check sysusers_creates_the_fcgi_user grep -qE '^u[[:space:]]+runcell-fcgi[[:space:]]' systemd/runcell.sysusers
if [ -x "$BUILD/runcell-fcgi" ]; then
    check fcgi_default_launcher_socket bash -c \
        "'$BUILD/runcell-fcgi' --help | grep -q '(default $launcher_sock)'"
else
    t_skip fcgi_default_launcher_socket "$BUILD/runcell-fcgi not built"
fi
if [ -x "$BUILD/runcell-launcher" ]; then
    check launcher_default_dirs bash -c "'$BUILD/runcell-launcher' --help | tr -s ' \n' ' ' |
        grep -q 'default /var/lib/runcell' && '$BUILD/runcell-launcher' --help | tr -s ' \n' ' ' | grep -q 'default /run/runcell'"
else
    t_skip launcher_default_dirs "$BUILD/runcell-launcher not built"
fi

# ---- sysusers.d and tmpfiles.d on a scratch root -----------------------------------------------
R=$T/root
mkdir -p "$R/etc/runcell" "$R/usr/local/lib/sysusers.d" "$R/usr/local/lib/tmpfiles.d"
cp systemd/runcell.sysusers "$R/usr/local/lib/sysusers.d/runcell.conf"
cp systemd/runcell.conf "$R/usr/local/lib/tmpfiles.d/runcell.conf"
for f in passwd group; do grep -E '^(root|nobody|nogroup|www-data):' "/etc/$f" >"$R/etc/$f" || true; done
: >"$R/etc/shadow"
: >"$R/etc/gshadow"
for f in runcell.env launcher.env policy.json; do (umask 022 && : >"$R/etc/runcell/$f"); done
if ! command -v systemd-sysusers >/dev/null 2>&1 || ! command -v systemd-tmpfiles >/dev/null 2>&1; then
    t_skip sysusers_tmpfiles "systemd-sysusers / systemd-tmpfiles not installed"
elif [ "$(id -u)" != 0 ]; then
    t_skip sysusers_tmpfiles "needs root (tmpfiles sets owners)"
else
    check sysusers_applies bash -c "systemd-sysusers --root='$R' '$R/usr/local/lib/sysusers.d/runcell.conf' >'$T/sysusers.out' 2>&1"
    fcgi_gid=$(awk -F: '$1 == "runcell-fcgi" {print $3}' "$R/etc/group")
    check sysusers_user_and_group bash -c "awk -F: '\$1 == \"runcell-fcgi\" && \$7 ~ /nologin/' '$R/etc/passwd' | grep -q . && [ -n '$fcgi_gid' ]"
    check tmpfiles_applies systemd-tmpfiles --root="$R" --create "$R/usr/local/lib/tmpfiles.d/runcell.conf"
    mode() { stat -c '%a %u:%g' "$R$1"; }
    check tmpfiles_run_dir test "$(mode /run/runcell)" = "711 0:0"
    check tmpfiles_state_dir test "$(mode /var/lib/runcell)" = "711 0:0"
    check tmpfiles_conf_dir test "$(mode /etc/runcell)" = "755 0:0"
    check tmpfiles_fcgi_env_0640_root_fcgi_group test "$(mode /etc/runcell/runcell.env)" = "640 0:$fcgi_gid"
    check tmpfiles_launcher_env_root_only test "$(mode /etc/runcell/launcher.env)" = "600 0:0"
    check tmpfiles_policy_root_only test "$(mode /etc/runcell/policy.json)" = "600 0:0"
    # Idempotent: a second run changes nothing and succeeds.
    check tmpfiles_idempotent systemd-tmpfiles --root="$R" --create "$R/usr/local/lib/tmpfiles.d/runcell.conf"
fi

# ---- the example configuration covers every documented variable --------------------------------
# (the variables each binary's --help lists; the launcher's two documented exceptions are a
# test-only hook and an option the launcher refuses on purpose)
vars_in_help() { "$1" --help 2>&1 | grep -oE '\b(ANTHROPIC|RUNCELL)_[A-Z0-9_]+' | sort -u; }
vars_in_file() { grep -oE '^#?(ANTHROPIC|RUNCELL)_[A-Z0-9_]+=' "$1" | tr -d '#=' | sort -u; }
for pair in runcell-fcgi:examples/runcell.env runcell-launcher:examples/launcher.env; do
    b=${pair%%:*} f=${pair#*:}
    if [ ! -x "$BUILD/$b" ]; then
        t_skip "example_env_covers_$b" "$BUILD/$b not built"
        continue
    fi
    missing=$(comm -23 <(vars_in_help "$BUILD/$b" | grep -vx -e RUNCELL_BROKER_HOSTS_FILE \
        -e RUNCELL_ALLOW_ENVIRONMENT_KEY_BROKERING) <(vars_in_file "$f") | tr '\n' ' ')
    check "example_env_covers_$b" test -z "$missing"
    [ -z "$missing" ] || echo "#   $f lacks: $missing"
    unknown=$(comm -13 <(vars_in_help "$BUILD/$b") <(vars_in_file "$f") | tr '\n' ' ')
    check "example_env_only_known_variables_$b" test -z "$unknown"
    [ -z "$unknown" ] || echo "#   $f has unknown: $unknown"
done
# The launcher's own env-file parser reads the example (filled in) without a complaint: the admin
# CLI, reading the same file, gets as far as connecting to the (absent) daemon.
if [ -x "$BUILD/runcell" ]; then
    sed -e "s|^RUNCELL_SNAPSHOT=\$|RUNCELL_SNAPSHOT=sha256:$(printf '%064d' 0)|" \
        -e 's|^RUNCELL_FCGI_UID=$|RUNCELL_FCGI_UID=999|' examples/launcher.env >"$T/launcher.env"
    RUNCELL_RUN_DIR=$T/run RUNCELL_STATE_DIR=$T/state RUNCELL_LAUNCHER_SOCKET=$T/none.sock \
        "$BUILD/runcell" --env-file "$T/launcher.env" status >"$T/cli.out" 2>&1
    check launcher_example_env_parses bash -c "grep -q 'connect' '$T/cli.out' && ! grep -q 'configuration' '$T/cli.out'"
else
    t_skip launcher_example_env_parses "$BUILD/runcell not built"
fi
# Plain NAME=VALUE lines only (systemd's EnvironmentFile= and the launcher's parser agree on those).
check example_env_files_plain_lines bash -c "! grep -hvE '^(#.*|[A-Z_][A-Z0-9_]*=[^[:space:]\"\x27]*)?$' examples/runcell.env examples/launcher.env | grep -q ."
check launcher_example_holds_no_key bash -c "! grep -qE '^#?ANTHROPIC_(API|ENVIRONMENT)_KEY|^#?ANTHROPIC_WEBHOOK_SIGNING_KEY' examples/launcher.env"
check examples_hold_no_secret bash -c "! grep -qE 'sk-ant-[A-Za-z0-9]|whsec_[A-Za-z0-9+/]{8}' examples/runcell.env examples/launcher.env examples/policy.json"
check fcgi_example_secrets_empty bash -c "grep -qx 'ANTHROPIC_ENVIRONMENT_KEY=' examples/runcell.env && grep -qx 'ANTHROPIC_WEBHOOK_SIGNING_KEY=' examples/runcell.env"

# The example policy is a valid policy for the broker (parsed by the real parser).
if [ -x "$BUILD/tests/tools/egress_proxy" ]; then
    timeout 10 "$BUILD/tests/tools/egress_proxy" --policy examples/policy.json --listen 127.0.0.1:0 \
        --ready-file "$T/proxy.ready" --audit "$T/audit" >"$T/proxy.out" 2>&1 &
    ppid=$!
    for _ in $(seq 100); do [ -s "$T/proxy.ready" ] && break; kill -0 $ppid 2>/dev/null || break; sleep 0.05; done
    check example_policy_parses test -s "$T/proxy.ready"
    check example_policy_no_catch_all grep -qF 'catch_all\":false' "$T/proxy.out"
    kill $ppid 2>/dev/null
    wait $ppid 2>/dev/null
else
    t_skip example_policy_parses "$BUILD/tests/tools/egress_proxy not built"
fi
check example_manifest_is_json bash -c "jq -e '.tools | length > 0' examples/tools-manifest.json >/dev/null"

t_done

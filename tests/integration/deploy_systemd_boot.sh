#!/usr/bin/env bash
# tests/integration/deploy_systemd_boot.sh - the systemd units (systemd/*.socket, *.service, the
# sysusers.d and tmpfiles.d files) under a real systemd as PID 1 (issue 8, "Deployment").
#
# deploy_units.sh checks the unit files with `systemd-analyze verify`; this one boots them. The
# container is `systemd-nspawn -b` over this host's own root: an overlayfs whose lower layer is
# "/" (read-only, nothing on the host changes) and whose upper layer is a tmpfs, with its own
# network namespace (--private-network: only its loopback) and its own machine id. It needs no
# download and boots in a few seconds, so it is a normal CI test. Inside, as an operator would
# (docs/DEPLOYMENT.md): `make install DESTDIR=<the container's root>`, systemd-sysusers,
# systemd-tmpfiles --create, the env files filled in, `systemctl enable --now` of both sockets.
# Then it checks:
#   - sysusers created the runcell-fcgi system user; tmpfiles created /run/runcell and
#     /var/lib/runcell (0711) and set the modes and group of the files in /etc/runcell;
#   - both sockets listen with the owner and mode of their units, and neither service runs yet;
#   - socket activation: a FastCGI request to /run/runcell/fcgi.sock (cgi-fcgi, as nginx would
#     send it) starts runcell-fcgi.service, which answers it; /metrics through it connects to
#     /run/runcell/launcher.sock, which starts runcell-launcher.service;
#   - runcell-fcgi runs as runcell-fcgi with the hardening in force: `systemctl show` says
#     NoNewPrivileges=yes, an empty CapabilityBoundingSet, ProtectSystem=strict, and the running
#     process has NoNewPrivs 1, CapBnd 0, a seccomp filter and a read-only root;
#   - its env file is read: a delivery signed with the key in /etc/runcell/runcell.env is
#     accepted (200), a wrong signature is not (401);
#   - a signed delivery through runcell-fcgi (the emulator runs in the container's network
#     namespace) is claimed and handed to runcell-launcher, which starts a shim;
#   - runcell-launcher has KillMode=process and Delegate=yes; when the session's container can
#     run inside the nspawn container, `systemctl restart runcell-launcher` leaves its shim
#     running and the new daemon adopts it. Where runc cannot (on a host with cgroup v1
#     controllers, as this one, nspawn mounts them read-only: "mkdir /sys/fs/cgroup/cpuset/
#     runcell/...: read-only file system"), the session check says "skipped" with the launcher's
#     reason, and a stand-in process started by the unit (so in its cgroup, like a shim) checks
#     the same KillMode behaviour under the real systemd: it survives the restart.
#     The container allows keyctl (nspawn's seccomp filter forbids it by default; runc and the
#     shim use a fresh session keyring) and sets RUNCELL_WORKSPACE_SIZE=0 (no loop devices).
# Skipped (with the reason) when not root, without systemd-nspawn (Debian package
# systemd-container, scripts/install-deps.sh), overlayfs or cgi-fcgi, or when the container does
# not boot here. About 20 s (`make install` of the binaries as built, without rebuilding them).
# RUNCELL_SDBOOT_KEEP=1 keeps the temp dir and the container's journal (journal.txt).
# shellcheck source=tests/integration/emulator_lib.sh
. "$(dirname "$0")/emulator_lib.sh"

ROOT=$(pwd)
case "$BUILD" in /*) BIN=$BUILD ;; *) BIN=$ROOT/$BUILD ;; esac
T=
NSPAWN_PID=
LEADER=

sb_why_not() {
    local b
    [ "$(id -u)" = 0 ] || { echo "needs root (systemd-nspawn, mounts)"; return; }
    command -v systemd-nspawn >/dev/null || { echo "systemd-nspawn not installed (systemd-container)"; return; }
    [ -x /lib/systemd/systemd ] || { echo "systemd not installed"; return; }
    grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
        { echo "no overlayfs in this kernel"; return; }
    grep -qw overlay /proc/filesystems || { echo "no overlayfs in this kernel"; return; }
    for b in cgi-fcgi unshare nsenter curl jq make; do
        command -v "$b" >/dev/null || { echo "$b not installed"; return; }
    done
    for b in runcell-fcgi runcell-launcher runcell-emulator runcell-webhook runcell-runner runcell; do
        [ -x "$BIN/$b" ] || { echo "$BIN/$b not built"; return; }
    done
    getent group www-data >/dev/null || { echo "no www-data group (nginx not installed)"; return; }
}

# ---- the container -----------------------------------------------------------------------------

# sx CMD...: run CMD inside the container (all its namespaces, its root).
sx() { nsenter -t "$LEADER" -a -- "$@"; }
# The emulator and curl run in the container's network namespace (its loopback only).
curl() { nsenter -t "$LEADER" -n -- curl "$@"; }

# shellcheck disable=SC2317 # run at exit
sb_cleanup() {
    local m
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        [ -n "${RUNCELL_SDBOOT_KEEP:-}" ] && [ -n "$LEADER" ] &&
            sx journalctl --no-pager -b >"$T/journal.txt" 2>&1
        kill -TERM "$NSPAWN_PID" 2>/dev/null # nspawn: a clean shutdown of the container
        for _ in $(seq 150); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$NSPAWN_PID" 2>/dev/null
        wait "$NSPAWN_PID" 2>/dev/null
    fi
    em_cleanup
    [ -n "$T" ] || return 0
    for m in "$T/root" "$T/rw"; do
        mountpoint -q "$m" && { umount "$m" 2>/dev/null || umount -l "$m"; }
    done
    if [ -n "${RUNCELL_SDBOOT_KEEP:-}" ]; then
        echo "# kept $T (nspawn.log, journal.txt)" >&2
    elif ! grep -q " $T/" /proc/self/mountinfo; then
        rm -rf "$T"
    fi
}
trap sb_cleanup EXIT

# sb_boot: the overlay and `systemd-nspawn -b` on it; sets LEADER (the container's PID 1 here).
# nspawn runs in a private mount namespace with a tmpfs on /run/systemd/nspawn (it insists on a
# tmpfs there; this host's /run may be a plain directory), without registering with machined
# (--register=no --keep-unit: no system bus needed on the host).
sb_boot() {
    local end
    mkdir -p "$T/rw" "$T/root"
    mount -t tmpfs -o mode=0755,size=2g sbroot "$T/rw" || return 1
    mkdir "$T/rw/upper" "$T/rw/work"
    mount -t overlay sbroot -o "lowerdir=/,upperdir=$T/rw/upper,workdir=$T/rw/work" "$T/root" || return 1
    # Its own machine id; the host's boot-time services that have no place in it masked.
    rm -f "$T/root/etc/machine-id"
    systemd-id128 new >"$T/root/etc/machine-id" 2>/dev/null ||
        tr -d - </proc/sys/kernel/random/uuid >"$T/root/etc/machine-id"
    local u
    for u in nginx.service postgresql.service getty@.service console-getty.service \
        systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
        e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer systemd-pstore.service \
        runcell-fcgi.socket runcell-launcher.socket runcell-fcgi.service runcell-launcher.service; do
        rm -f "$T/root/etc/systemd/system/$u"
    done
    for u in nginx.service postgresql.service getty@.service console-getty.service \
        systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
        e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer systemd-pstore.service; do
        ln -s /dev/null "$T/root/etc/systemd/system/$u"
    done
    rm -rf "$T/root/etc/runcell" "$T/root/run/runcell" "$T/root/var/lib/runcell"
    # shellcheck disable=SC2016 # $1, $2: the inner shell's
    unshare -m --propagation private sh -c 'mkdir -p /run/systemd/nspawn &&
        mount -t tmpfs -o mode=0755 sbnspawn /run/systemd/nspawn &&
        exec systemd-nspawn -D "$1" -b --register=no --keep-unit --private-network \
            --system-call-filter="keyctl add_key request_key" --console=passive --machine="$2"' sh "$T/root" "rc-sdboot-$$" </dev/null >"$T/nspawn.log" 2>&1 &
    NSPAWN_PID=$!
    end=$((SECONDS + 60))
    while [ $SECONDS -lt $end ]; do
        kill -0 "$NSPAWN_PID" 2>/dev/null || return 1
        LEADER=$(pgrep -P "$NSPAWN_PID" -x systemd | head -n 1)
        [ -n "$LEADER" ] && [ -S "/proc/$LEADER/root/run/systemd/private" ] && break
        LEADER=
        sleep 0.2
    done
    [ -n "$LEADER" ] || return 1
    # multi-user.target reached (or degraded: a unit of the host's failed in a container).
    timeout 90 nsenter -t "$LEADER" -a -- systemctl is-system-running --wait >"$T/state" 2>&1
    grep -qE '^(running|degraded)$' "$T/state"
}

# ---- checks --------------------------------------------------------------------------------

# prop UNIT NAME: one `systemctl show` property.
prop() { sx systemctl show -p "$2" --value "$1" 2>/dev/null; }
check_prop() { # check_prop NAME UNIT PROPERTY WANT
    local got
    got=$(prop "$2" "$3")
    if [ "$got" = "$4" ]; then t_ok "$1"; else t_fail "$1" "$2 $3=$got, want \"$4\""; fi
}
# status_field PID FIELD: a line of /proc/PID/status inside the container.
# shellcheck disable=SC2016 # awk's $1
status_field() { sx awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# fcgi_req METHOD PATH [HEADER=VALUE...] < BODY: a FastCGI request as nginx sends it, straight to
# the socket (cgi-fcgi, as root inside the container); prints the response (CGI headers, body).
fcgi_req() {
    local method=$1 path=$2 body
    shift 2
    body=$(cat)
    printf '%s' "$body" | sx env -i PATH=/usr/bin:/bin REQUEST_METHOD="$method" SCRIPT_NAME="$path" \
        REQUEST_URI="$path" DOCUMENT_URI="$path" SERVER_PROTOCOL=HTTP/1.1 GATEWAY_INTERFACE=CGI/1.1 \
        REMOTE_ADDR=127.0.0.1 CONTENT_TYPE=application/json CONTENT_LENGTH="${#body}" "$@" \
        timeout 60 cgi-fcgi -bind -connect /run/runcell/fcgi.sock 2>&1
}
status_of() { sed -n 's/^Status: \([0-9]*\).*/\1/p' | head -n 1; }

# deliver_signed ID TYPE SESSION [KEY]: a webhook signed with KEY (default the emulator's); prints
# its HTTP status.
deliver_signed() {
    local id=$1 ts sig body
    body=$(printf '{"type":"event","id":"%s","created_at":"2026-05-01T12:00:00Z","data":{"type":"%s","id":"%s","organization_id":"org","workspace_id":"ws"}}' "$1" "$2" "$3")
    ts=$(date +%s)
    sig=$(printf '%s' "$body" | ANTHROPIC_WEBHOOK_SIGNING_KEY=${4:-$WH_KEY} "$BIN/runcell-webhook" sign --id "$id" --timestamp "$ts")
    printf '%s' "$body" | fcgi_req POST /webhook HTTP_WEBHOOK_ID="$id" HTTP_WEBHOOK_TIMESTAMP="$ts" \
        HTTP_WEBHOOK_SIGNATURE="$sig" | status_of
}

wait_until() { # wait_until SECONDS CMD...
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.3
    done
}
# shellcheck disable=SC2317 # called through wait_until / check
unit_active() { [ "$(sx systemctl is-active "$1" 2>/dev/null)" = active ]; }

# ---- run ---------------------------------------------------------------------------------------

why=$(sb_why_not)
if [ -n "$why" ]; then
    t_skip all "$why"
    exit 0
fi
T=$(mktemp -d /tmp/rc-sdboot.XXXXXX)
t0=$SECONDS
if ! sb_boot; then
    t_skip all "systemd-nspawn could not boot a container here: $(grep -v '^$' "$T/nspawn.log" | tail -n 3 | tr '\n' ' ') $(cat "$T/state" 2>/dev/null)"
    exit 0
fi
t_ok booted
echo "# systemd $(sx systemctl --version | sed -n '1s/^systemd //p') booted as PID 1 in $((SECONDS - t0)) s ($(sx systemctl is-system-running 2>/dev/null))"
check pid1_is_systemd test "$(sx cat /proc/1/comm)" = systemd

# -- install, as docs/DEPLOYMENT.md says (files only: make install runs nothing). The binaries
# as built (-o: not rebuilt here, where other tests may be running them) --
no_rebuild=()
for b in "$BUILD"/runcell*; do
    [ -x "$b" ] && [ -f "$b" ] && no_rebuild+=(-o "$b")
done
if ! make -s "${no_rebuild[@]}" BUILD="$BUILD" DESTDIR="$T/root" install >"$T/install.log" 2>&1; then
    t_fail make_install "$(tail -n 5 "$T/install.log")"
    t_done
fi
t_ok make_install
echo "# make install into the container: $((SECONDS - t0)) s since the start"
mkdir -p "$T/root/var/lib/runcell-test"
rl_tools=$T/tools.json
cp examples/tools-manifest.json "$rl_tools"
if ! BUILD=$BUILD scripts/build-snapshot.sh --base minimal --out "$T/root/var/lib/runcell-test/minimal" \
    --tools "$rl_tools" >/dev/null 2>"$T/snapshot.err"; then
    t_fail snapshot "$(tail -n 3 "$T/snapshot.err")"
    t_done
fi
sx systemctl daemon-reload
sx systemd-sysusers >"$T/sysusers.out" 2>&1
# shellcheck disable=SC2317 # called through check
has_fcgi_user() { sx getent passwd runcell-fcgi >/dev/null; }
check sysusers.user_created has_fcgi_user
FUID=$(sx id -u runcell-fcgi 2>/dev/null)
check sysusers.system_uid test "${FUID:-99999}" -lt 1000
check sysusers.no_login test "$(sx getent passwd runcell-fcgi | cut -d: -f7)" = /usr/sbin/nologin
sx systemd-tmpfiles --create /usr/local/lib/tmpfiles.d/runcell.conf >"$T/tmpfiles.out" 2>&1
check tmpfiles.run_dir test "$(sx stat -c '%a %U %G' /run/runcell)" = "711 root root"
check tmpfiles.state_dir test "$(sx stat -c '%a %U %G' /var/lib/runcell)" = "711 root root"
check tmpfiles.runcell_env test "$(sx stat -c '%a %U %G' /etc/runcell/runcell.env)" = "640 root runcell-fcgi"
check tmpfiles.launcher_env test "$(sx stat -c '%a %U %G' /etc/runcell/launcher.env)" = "600 root root"
check tmpfiles.policy test "$(sx stat -c '%a %U %G' /etc/runcell/policy.json)" = "600 root root"

# -- the emulator, in the container's network namespace; the env files filled in --
EMU_WRAP=$T/emulator
printf '#!/bin/sh\nexec nsenter -t %s -n -- %s "$@"\n' "$LEADER" "$BIN/runcell-emulator" >"$EMU_WRAP"
chmod 0755 "$EMU_WRAP"
# shellcheck disable=SC2034 # read by em_start
EMU=$EMU_WRAP
em_start --scenarios tests/scenarios
mk_env ENV systemd-boot
mk_key ek "$ENV"
EKEY=$(sed -n 's/^Authorization: Bearer //p' "$EM_DIR/cred.ek")
set_conf() { # set_conf FILE NAME VALUE: the line NAME=... of an installed env file
    local f=$T/root$1
    if grep -q "^$2=" "$f"; then
        sed -i "s|^$2=.*|$2=$3|" "$f"
    else
        echo "$2=$3" >>"$f"
    fi
}
set_conf /etc/runcell/runcell.env ANTHROPIC_BASE_URL "$B"
set_conf /etc/runcell/runcell.env ANTHROPIC_ENVIRONMENT_ID "$ENV"
set_conf /etc/runcell/runcell.env ANTHROPIC_ENVIRONMENT_KEY "$EKEY"
set_conf /etc/runcell/runcell.env ANTHROPIC_WEBHOOK_SIGNING_KEY "$WH_KEY"
set_conf /etc/runcell/launcher.env ANTHROPIC_BASE_URL "$B"
set_conf /etc/runcell/launcher.env RUNCELL_SNAPSHOT /var/lib/runcell-test/minimal.tar
set_conf /etc/runcell/launcher.env RUNCELL_FCGI_UID "$FUID"
set_conf /etc/runcell/launcher.env RUNCELL_MAX_IDLE_MS 60000
# No loop device in an nspawn container (/dev/loop-control): no size cap on /workspace.
set_conf /etc/runcell/launcher.env RUNCELL_WORKSPACE_SIZE 0
cp "$rl_tools" "$T/root/etc/runcell/tools.json"

# -- the sockets --
sx systemctl enable --now runcell-fcgi.socket runcell-launcher.socket >"$T/enable.out" 2>&1
check sockets.enabled test "$(sx systemctl is-enabled runcell-fcgi.socket runcell-launcher.socket | tr '\n' ' ')" = "enabled enabled "
check sockets.listening test "$(sx systemctl is-active runcell-fcgi.socket runcell-launcher.socket | tr '\n' ' ')" = "active active "
check sockets.fcgi_owner_mode test "$(sx stat -c '%F %a %U %G' /run/runcell/fcgi.sock)" = "socket 660 root www-data"
check sockets.launcher_owner_mode test "$(sx stat -c '%F %a %U %G' /run/runcell/launcher.sock)" = "socket 600 runcell-fcgi root"
check sockets.services_not_started_yet test "$(sx systemctl is-active runcell-fcgi.service runcell-launcher.service | tr '\n' ' ')" = "inactive inactive "

# -- socket activation: runcell-fcgi --
out=$(fcgi_req GET /healthz </dev/null)
check activation.fcgi_answers test "$(status_of <<<"$out")" = 200
check activation.fcgi_healthz_body grep -q '"status":"ok"' <<<"$out"
check activation.fcgi_started unit_active runcell-fcgi.service

# -- runcell-fcgi's user and hardening --
check_prop fcgi.user runcell-fcgi.service User runcell-fcgi
check_prop fcgi.no_new_privileges runcell-fcgi.service NoNewPrivileges yes
check_prop fcgi.capability_bounding_set_empty runcell-fcgi.service CapabilityBoundingSet ""
check_prop fcgi.protect_system_strict runcell-fcgi.service ProtectSystem strict
check_prop fcgi.environment_file runcell-fcgi.service EnvironmentFiles "/etc/runcell/runcell.env (ignore_errors=no)"
FPID=$(prop runcell-fcgi.service MainPID)
check fcgi.process_uid test "$(status_field "$FPID" Uid)" = "$FUID"
check fcgi.process_no_new_privs test "$(status_field "$FPID" NoNewPrivs)" = 1
check fcgi.process_capbnd_zero test "$(status_field "$FPID" CapBnd)" = 0000000000000000
check fcgi.process_seccomp test "$(status_field "$FPID" Seccomp)" = 2
# shellcheck disable=SC2016 # awk's fields
check fcgi.process_root_read_only sx awk '$5 == "/" { split($6, o, ","); exit o[1] != "ro" }' "/proc/$FPID/mountinfo"
# Its keys came from the env file: a delivery signed with the file's key is accepted, another not.
check env_file.wrong_signature_refused test "$(deliver_signed whe_bad1 session.status_idled sesn_nothing whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=)" = 401
check env_file.signed_accepted test "$(deliver_signed whe_ok1 session.status_idled sesn_nothing)" = 200

# -- socket activation: runcell-launcher (runcell-fcgi connects to its socket for /metrics) --
out=$(fcgi_req GET /metrics </dev/null)
wait_until 30 unit_active runcell-launcher.service
check activation.launcher_started unit_active runcell-launcher.service
out=$(fcgi_req GET /metrics </dev/null)
check activation.launcher_reached grep -q '^runcell_launcher_up 1' <<<"$out"
check_prop launcher.kill_mode runcell-launcher.service KillMode process
check_prop launcher.delegate runcell-launcher.service Delegate yes
check_prop launcher.environment_not_fcgis runcell-launcher.service EnvironmentFiles ""

# -- a session in the container; a restart of the launcher leaves it running --
api POST /v1/agents "$(jq -cn --argjson t "$(jq -c '.agent.tools' tests/scenarios/bash-echo.json)" \
    '{name: "sdboot", model: "claude-sonnet-4-6", tools: $t}')"
AGENT=$(jb .id)
api POST /v1/sessions "$(jq -cn --arg a "$AGENT" --arg e "$ENV" '{agent: $a, environment_id: $e, metadata: {scenario: "bash-echo"}}')"
SID=$(jb .id)
st=$(deliver_signed whe_s1 session.status_run_started "$SID")
check session.delivery_accepted test "$st" = 200
journal() { sx journalctl --no-pager -o cat -u runcell-launcher 2>/dev/null; }
journal_has() { journal | grep -q "$1"; }
# shellcheck disable=SC2317 # called through wait_until
shim_running() { journal_has "\"session_id\":\"$SID\".*shim started (pid"; }
session_ended() { journal_has "\"session_id\":\"$SID\".*session ended"; }
wait_until 60 shim_running
check session.handed_off_shim_started shim_running
verdict=
for _ in $(seq 60); do
    api GET "/_emulator/v1/sessions/$SID/verdict"
    verdict=$(jb .state)
    [ "$verdict" = passed ] || [ "$verdict" = failed ] && break
    session_ended && break
    sleep 1
done
if [ "$verdict" = passed ]; then
    t_ok session.played_in_container
    SHIM=$(journal | sed -n "s/.*\"session_id\":\"$SID\".*shim started (pid \([0-9]*\)).*/\1/p" | head -n 1)
    check session.shim_alive sx kill -0 "$SHIM"
    OLD=$(prop runcell-launcher.service MainPID)
    sx systemctl restart runcell-launcher.service
    check restart.launcher_restarted test "$(prop runcell-launcher.service MainPID)" != "$OLD"
    check restart.shim_survives sx kill -0 "$SHIM"
    wait_until 20 journal_has "adopted the live shim of $SID"
    check restart.shim_adopted journal_has "adopted the live shim of $SID"
else
    why=$(journal | grep "\"session_id\":\"$SID\"" | grep -o '"msg":"session start failed: [^"]*' | head -n 1 | cut -d'"' -f4)
    t_skip session.played_in_container "a session cannot run inside this container: ${why:-verdict ${verdict:-none}}"
    t_skip restart.shim_survives "no session here: KillMode checked with a stand-in process instead"
    # A stand-in for a shim: a process in the unit's cgroup (started by the unit, like a shim),
    # which a restart with KillMode=process must leave alone.
    mkdir -p "$T/root/etc/systemd/system/runcell-launcher.service.d"
    printf '[Service]\nExecStartPost=/bin/sh -c "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! >/run/runcell/standin.pid"\n' \
        >"$T/root/etc/systemd/system/runcell-launcher.service.d/standin.conf"
    sx systemctl daemon-reload
    sx systemctl restart runcell-launcher.service
    SP=$(sx cat /run/runcell/standin.pid 2>/dev/null)
    check restart.standin_in_unit_cgroup sx grep -q 'runcell-launcher.service' "/proc/${SP:-0}/cgroup"
    rm -f "$T/root/etc/systemd/system/runcell-launcher.service.d/standin.conf"
    sx systemctl daemon-reload
    sx systemctl restart runcell-launcher.service
    check restart.standin_survives sx kill -0 "${SP:-0}"
    check restart.launcher_back unit_active runcell-launcher.service
fi
echo "# systemd boot test: $((SECONDS - t0)) s"
t_done

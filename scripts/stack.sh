#!/usr/bin/env bash
# scripts/stack.sh - the whole local runcell stack on loopback, under one state directory:
#
#   runcell-emulator (the local Managed Agents API, an environment created, its key minted,
#   signed webhooks delivered to nginx) -> an unprivileged nginx (nginx/test.conf, which includes
#   the production nginx/runcell.conf) -> runcell-fcgi (as nobody) -> runcell-launcher (root) ->
#   one shim and runc container per session, booted from the minimal snapshot (built if missing).
#
# With the stack up, a session created for its environment with metadata.scenario set to a loaded
# scenario (tests/scenarios/*.json, examples/demo-scenario.json) plays end to end through every
# piece; a session without one gets the emulator's default agent ("run <command>").
# `make demo`, scripts/test-e2e.sh, tests/integration/stack_e2e.sh, every test built on
# tests/integration/launcher_lib.sh (lt_setup) and the chain benchmarks (bench/chain_lib.sh) use
# it. Needs root.
#
# Usage: scripts/stack.sh up | down [--keep] | status | env | start|stop|pid DAEMON
#
#   up        start everything (daemons in the background, logs in the state dir) and print the
#             lines to eval:   eval "$(sudo scripts/stack.sh up)"
#               export ANTHROPIC_BASE_URL=http://127.0.0.1:PORT     the emulator
#               export ANTHROPIC_API_KEY=sk-ant-api03-...           its organisation key
#               export ANTHROPIC_ENVIRONMENT_ID=env_...
#               export ANTHROPIC_ENVIRONMENT_KEY=sk-ant-oat01-...
#               export ANTHROPIC_WEBHOOK_SIGNING_KEY=whsec_...
#               export RUNCELL_WEBHOOK_URL=http://127.0.0.1:PORT/webhook   nginx
#               export RUNCELL_STACK_DIR=DIR
#             (also in DIR/env, mode 0600). Already up: prints them again. Progress on stderr.
#   down      stop everything it started (pids recorded in DIR/pids), every session of this
#             stack (shims, containers, netns, mounts), then remove DIR (--keep, or
#             RUNCELL_STACK_KEEP=1: keep it, logs included). Idempotent.
#   status    which daemons run, the URLs, and the launcher's `runcell status` and `sessions`.
#   env       print the eval lines of a running stack.
#   start|stop|pid launcher|fcgi|nginx
#             restart one daemon, or print its pid (for fault tests: kill -9 the launcher,
#             then `start launcher`; the emulator cannot be restarted, its state is in memory).
#             `start launcher` applies RUNCELL_STACK_LAUNCHER_ENV on top of DIR/launcher.env.
#
# Environment (all optional; launcher_lib-style tests set these):
#   RUNCELL_STACK_DIR            state dir (default build/stack-run); absolute or relative to
#                                the checkout, [A-Za-z0-9/._-] only
#   BUILD                        the binaries (default build)
#   RUNCELL_STACK_PORT           nginx's port (default: a free one)
#   RUNCELL_STACK_SCENARIOS      scenario files or dirs loaded into the emulator (default
#                                "tests/scenarios examples/demo-scenario.json")
#   RUNCELL_STACK_EMULATOR_ARGS  extra emulator arguments (default "--webhook-backoff-ms 500,2000")
#   RUNCELL_STACK_TOOLS          tools manifest of the snapshot (default: the scenarios' run_tests
#                                manifest, written to DIR/tools.json)
#   RUNCELL_STACK_SNAPSHOT       a snapshot tarball or sha256: digest to use instead of the
#                                cached minimal one ($BUILD/snapshots/stack-<manifest sha>.tar)
#   RUNCELL_STACK_CAPACITY       the launcher's RUNCELL_CAPACITY (default 4)
#   RUNCELL_STACK_LAUNCHER_ENV   "VAR=VALUE ..." added to / replacing the launcher's settings
#                                (DIR/launcher.env), e.g. "RUNCELL_MAX_IDLE_MS=5000"
#   RUNCELL_STACK_FCGI_ENV       the same for runcell-fcgi (DIR/fcgi/fcgi.env)
#   RUNCELL_STACK_NGINX_CONF     an nginx.conf template used instead of nginx/test.conf, with
#                                the same placeholders (@PREFIX@ = DIR/nginx, @PORT@,
#                                @FCGI_SOCKET@); it must pass GET /healthz to runcell-fcgi (`up`
#                                waits for it). DIR/nginx/logs exists for its logs. The
#                                integration tests use one without limit_req (launcher_lib.sh)
#   RUNCELL_STACK_KEEP           `down` keeps DIR (as --keep)
#   RUNCELL_STACK_SHARED_DIR=1   DIR is the caller's own existing directory and may hold other
#                                files (left alone): `up` takes it over though it holds no stack
#                                yet, `down` never removes it (as --keep). launcher_lib.sh runs
#                                each test's stack in the test's temp dir this way (so the
#                                session socket paths stay as short as they were)
#   RUNCELL_STACK_DEBUG          a failed `up` leaves everything running, for a look
# Several stacks can run at once, each with its own RUNCELL_STACK_DIR (and port): `down` stops
# only the processes and sessions of its own directory.
# Exit status: 0 ok, 1 failure (what failed, and the log's tail, on stderr), 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
prog=stack.sh

say() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
usage_die() { printf '%s: %s (see --help)\n' "$prog" "$*" >&2; exit 2; }

BUILD=${BUILD:-build}
case "$BUILD" in /*) BIN=$BUILD ;; *) BIN=$ROOT/$BUILD ;; esac
D=${RUNCELL_STACK_DIR:-build/stack-run}
case "$D" in /*) ;; *) D=$ROOT/$D ;; esac
D=${D%/}
[[ $D =~ ^/[A-Za-z0-9/._-]+$ ]] || usage_die "RUNCELL_STACK_DIR must be a path of [A-Za-z0-9/._-]"
case "$D" in / | /tmp | /run | /var | /var/lib | /etc | /usr | /home | /root | "$ROOT" | "$BIN")
    usage_die "RUNCELL_STACK_DIR=$D: refusing a system or source directory" ;;
esac
MARK=$D/.runcell-stack # a directory without it is never removed by `down`
NOBODY=65534
LAUNCHER=$BIN/runcell-launcher

# ---- small helpers -----------------------------------------------------------------------------

wait_for() { # wait_for SECONDS CMD...
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -lt "$end" ] || return 1
        sleep 0.1
    done
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
as_root() { [ "$(id -u)" = 0 ]; }
# runs_binary PID PATH: the process runs PATH (also when PATH was rebuilt since it started: the
# kernel then shows "PATH (deleted)").
runs_binary() {
    local exe
    exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
    [ "$exe" = "$2" ] || [ "$exe" = "$2 (deleted)" ]
}
# pid_of NAME: the recorded pid when that process still runs the recorded binary, else nothing.
pid_of() {
    local f=$D/pids/$1 pid exe
    [ -f "$f" ] || return 0
    read -r pid exe <"$f" || true
    [ -n "${pid:-}" ] && runs_binary "$pid" "$exe" && echo "$pid"
    return 0
}
# record NAME PID BINARY: remembered with the binary's real path, so a reused pid is never killed.
record() {
    mkdir -p "$D/pids"
    echo "$2 $(readlink -f "$3")" >"$D/pids/$1"
}
pid_gone() { # gone, or a zombie nobody reaped yet (the daemons are not our children)
    local st
    read -r st 2>/dev/null <"/proc/$1/stat" || return 0
    st=${st##*) }
    [ "${st%% *}" = Z ]
}
stop_pid() { # stop_pid NAME [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 10)
    local pid
    pid=$(pid_of "$1")
    [ -n "$pid" ] || { rm -f "$D/pids/$1"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    wait_for "${2:-10}" pid_gone "$pid" || {
        say "$1 (pid $pid) did not stop: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 5 pid_gone "$pid" || true
    }
    rm -f "$D/pids/$1"
}
log_tail() { tail -n 8 "$1" 2>/dev/null | sed 's/^/    | /' >&2 || true; }
# Runs a command as a daemon in its own session (so it outlives this script and an interrupted
# caller's terminal), no inherited environment but PATH (the configuration is in its files).
spawn() { # spawn NAME LOG BINARY-FOR-RECORD CMD...
    local name=$1 log=$2 exe=$3
    shift 3
    setsid env -i PATH="$PATH" LANG=C "$@" </dev/null >>"$log" 2>&1 &
    record "$name" $! "$exe"
}

# ---- configuration files -----------------------------------------------------------------------

# The scenarios' custom tool (the same as tests/integration/runner_lib.sh rl_write_manifest):
# run_tests answers "3 passed" (and fails or crashes on the filters "fail" / "crash").
write_default_tools() {
    cat >"$1" <<'EOF'
{
  "version": 1,
  "tools": [
    {
      "name": "run_tests",
      "description": "Run the project's tests",
      "input_schema": {"type": "object", "properties": {"filter": {"type": "string"}}},
      "shell": true,
      "program": "/bin/sh",
      "script": "f=${1:-all}; case \"$f\" in fail) echo \"1 failed: test_fail (filter: $f)\"; exit 1;; crash) echo \"Error: test runner crashed (filter: $f)\"; exit 2;; slow) sleep 1;; esac; echo \"3 passed, 0 failed (filter: $f)\"",
      "argv": [{"input": "filter", "optional": true}],
      "timeout_ms": 60000,
      "max_output_bytes": 102400
    }
  ]
}
EOF
}

# settings FILE DEFAULTS... -- OVERRIDES...: writes NAME=VALUE lines, an override replacing the
# default of the same name (so the file never holds one name twice).
write_settings() {
    local file=$1 kv name
    shift
    local -A val=()
    local order=()
    for kv in "$@"; do
        [ "$kv" = -- ] && continue
        [[ $kv == [A-Z]*=* ]] || die "bad setting \"$kv\" (want NAME=VALUE)"
        name=${kv%%=*}
        [ -n "${val[$name]+x}" ] || order+=("$name")
        val[$name]=${kv#*=}
    done
    : >"$file"
    for name in "${order[@]}"; do
        [ -z "${val[$name]}" ] || printf '%s=%s\n' "$name" "${val[$name]}" >>"$file"
    done
}

# The minimal snapshot with the stack's tools manifest, cached in $BUILD/snapshots by the
# manifest's digest and rebuilt when missing or older than the runner or the build script.
snapshot() {
    local tools=$1 sha cache tmp
    if [ -n "${RUNCELL_STACK_SNAPSHOT:-}" ]; then
        echo "$RUNCELL_STACK_SNAPSHOT"
        return 0
    fi
    sha=$(sha256sum <"$tools" | cut -c1-12)
    cache=$BIN/snapshots/stack-$sha
    if [ -f "$cache.tar" ] && [ -f "$cache.json" ] && ! [ "$BIN/runcell-runner" -nt "$cache.tar" ] &&
        ! [ scripts/build-snapshot.sh -nt "$cache.tar" ]; then
        say "snapshot: $cache.tar (cached, $(jq -r .digest "$cache.json" | cut -c1-19)...)"
        echo "$cache.tar"
        return 0
    fi
    say "building the minimal snapshot (busybox, bash, runcell-runner, the tools manifest)"
    mkdir -p "$BIN/snapshots"
    tmp=$cache.tmp.$$
    BUILD=$BIN scripts/build-snapshot.sh --base minimal --out "$tmp" --tools "$tools" \
        >/dev/null 2>"$D/snapshot.log" || { log_tail "$D/snapshot.log"; die "snapshot build failed"; }
    sed "s|$tmp.tar|$cache.tar|" "$tmp.json" >"$cache.json.tmp.$$"
    mv "$tmp.tar" "$cache.tar"
    mv "$cache.json.tmp.$$" "$cache.json"
    rm -f "$tmp.json"
    say "snapshot: $cache.tar ($(jq -r .digest "$cache.json" | cut -c1-19)...)"
    echo "$cache.tar"
}

# ---- the daemons -------------------------------------------------------------------------------

start_emulator() {
    local port=$1 s extra
    mkdir -p "$D/scenarios"
    for s in ${RUNCELL_STACK_SCENARIOS:-tests/scenarios examples/demo-scenario.json}; do
        if [ -d "$s" ]; then
            cp "$s"/*.json "$D/scenarios/"
        elif [ -f "$s" ]; then
            cp "$s" "$D/scenarios/"
        else
            die "RUNCELL_STACK_SCENARIOS: $s not found"
        fi
    done
    rm -f "$D/scenarios/"*.faults.json
    read -ra extra <<<"${RUNCELL_STACK_EMULATOR_ARGS---webhook-backoff-ms 500,2000}"
    (umask 077 && : >"$D/emulator.out")
    # Its stdout (the keys) goes to a 0600 file, its log (secrets redacted) to emulator.log.
    setsid env -i PATH="$PATH" "$BIN/runcell-emulator" --listen 127.0.0.1:0 \
        --scenarios "$D/scenarios" --webhook-url "http://127.0.0.1:$port/webhook" "${extra[@]}" \
        </dev/null >"$D/emulator.out" 2>>"$D/emulator.log" &
    record emulator $! "$BIN/runcell-emulator"
    wait_for 10 grep -q '^ANTHROPIC_WEBHOOK_SIGNING_KEY=' "$D/emulator.out" || {
        log_tail "$D/emulator.log"
        die "runcell-emulator did not start"
    }
}

start_launcher() {
    rm -f "$D/run/launcher.sock" # a killed launcher leaves its socket behind
    spawn launcher "$D/launcher.log" "$LAUNCHER" "$LAUNCHER" --env-file "$D/launcher.env"
    wait_for 60 test -S "$D/run/launcher.sock" || {
        log_tail "$D/launcher.log"
        die "runcell-launcher did not start"
    }
}

start_fcgi() {
    rm -f "$D/fcgi/fcgi.sock"
    spawn fcgi "$D/fcgi.log" "$BIN/runcell-fcgi" \
        "${AS_USER[@]}" "$D/fcgi/with-env" "$BIN/runcell-fcgi" --socket "$D/fcgi/fcgi.sock"
    wait_for 10 test -S "$D/fcgi/fcgi.sock" || {
        log_tail "$D/fcgi.log"
        die "runcell-fcgi did not start"
    }
}

start_nginx() {
    local url
    url=http://127.0.0.1:$(cat "$D/nginx/port")
    spawn nginx "$D/nginx.log" "$NGINX" \
        "${AS_USER[@]}" "$NGINX" -p "$D/nginx" -c "$D/nginx/nginx.conf" -e stderr
    # Ready when a request reaches runcell-fcgi through it: /healthz is runcell-fcgi's answer.
    wait_for 10 curl -fsS -o /dev/null "$url/healthz" || {
        log_tail "$D/nginx.log"
        die "nginx (or runcell-fcgi behind it) did not answer $url/healthz"
    }
}

# nginx_conf_from TEMPLATE PORT: DIR/nginx/nginx.conf from the caller's template instead of
# nginx/test.conf (the same placeholders; the rendered runcell.conf and fastcgi_params stay there
# for it to include). A template must answer GET /healthz from runcell-fcgi: `up` waits for it.
nginx_conf_from() {
    [ -f "$1" ] || die "RUNCELL_STACK_NGINX_CONF: $1 not found"
    sed -e "s|@PREFIX@|$D/nginx|g" -e "s|@PORT@|$2|g" -e "s|@FCGI_SOCKET@|$D/fcgi/fcgi.sock|g" \
        "$1" >"$D/nginx/nginx.conf.tmp"
    if grep -q '@[A-Z_]*@' "$D/nginx/nginx.conf.tmp"; then
        die "RUNCELL_STACK_NGINX_CONF: unknown placeholder $(grep -o '@[A-Z_]*@' "$D/nginx/nginx.conf.tmp" | head -n 1)"
    fi
    mv "$D/nginx/nginx.conf.tmp" "$D/nginx/nginx.conf"
}

# ---- up ----------------------------------------------------------------------------------------

require() {
    local b t
    as_root || die "needs root (the launcher starts runc containers and network namespaces)"
    for b in runcell-emulator runcell-fcgi runcell-launcher runcell-runner runcell; do
        [ -x "$BIN/$b" ] || die "$BIN/$b is not built (make BUILD=$BUILD all)"
    done
    for t in runc curl jq setpriv setsid python3 sha256sum pgrep; do
        command -v "$t" >/dev/null || die "$t is not installed (scripts/install-deps.sh)"
    done
    NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
    [ -x "$NGINX" ] || die "nginx is not installed (scripts/install-deps.sh)"
}

# The daemons' own files, in the state dir (mode 0711: nobody may traverse, not list).
layout() {
    mkdir -p "$D"
    chmod 0711 "$D"
    : >"$MARK"
    mkdir -p "$D/pids" "$D/state" "$D/run" "$D/fcgi" "$D/nginx"
    [ -f "$D/bin" ] || echo "$BIN" >"$D/bin" # down and status use the binaries up used
    chmod 0711 "$D/run"
    AS_USER=()
    if as_root; then
        AS_USER=(setpriv "--reuid=$NOBODY" "--regid=$NOBODY" --clear-groups)
        chown $NOBODY:$NOBODY "$D/fcgi"
        chmod 0700 "$D/fcgi"
    fi
}

# cleanup_failed_up: an `up` that fails half-way stops what it started.
failed_up() {
    local rc=$?
    [ $rc -eq 0 ] && return 0
    [ -n "${RUNCELL_STACK_DEBUG:-}" ] && exit $rc
    say "up failed: stopping what was started (logs kept in $D)"
    RUNCELL_STACK_KEEP=1 down >/dev/null 2>&1 || true
    exit $rc
}

up() {
    local port base api_key wh_key env_id env_key tools snap url t0=$SECONDS
    require
    if [ -n "$(pid_of emulator)" ] && [ -f "$D/env" ]; then
        say "already up in $D"
        cat "$D/env"
        return 0
    fi
    if [ -d "$D" ] && { [ -z "${RUNCELL_STACK_SHARED_DIR:-}" ] || [ -f "$MARK" ]; }; then
        say "removing the leftovers of an earlier stack in $D"
        down >/dev/null
    fi
    layout
    trap failed_up EXIT

    tools=$D/tools.json
    if [ -n "${RUNCELL_STACK_TOOLS:-}" ]; then cp "$RUNCELL_STACK_TOOLS" "$tools"; else write_default_tools "$tools"; fi
    snap=$(snapshot "$tools")

    port=${RUNCELL_STACK_PORT:-$(free_port)}
    url=http://127.0.0.1:$port/webhook
    say "starting runcell-emulator (webhooks to $url)"
    start_emulator "$port"
    base=$(sed -n 's/^ANTHROPIC_BASE_URL=//p' "$D/emulator.out")
    api_key=$(sed -n 's/^ANTHROPIC_API_KEY=//p' "$D/emulator.out")
    wh_key=$(sed -n 's/^ANTHROPIC_WEBHOOK_SIGNING_KEY=//p' "$D/emulator.out")

    say "creating the environment and minting its key (scripts/create-environment.sh)"
    (umask 077 && ANTHROPIC_BASE_URL=$base ANTHROPIC_API_KEY=$api_key \
        scripts/create-environment.sh --name runcell-stack --mint-key yes >"$D/created.env" 2>>"$D/setup.log") ||
        { log_tail "$D/setup.log"; die "create-environment.sh failed"; }
    env_id=$(sed -n 's/^export ANTHROPIC_ENVIRONMENT_ID=//p' "$D/created.env")
    env_key=$(sed -n 's/^export ANTHROPIC_ENVIRONMENT_KEY=//p' "$D/created.env")
    rm -f "$D/created.env"
    if [ -z "$env_id" ] || [ -z "$env_key" ]; then die "create-environment.sh printed no id or key"; fi

    (
        umask 077
        {
            printf 'export ANTHROPIC_BASE_URL=%q\n' "$base"
            printf 'export ANTHROPIC_API_KEY=%q\n' "$api_key"
            printf 'export ANTHROPIC_ENVIRONMENT_ID=%q\n' "$env_id"
            printf 'export ANTHROPIC_ENVIRONMENT_KEY=%q\n' "$env_key"
            printf 'export ANTHROPIC_WEBHOOK_SIGNING_KEY=%q\n' "$wh_key"
            printf 'export RUNCELL_WEBHOOK_URL=%q\n' "$url"
            printf 'export RUNCELL_STACK_DIR=%q\n' "$D"
        } >"$D/env.tmp"
    )

    # The launcher's settings: no key at all (its shims inherit them).
    local capacity=${RUNCELL_STACK_CAPACITY:-4} fuid=
    as_root && fuid=$NOBODY
    local -a overrides=()
    read -ra overrides <<<"${RUNCELL_STACK_LAUNCHER_ENV:-}"
    (umask 077 && write_settings "$D/launcher.env" \
        RUNCELL_STATE_DIR="$D/state" RUNCELL_RUN_DIR="$D/run" \
        RUNCELL_LAUNCHER_SOCKET="$D/run/launcher.sock" RUNCELL_FCGI_UID="$fuid" \
        RUNCELL_CAPACITY="$capacity" RUNCELL_SNAPSHOT="$snap" \
        RUNCELL_TOOLS_MANIFEST=/etc/runcell/tools.json ANTHROPIC_BASE_URL="$base" \
        RUNCELL_MAX_IDLE_MS=2000 RUNCELL_STOP_GRACE_MS=3000 RUNCELL_SESSION_LOCK_WAIT_MS=30000 \
        -- "${overrides[@]}")
    say "starting runcell-launcher (root, no key; snapshot import, capacity $capacity)"
    start_launcher

    # runcell-fcgi's settings: both keys, in a 0600 file its own user sources (never argv).
    read -ra overrides <<<"${RUNCELL_STACK_FCGI_ENV:-}"
    (umask 077 && write_settings "$D/fcgi/fcgi.env.plain" \
        ANTHROPIC_BASE_URL="$base" ANTHROPIC_ENVIRONMENT_ID="$env_id" \
        ANTHROPIC_ENVIRONMENT_KEY="$env_key" ANTHROPIC_WEBHOOK_SIGNING_KEY="$wh_key" \
        RUNCELL_LAUNCHER_SOCKET="$D/run/launcher.sock" RUNCELL_FCGI_THREADS=4 \
        -- "${overrides[@]}" &&
        sed 's/^/export /' "$D/fcgi/fcgi.env.plain" >"$D/fcgi/fcgi.env" && rm -f "$D/fcgi/fcgi.env.plain")
    printf '#!/bin/sh\n. %s\nexec "$@"\n' "$D/fcgi/fcgi.env" >"$D/fcgi/with-env"
    chmod 0755 "$D/fcgi/with-env"
    as_root && chown $NOBODY:$NOBODY "$D/fcgi/fcgi.env"
    say "starting runcell-fcgi (as nobody)"
    start_fcgi

    scripts/render-nginx-test-conf.sh --prefix "$D/nginx" --port "$port" \
        --fcgi-socket "$D/fcgi/fcgi.sock" >/dev/null
    [ -z "${RUNCELL_STACK_NGINX_CONF:-}" ] || nginx_conf_from "$RUNCELL_STACK_NGINX_CONF" "$port"
    mkdir -p "$D/nginx/logs"
    echo "$port" >"$D/nginx/port"
    as_root && chown -R $NOBODY:$NOBODY "$D/nginx"
    say "starting nginx (as nobody, 127.0.0.1:$port)"
    start_nginx

    mv "$D/env.tmp" "$D/env"
    trap - EXIT
    say "up in $((SECONDS - t0)) s: state, logs and pids in $D; stop with: scripts/stack.sh down"
    cat "$D/env"
}

# ---- down --------------------------------------------------------------------------------------

# This stack's shims: processes of the launcher binary (or of the one it was rebuilt from) with a
# shim's argv, holding a file under $D open (the session lock), other than the daemon.
stack_shims() {
    local p daemon exe
    daemon=$(pid_of launcher)
    exe=$(readlink -f "$LAUNCHER")
    for p in $(pgrep -f -- "--shim --snapshot" 2>/dev/null); do # a shim's argv
        [ "$p" = "$daemon" ] && continue
        runs_binary "$p" "$exe" || continue
        if find "/proc/$p/fd" -mindepth 1 -maxdepth 1 -lname "$D/*" 2>/dev/null | grep -q .; then
            echo "$p"
        fi
    done
}

stop_sessions() {
    local sid p
    [ -f "$D/launcher.env" ] || return 0
    # Each live session stopped as an operator would: the shim stops its container, force-stops
    # the work item (the emulator is still up), cleans up.
    while read -r sid; do
        timeout 30 env -i PATH="$PATH" "$BIN/runcell" --env-file "$D/launcher.env" stop "$sid" --wait \
            </dev/null >/dev/null 2>&1 || true
    done < <(find "$D/run/sessions" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null)
    for p in $(stack_shims); do kill -TERM "$p" 2>/dev/null || true; done
    wait_for 15 test -z "$(stack_shims)" || {
        for p in $(stack_shims); do kill -KILL "$p" 2>/dev/null || true; done
        wait_for 5 test -z "$(stack_shims)" || true
    }
}

remove_leftovers() {
    local s m
    if [ -d "$D/state/runc" ] && command -v runc >/dev/null; then
        for s in $(runc --root "$D/state/runc" list -q 2>/dev/null); do
            runc --root "$D/state/runc" delete --force "$s" >/dev/null 2>&1 || true
        done
    fi
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v p="$D/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r)
}

# The binaries the stack was started with (BUILD may differ in the shell calling down/status).
use_recorded_bin() {
    if [ -f "$D/bin" ]; then
        BIN=$(cat "$D/bin")
        LAUNCHER=$BIN/runcell-launcher
    fi
}

down() {
    local keep=${RUNCELL_STACK_KEEP:-}${RUNCELL_STACK_SHARED_DIR:-}
    [ "${1:-}" = --keep ] && keep=1
    if [ ! -d "$D" ]; then
        say "nothing to stop ($D does not exist)"
        return 0
    fi
    [ -f "$MARK" ] || die "$D is not a stack directory (no $(basename "$MARK")): not touching it"
    use_recorded_bin
    stop_pid nginx 5
    stop_pid fcgi 20
    stop_sessions
    stop_pid launcher 10
    remove_leftovers
    stop_pid emulator 5
    if [ -n "$keep" ]; then
        rm -f "$D/env" "$D/env.tmp" "$D/fcgi/fcgi.env" "$D/emulator.out" # the keys
        say "stopped; kept $D (logs)"
    elif [ -n "$(awk -v p="$D/" 'index($5, p) == 1' /proc/self/mountinfo)" ]; then
        die "stopped, but mounts remain under $D: not removing it"
    else
        rm -rf --one-file-system "$D"
        say "stopped and removed $D"
    fi
}

# ---- status ------------------------------------------------------------------------------------

status() {
    local n pid any=0
    if [ ! -f "$MARK" ]; then
        echo "no stack in $D"
        return 1
    fi
    echo "stack in $D"
    use_recorded_bin
    for n in emulator nginx fcgi launcher; do
        pid=$(pid_of "$n")
        if [ -n "$pid" ]; then echo "  $n: running (pid $pid)"; any=1; else echo "  $n: not running"; fi
    done
    if [ -f "$D/env" ]; then
        sed -n 's/^export \(ANTHROPIC_BASE_URL\|ANTHROPIC_ENVIRONMENT_ID\|RUNCELL_WEBHOOK_URL\)=/  \1 /p' "$D/env"
    fi
    if [ -n "$(pid_of launcher)" ]; then
        echo "  runcell status:"
        env -i PATH="$PATH" "$BIN/runcell" --env-file "$D/launcher.env" status 2>&1 | sed 's/^/    /'
        echo "  runcell sessions:"
        env -i PATH="$PATH" "$BIN/runcell" --env-file "$D/launcher.env" sessions 2>&1 | sed 's/^/    /'
    fi
    [ $any = 1 ]
}

daemon_cmd() { # start|stop|pid NAME
    local verb=$1 name=${2:-}
    case "$name" in launcher | fcgi | nginx) ;; *) usage_die "$verb: launcher, fcgi or nginx" ;; esac
    [ -f "$MARK" ] || die "no stack in $D"
    use_recorded_bin
    case "$verb" in
    pid) pid_of "$name" ;;
    stop) stop_pid "$name" 20 ;;
    start)
        require
        layout
        [ -z "$(pid_of "$name")" ] || die "$name is already running"
        if [ "$name" = launcher ] && [ -n "${RUNCELL_STACK_LAUNCHER_ENV:-}" ]; then
            local -a now=() overrides=()
            mapfile -t now <"$D/launcher.env"
            read -ra overrides <<<"$RUNCELL_STACK_LAUNCHER_ENV"
            (umask 077 && write_settings "$D/launcher.env" "${now[@]}" -- "${overrides[@]}")
        fi
        "start_$name"
        ;;
    esac
}

case "${1:-}" in
up) up ;;
down) down "${2:-}" ;;
status) status ;;
env) [ -f "$D/env" ] || die "no stack up in $D"; cat "$D/env" ;;
start | stop | pid) daemon_cmd "$1" "${2:-}" ;;
-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*) usage_die "usage: stack.sh up|down [--keep]|status|env|start|stop|pid DAEMON" ;;
esac

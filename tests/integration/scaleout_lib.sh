# shellcheck shell=bash
# tests/integration/scaleout_lib.sh - helpers for reliability_scaleout.sh (issue 9, scale-out):
# several complete runcell "hosts" on one kernel, each in a network namespace of its own with its
# own nginx, runcell-fcgi (as nobody), runcell-launcher (root) and containers, all serving ONE
# emulator environment behind ONE front nginx whose `upstream` spreads the webhooks.
#
#   emulator (host netns, on the bridge address, short lease TTL) --webhook--> front nginx
#   (127.0.0.1, upstream of the hosts) --HTTP over the bridge--> host N: nginx (its veth address)
#   --FastCGI--> runcell-fcgi --hand-off--> runcell-launcher --> shims --> runc containers
#
# A host is: `ip netns add`, a veth pair whose outer end is on a private bridge (10.213.K.0/24,
# K from the test's pid; the launcher's per-session namespaces hold only `lo`, so they use no
# address range), its own state dir, run dir, sockets, runc root (S/runc), uid range
# (RUNCELL_UID_BASE) and worker id. Its daemons are started with `nsenter --net` only (not
# `ip netns exec`, which would also give them a private mount namespace and hide the launcher's
# netns and workspace mounts from the host and from each other's cleanup).
#
# What cannot be separated on one kernel: the cgroup parent (fixed "/runcell", oci/spec.h
# RC_OCI_DEFAULT_CGROUP_PARENT, not a launcher setting), so two hosts running the same session id
# at once would share /sys/fs/cgroup/*/runcell/<sid>. A killed host's containers are therefore
# deleted at once (`runc delete --force`: a dead machine keeps no cgroups), before its items can
# be re-claimed on a surviving host.
#
# Sourced, not run: tests/run.sh also executes every tests/integration/*.sh.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "ok - scaleout_lib.sourced_helper # SKIP helper sourced by reliability_scaleout.sh"
    exit 0
fi

# shellcheck source=tests/integration/emulator_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/emulator_lib.sh" # cd to the checkout; api, admin, jb, ...
# shellcheck source=tests/integration/runner_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/runner_lib.sh" # rl_write_manifest
trap 'so_cleanup' EXIT

FCGI=${FCGI:-$BUILD/runcell-fcgi}
LAUNCHER=${LAUNCHER:-$BUILD/runcell-launcher}
RUNNER_BIN=${RUNNER:-$BUILD/runcell-runner}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
NOBODY=65534
SO=$(mktemp -d /tmp/rc-scaleout.XXXXXX)
chmod 0711 "$SO"
SO_K=$(($$ % 200 + 20))       # 10.213.K.0/24: the hosts' private network
SO_NET=10.213.$SO_K
SO_BR=rso${SO_K}br            # bridge (interface names <= 15 characters)
SO_HOST_PORT=8080             # each host's nginx (one netns each: the same port everywhere)
SO_HOSTS=()                   # host numbers set up
SO_FRONT_PID=
declare -A SO_PID             # "N:daemon" -> pid
# shellcheck disable=SC2034 # read by reliability_scaleout.sh
declare -A SO_CAP # N -> capacity
SO_BR_UP=

so_ns() { echo "rcso-$SO_K-h$1"; }
so_addr() { echo "$SO_NET.$((10 + $1))"; }
so_dir() { echo "$SO/h$1"; }
so_uid_base() { echo $((1700000 + $1 * 100000)); }

so_wait_for() { # so_wait_for SECONDS CMD...
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -lt "$end" ] || return 1
        sleep 0.1
    done
}
pid_gone() { # gone, or a zombie (its parent reaps it later)
    local st
    read -r st 2>/dev/null <"/proc/$1/stat" || return 0
    st=${st##*) }
    [ "${st%% *}" = Z ]
}
so_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

so_require() {
    local why='' t b
    if [ "$(id -u)" != 0 ]; then why="needs root (network namespaces, runc)"; fi
    for t in runc curl jq python3 ip nsenter setpriv mkfs.ext4; do
        [ -n "$why" ] || command -v "$t" >/dev/null 2>&1 || why="$t not installed"
    done
    [ -n "$why" ] || [ -x "$NGINX" ] || why="nginx not installed"
    for b in "$EMU" "$FCGI" "$LAUNCHER" "$RUNNER_BIN"; do
        [ -n "$why" ] || [ -x "$b" ] || why="$b not built"
    done
    if [ -z "$why" ] && { ! command -v busybox >/dev/null || ldd "$(command -v busybox)" >/dev/null 2>&1; }; then
        why="busybox-static not installed"
    fi
    if [ -z "$why" ] && ! ip link add "rso${SO_K}probe" type bridge 2>/dev/null; then
        why="cannot create network interfaces here"
    fi
    ip link del "rso${SO_K}probe" 2>/dev/null
    if [ -n "$why" ]; then
        echo "skipped: $why"
        t_skip all "$why"
        exit 0
    fi
}

# so_snapshot: the minimal snapshot (runner + the scenarios' tools manifest). Reuses the one
# scripts/stack.sh caches for the same manifest when it is newer than the runner. Sets SO_TAR.
so_snapshot() {
    local sha cache
    rl_write_manifest "$SO/tools.json"
    sha=$(sha256sum <"$SO/tools.json" | cut -c1-12)
    cache=$BUILD/snapshots/stack-$sha.tar
    if [ -f "$cache" ] && ! [ "$RUNNER_BIN" -nt "$cache" ] && ! [ scripts/build-snapshot.sh -nt "$cache" ]; then
        SO_TAR=$(readlink -f "$cache")
        return 0
    fi
    if ! BUILD=$BUILD scripts/build-snapshot.sh --base minimal --out "$SO/minimal" \
        --tools "$SO/tools.json" >/dev/null 2>"$SO/snapshot.err"; then
        t_fail snapshot_build "$(tail -n 3 "$SO/snapshot.err")"
        exit 1
    fi
    SO_TAR=$SO/minimal.tar
}

# so_network: the bridge the hosts hang on (the emulator listens on its address).
so_network() {
    ip link add "$SO_BR" type bridge || return 1
    SO_BR_UP=1
    ip addr add "$SO_NET.1/24" dev "$SO_BR" && ip link set "$SO_BR" up
}

# so_emulator ARGS...: the emulator on the bridge address (reachable from every host), webhooks
# to the front nginx on loopback. Sets B, API_KEY, WH_KEY and the api credential (emulator_lib).
so_emulator() {
    "$EMU" --listen "$SO_NET.1:0" "$@" >"$EM_DIR/out" 2>"$EM_DIR/log" &
    EM_PID=$!
    so_wait_for 10 grep -qs '^ANTHROPIC_WEBHOOK_SIGNING_KEY=' "$EM_DIR/out"
    B=$(sed -n 's/^ANTHROPIC_BASE_URL=//p' "$EM_DIR/out")
    API_KEY=$(sed -n 's/^ANTHROPIC_API_KEY=//p' "$EM_DIR/out")
    WH_KEY=$(sed -n 's/^ANTHROPIC_WEBHOOK_SIGNING_KEY=//p' "$EM_DIR/out")
    if [ -z "$B" ] || [ -z "$API_KEY" ]; then
        t_fail emulator_start "emulator did not start: $(tail -n 5 "$EM_DIR/log")"
        exit 1
    fi
    cred_file api "x-api-key: $API_KEY"
}

# so_host_net N: netns + veth on the bridge, address .1N, lo up.
so_host_net() {
    local n=$1 ns
    ns=$(so_ns "$n")
    ip netns add "$ns" || return 1
    ip link add "rso${SO_K}h$n" type veth peer name "rso${SO_K}n$n" || return 1
    ip link set "rso${SO_K}n$n" netns "$ns" || return 1
    ip link set "rso${SO_K}h$n" master "$SO_BR" up || return 1
    ip -n "$ns" addr add "$(so_addr "$n")/24" dev "rso${SO_K}n$n" || return 1
    ip -n "$ns" link set "rso${SO_K}n$n" up && ip -n "$ns" link set lo up
}

# in_host N CMD...: CMD in host N's network namespace only (same mounts, same cgroups). Daemons
# are started with nsenter directly, never through this function: `$!` must be the daemon.
in_host() {
    local n=$1
    shift
    nsenter --net="/run/netns/$(so_ns "$n")" "$@"
}

# so_host_config N CAPACITY ENV_ID ENV_KEY: host N's launcher.env (no key) and fcgi.env (keys,
# 0600, owned by nobody, sourced by a wrapper: never argv).
so_host_config() {
    local n=$1 cap=$2 env_id=$3 env_key=$4 h
    h=$(so_dir "$n")
    # shellcheck disable=SC2034 # read by reliability_scaleout.sh
    SO_CAP[$n]=$cap
    mkdir -p "$h/state" "$h/run" "$h/fcgi" "$h/nginx"
    chmod 0711 "$h" "$h/run"
    chown "$NOBODY:$NOBODY" "$h/fcgi"
    chmod 0700 "$h/fcgi"
    (
        umask 077
        cat >"$h/launcher.env" <<EOF
RUNCELL_STATE_DIR=$h/state
RUNCELL_RUN_DIR=$h/run
RUNCELL_LAUNCHER_SOCKET=$h/run/launcher.sock
RUNCELL_FCGI_UID=$NOBODY
RUNCELL_CAPACITY=$cap
RUNCELL_SNAPSHOT=$SO_TAR
RUNCELL_TOOLS_MANIFEST=/etc/runcell/tools.json
ANTHROPIC_BASE_URL=$B
RUNCELL_ALLOW_PLAIN_HTTP=1
RUNCELL_UID_BASE=$(so_uid_base "$n")
RUNCELL_WORKSPACE_SIZE=64M
RUNCELL_MAX_IDLE_MS=2000
RUNCELL_STOP_GRACE_MS=3000
RUNCELL_SESSION_LOCK_WAIT_MS=30000
EOF
        {
            printf 'export ANTHROPIC_BASE_URL=%q\n' "$B"
            printf 'export ANTHROPIC_ENVIRONMENT_ID=%q\n' "$env_id"
            printf 'export ANTHROPIC_ENVIRONMENT_KEY=%q\n' "$env_key"
            printf 'export ANTHROPIC_WEBHOOK_SIGNING_KEY=%q\n' "$WH_KEY"
            printf 'export RUNCELL_LAUNCHER_SOCKET=%q\n' "$h/run/launcher.sock"
            printf 'export RUNCELL_WORKER_ID=%q\n' "scaleout-h$n"
            printf 'export RUNCELL_FCGI_THREADS=4\n'
        } >"$h/fcgi/fcgi.env"
    )
    chown "$NOBODY:$NOBODY" "$h/fcgi/fcgi.env"
    printf '#!/bin/sh\n. %s\nexec "$@"\n' "$h/fcgi/fcgi.env" >"$h/fcgi/with-env"
    chmod 0755 "$h/fcgi/with-env"
}

so_launcher_start() {
    local n=$1 h
    h=$(so_dir "$n")
    rm -f "$h/run/launcher.sock"
    nsenter --net="/run/netns/$(so_ns "$n")" env -i PATH="$PATH" "$LAUNCHER" --env-file "$h/launcher.env" >>"$h/launcher.log" 2>&1 &
    SO_PID[$n:launcher]=$!
    disown "$!" # killed on purpose: no job notice
    so_wait_for 60 test -S "$h/run/launcher.sock"
}

so_fcgi_start() {
    local n=$1 h
    h=$(so_dir "$n")
    nsenter --net="/run/netns/$(so_ns "$n")" setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups \
        "$h/fcgi/with-env" "$FCGI" --socket "$h/fcgi/fcgi.sock" >>"$h/fcgi.log" 2>&1 &
    SO_PID[$n:fcgi]=$!
    disown "$!" # killed on purpose: no job notice
    so_wait_for 10 test -S "$h/fcgi/fcgi.sock"
}

# The host's nginx: nginx/test.conf (which includes the production nginx/runcell.conf), listening
# on loopback (for /healthz) and on the host's own address (for the front nginx).
so_nginx_start() {
    local n=$1 h
    h=$(so_dir "$n")
    scripts/render-nginx-test-conf.sh --prefix "$h/nginx" --port "$SO_HOST_PORT" \
        --fcgi-socket "$h/fcgi/fcgi.sock" >/dev/null || return 1
    sed -i "s|^\( *\)listen 127.0.0.1:$SO_HOST_PORT;|&\n\1listen $(so_addr "$n"):$SO_HOST_PORT;|" \
        "$h/nginx/nginx.conf"
    grep -q "listen $(so_addr "$n"):" "$h/nginx/nginx.conf" || return 1
    chown -R "$NOBODY:$NOBODY" "$h/nginx"
    nsenter --net="/run/netns/$(so_ns "$n")" setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups \
        "$NGINX" -p "$h/nginx" -c "$h/nginx/nginx.conf" -e stderr >>"$h/nginx.log" 2>&1 &
    SO_PID[$n:nginx]=$!
    disown "$!" # killed on purpose: no job notice
    so_wait_for 10 in_host "$n" curl -fs -o /dev/null "http://127.0.0.1:$SO_HOST_PORT/healthz"
}

# so_host_up N CAPACITY ENV_ID ENV_KEY: one complete host.
so_host_up() {
    local n=$1 what
    SO_HOSTS+=("$n")
    for what in net config launcher fcgi nginx; do
        case $what in
        net) so_host_net "$n" ;;
        config) so_host_config "$@" ;;
        launcher) so_launcher_start "$n" ;;
        fcgi) so_fcgi_start "$n" ;;
        nginx) so_nginx_start "$n" ;;
        esac || {
            t_fail "host$n.$what" "host $n: $what did not come up: $(tail -n 5 "$(so_dir "$n")/$what.log" 2>/dev/null)"
            exit 1
        }
    done
}

# The front nginx: one `upstream` of every host (what a user who outgrew one machine writes).
so_front_up() {
    local port=$1 f=$SO/front n servers=
    mkdir -p "$f/tmp"
    for n in "${SO_HOSTS[@]}"; do
        servers+="        server $(so_addr "$n"):$SO_HOST_PORT max_fails=1 fail_timeout=5s;"$'\n'
    done
    cat >"$f/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $f/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
    log_format upstream '\$upstream_addr \$upstream_status \$status';
    access_log $f/access.log upstream;
    client_body_temp_path $f/tmp/body;
    proxy_temp_path $f/tmp/proxy;
    fastcgi_temp_path $f/tmp/fastcgi;
    uwsgi_temp_path $f/tmp/uwsgi;
    scgi_temp_path $f/tmp/scgi;
    upstream runcell_hosts {
$servers    }
    server {
        listen 127.0.0.1:$port;
        location = /webhook {
            client_max_body_size 1m;
            proxy_pass http://runcell_hosts;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
        }
        location / { return 404; }
    }
}
EOF
    chown -R "$NOBODY:$NOBODY" "$f"
    setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups \
        "$NGINX" -p "$f" -c "$f/nginx.conf" -e stderr >>"$f/nginx.log" 2>&1 &
    SO_FRONT_PID=$!
    so_wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$port/nothing" || {
        t_fail front_nginx "front nginx did not start: $(tail -n 5 "$f/nginx.log")"
        exit 1
    }
}

# ---- a host's state ---------------------------------------------------------------------------

# Processes of host N: everything in its network namespace (daemons, shims, runc) plus every
# process in its containers' uid range.
so_host_pids() {
    local n=$1 lo hi
    ip netns pids "$(so_ns "$n")" 2>/dev/null
    lo=$(so_uid_base "$n")
    hi=$((lo + 65536))
    ps -e -o pid=,uid= | awk -v lo="$lo" -v hi="$hi" '$2 >= lo && $2 < hi {print $1}'
}

# Sessions live on host N (session run dirs).
so_live_sessions() { find "$(so_dir "$1")/run/sessions" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# so_kill_host N: the machine dies. Every process of it is killed with SIGKILL (no teardown runs,
# no item is stopped), and its containers' kernel state (processes, cgroups) is gone, as after a
# power cut. Its files (state dir, run dir, mounts) stay until the end of the test.
so_kill_host() {
    local n=$1 h p c i
    h=$(so_dir "$n")
    for p in "${SO_PID[$n:launcher]}" "${SO_PID[$n:fcgi]}" "${SO_PID[$n:nginx]}"; do
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null
    done
    for i in $(seq 50); do
        p=$(so_host_pids "$n" | tr '\n' ' ')
        [ -n "${p// /}" ] || break
        # shellcheck disable=SC2086 # a list of pids
        kill -9 $p 2>/dev/null
        for c in $(runc --root "$h/state/runc" list -q 2>/dev/null); do
            runc --root "$h/state/runc" kill "$c" KILL >/dev/null 2>&1
        done
        [ "$i" -gt 1 ] && sleep 0.1
    done
    for c in $(runc --root "$h/state/runc" list -q 2>/dev/null); do
        runc --root "$h/state/runc" delete --force "$c" >/dev/null 2>&1
    done
    SO_PID[$n:launcher]='' SO_PID[$n:fcgi]='' SO_PID[$n:nginx]=''
}

# so_host_stop N: a graceful stop of a surviving host's daemons (no session should be running).
so_host_stop() {
    local n=$1 p d
    for d in nginx fcgi launcher; do
        p=${SO_PID[$n:$d]:-}
        [ -n "$p" ] || continue
        kill -TERM "$p" 2>/dev/null
        so_wait_for 20 pid_gone "$p" || kill -9 "$p" 2>/dev/null
        SO_PID[$n:$d]=
    done
}

# so_leftovers N: what host N left behind (empty = clean): containers in its runc root, mounts
# under its dirs, netns files, bundles, session run dirs, work files, cgroups of the sessions it
# ran, processes of its netns or uid range.
so_leftovers() {
    local n=$1 h what='' d sid
    h=$(so_dir "$n")
    what+=$(runc --root "$h/state/runc" list -q 2>/dev/null | sed 's/^/container:/' | tr '\n' ' ')
    what+=$(awk -v p="$h/" 'index($5, p) == 1 && $5 != p "run/netns" {print "mount:" $5}' /proc/self/mountinfo | tr '\n' ' ')
    what+=$(find "$h/run/netns" -mindepth 1 2>/dev/null | sed 's/^/netns:/' | tr '\n' ' ')
    what+=$(find "$h/run/sessions" "$h/state/bundles" -mindepth 1 -maxdepth 1 2>/dev/null | sed 's/^/dir:/' | tr '\n' ' ')
    what+=$(find "$h/state/sessions" -name work 2>/dev/null | sed 's/^/work:/' | tr '\n' ' ')
    for d in "$h"/state/sessions/sesn_*; do
        [ -d "$d" ] || continue
        sid=${d##*/}
        what+=$(find /sys/fs/cgroup -maxdepth 4 -type d -name "$sid" 2>/dev/null | sed 's/^/cgroup:/' | tr '\n' ' ')
    done
    what+=$(for p in $(so_host_pids "$n"); do ps -o pid=,uid=,args= -p "$p"; done | sed 's/^ */pid:/' | tr '\n' ' ')
    echo "$what"
}

so_cleanup() {
    local n p m c h
    [ -n "$SO_FRONT_PID" ] && kill "$SO_FRONT_PID" 2>/dev/null && wait "$SO_FRONT_PID" 2>/dev/null
    for n in "${SO_HOSTS[@]}"; do
        h=$(so_dir "$n")
        for p in "${SO_PID[$n:nginx]:-}" "${SO_PID[$n:fcgi]:-}"; do
            [ -n "$p" ] && kill "$p" 2>/dev/null
        done
        # Sessions still running (an interrupted run): stopped by their shims, then whatever is
        # left is killed like a dead host.
        for p in $(ip netns pids "$(so_ns "$n")" 2>/dev/null); do
            [ "$p" = "${SO_PID[$n:launcher]:-}" ] || kill -TERM "$p" 2>/dev/null
        done
        so_wait_for 15 test -z "$(ip netns pids "$(so_ns "$n")" 2>/dev/null | grep -vx "${SO_PID[$n:launcher]:-x}")"
        so_kill_host "$n"
        for c in $(runc --root "$h/state/runc" list -q 2>/dev/null); do
            runc --root "$h/state/runc" delete --force "$c" >/dev/null 2>&1
        done
        # shellcheck disable=SC2013 # mount points are [A-Za-z0-9/._-] paths
        for m in $(awk -v p="$h/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
            umount -l "$m" 2>/dev/null
        done
        ip netns del "$(so_ns "$n")" 2>/dev/null
        # Deleting the outer end removes the pair even while the namespace lingers (a netns
        # outlives its file while the kernel still holds a reference, e.g. orphaned sockets).
        ip link del "rso${SO_K}h$n" 2>/dev/null
    done
    [ -n "$SO_BR_UP" ] && ip link del "$SO_BR" 2>/dev/null
    if [ -n "${SO_KEEP:-}" ]; then
        cp "$EM_DIR/log" "$SO/emulator.log" 2>/dev/null
        rm -f "$SO"/h*/fcgi/fcgi.env
        echo "# scale-out test files kept in $SO" >&2
    elif [ -z "$(awk -v p="$SO/" 'index($5, p) == 1' /proc/self/mountinfo)" ]; then
        rm -rf --one-file-system "$SO"
    fi
    em_cleanup
    rl_cleanup
}

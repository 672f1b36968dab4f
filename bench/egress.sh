#!/usr/bin/env bash
# bench/egress.sh - the egress proxy's overhead: latency and throughput through the proxy
# (plain HTTP and CONNECT) vs direct to the same local upstream, in one run. Needs root (network
# namespaces), iproute2, curl, nginx and build/tests/tools/egress_proxy; skipped otherwise.
#
# The world (as tests/integration/egress_lib.sh builds it, with nginx as the upstream):
#   <p>-ct  the "container": only lo; the proxy's listener is bound here at 127.0.0.1:3128
#   <p>-br  the "broker host": runs egress_proxy (policy: allow plain.test); veth to <p>-up
#   <p>-up  the upstream: nginx on 203.0.113.2:80 (a 3-byte /ok and a 64 MiB /big.bin)
# Direct = curl in <p>-br straight to the upstream (the path the proxy itself dials); via the
# proxy = curl in <p>-ct with -x (plain HTTP: absolute-form request; CONNECT: -p, a tunnel, then
# the same request inside). Every request is a new connection in every mode (`Connection:
# close`, as the proxy answers anyway), so the difference is the proxy's cost per request:
# accept, parse, policy, resolve (hosts file), audit line, dial, relay. Latency = curl's
# time_total per request, many requests per curl process, modes interleaved in batches.
# Throughput = the 64 MiB download, direct vs each proxy mode, interleaved.
#
# Target (DESIGN.md section 5, issue 6): <= 1 ms added at p50 (proxy p50 - direct p50).
#
# Environment: BUILD, BENCH_OUT, BENCH_SCALE (requests = 3000 x scale per mode, downloads = 10 x
# scale), BENCH_KEEP (bench/lib.sh).
set -u
BN_NAME=egress
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

PROXY=$PWD/$BUILD/tests/tools/egress_proxy
REQUESTS=$((3000 * BENCH_SCALE))
BATCH=100
DOWNLOADS=$((10 * BENCH_SCALE))
BIG_MB=64
P=rcbn$$
CT=$P-ct BR=$P-br UP=$P-up
PORT=3128
UP_IP=203.0.113.2

skip_all() {
    bn_skip "egress proxy" "$1"
    bn_table
    exit 0
}

# shellcheck disable=SC2317 # run at exit (bn_at_exit)
cleanup_netns() {
    [ -n "${NGINX_PID:-}" ] && bn_stop_pid "$NGINX_PID"
    [ -n "${PROXY_PID:-}" ] && bn_stop_pid "$PROXY_PID"
    ip netns del "$CT" 2>/dev/null
    ip netns del "$BR" 2>/dev/null
    ip netns del "$UP" 2>/dev/null
}

# ---- set-up -----------------------------------------------------------------------------------

make_netns() {
    local vb=${P}b vu=${P}u
    ip netns add "$CT" && ip netns add "$BR" && ip netns add "$UP" || return 1
    ip -n "$CT" link set lo up && ip -n "$BR" link set lo up && ip -n "$UP" link set lo up || return 1
    ip link add "$vb" netns "$BR" type veth peer name "$vu" netns "$UP" || return 1
    ip -n "$BR" addr add 203.0.113.1/24 dev "$vb" && ip -n "$BR" link set "$vb" up || return 1
    ip -n "$UP" addr add "$UP_IP/24" dev "$vu" && ip -n "$UP" link set "$vu" up
}

wait_file() {
    for _ in $(seq 100); do
        [ -s "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

start_nginx() {
    local d=$BN_DIR/nginx
    mkdir -p "$d/www" "$d/logs"
    printf 'ok\n' >"$d/www/ok"
    head -c "${BIG_MB}M" /dev/urandom >"$d/www/big.bin"
    chmod -R a+rX "$d/www"
    cat >"$d/nginx.conf" <<EOF
worker_processes 1;
error_log $d/logs/error.log warn;
pid $d/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    server {
        listen $UP_IP:80;
        root $d/www;
    }
}
EOF
    ip netns exec "$UP" nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' >"$d/logs/out" 2>&1 &
    NGINX_PID=$!
    for _ in $(seq 100); do
        ip netns exec "$BR" curl -s -o /dev/null --max-time 1 "http://$UP_IP/ok" && return 0
        kill -0 "$NGINX_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

start_proxy() {
    echo "$UP_IP plain.test" >"$BN_DIR/hosts"
    echo '{"allow": ["plain.test"]}' >"$BN_DIR/policy.json"
    ip netns exec "$BR" "$PROXY" --policy "$BN_DIR/policy.json" --listen "127.0.0.1:$PORT" \
        --netns "$CT" --hosts-file "$BN_DIR/hosts" --audit "$BN_DIR/audit.log" \
        --session-id sesn_bench_egress --ready-file "$BN_DIR/proxy.ready" \
        >"$BN_DIR/proxy.out" 2>"$BN_DIR/proxy.err" &
    PROXY_PID=$!
    wait_file "$BN_DIR/proxy.ready"
}

# ---- the clients ----------------------------------------------------------------------------------

# mode_curl MODE ARGS...: curl as MODE (direct, http, connect) sees the upstream.
mode_curl() {
    local mode=$1
    shift
    case "$mode" in
    direct) ip netns exec "$BR" curl --resolve "plain.test:80:$UP_IP" "$@" ;;
    http) ip netns exec "$CT" curl -x "http://127.0.0.1:$PORT" "$@" ;;
    connect) ip netns exec "$CT" curl -p -x "http://127.0.0.1:$PORT" "$@" ;;
    esac
}

# latency_batch MODE N: N sequential requests for /ok in one curl process, one connection each;
# appends each time_total (ms) to $BN_DIR/MODE.ms.
latency_batch() {
    mode_curl "$1" -sS --max-time 10 -H 'Connection: close' -o /dev/null \
        -w '%{http_code} %{time_total}\n' "http://plain.test/ok?[1-$2]" 2>>"$BN_DIR/curl.err" |
        awk -v f="$BN_DIR/$1.ms" -v e="$BN_DIR/$1.errors" '
            $1 == 200 { printf "%.3f\n", $2 * 1000 >> f; next }
            { print >> e }'
}

# download MODE: one /big.bin download; appends MiB/s to $BN_DIR/MODE.mibs.
download() {
    mode_curl "$1" -sS --max-time 60 -o /dev/null -w '%{http_code} %{size_download} %{speed_download}\n' \
        "http://plain.test/big.bin" 2>>"$BN_DIR/curl.err" |
        awk -v f="$BN_DIR/$1.mibs" -v n=$((BIG_MB * 1048576)) '
            $1 == 200 && $2 == n { printf "%.1f\n", $3 / 1048576 >> f }'
}

# ---- main -------------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || skip_all "needs root (network namespaces)"
[ -x "$PROXY" ] || skip_all "$PROXY not built"
for tool in ip curl nginx; do
    command -v "$tool" >/dev/null || skip_all "$tool not installed"
done
chmod 755 "$BN_DIR" # nginx's worker (nobody) reads the files below it
bn_at_exit cleanup_netns
make_netns || skip_all "cannot create network namespaces here"
start_nginx ||
    skip_all "nginx did not start: $(cat "$BN_DIR/nginx/logs/error.log" "$BN_DIR/nginx/logs/out" 2>/dev/null |
        tail -n 3 | tr '\n' ' ')"
start_proxy || skip_all "egress_proxy did not start: $(tail -n 3 "$BN_DIR/proxy.err")"

bn_log "latency: $REQUESTS requests per mode, batches of $BATCH, interleaved"
for m in direct http connect; do latency_batch "$m" 20; done # warm-up
rm -f "$BN_DIR"/*.ms
for ((done_n = 0; done_n < REQUESTS; done_n += BATCH)); do
    case $(((done_n / BATCH) % 3)) in
    0) order="direct http connect" ;;
    1) order="http connect direct" ;;
    2) order="connect direct http" ;;
    esac
    for m in $order; do latency_batch "$m" "$BATCH"; done
done
bn_log "throughput: $DOWNLOADS downloads of $BIG_MB MiB per mode"
for ((i = 0; i < DOWNLOADS; i++)); do
    for m in direct http connect; do download "$m"; done
done

status=0
for m in direct http connect; do
    if [ -s "$BN_DIR/$m.errors" ]; then
        bn_log "$m: $(wc -l <"$BN_DIR/$m.errors") failed requests, first: $(head -n 1 "$BN_DIR/$m.errors")"
        status=1
    fi
done
sd=$(bn_stats "$BN_DIR/direct.ms" 2>/dev/null || echo "0 - - -")
for m in http connect; do
    label="plain HTTP (absolute-form)"
    [ "$m" = connect ] && label="CONNECT tunnel, HTTP inside"
    sm=$(bn_stats "$BN_DIR/$m.ms" 2>/dev/null || echo "0 - - -")
    d50=$(bn_field "$sd" 2)
    m50=$(bn_field "$sm" 2)
    added=$(awk -v a="$m50" -v b="$d50" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.3f\n", a - b }')
    bn_row "egress $label, request p50 (n=$(bn_field "$sm" 1)), added $(bn_unit "$added" ms)" \
        "$(bn_unit "$m50" ms)" "$(bn_unit "$d50" ms) (direct)" "$(bn_ratio "$m50" "$d50")" \
        "added <= 1 ms" "$(bn_yesno bn_le "$added" 1)"
    bn_row "egress $label, request p95" "$(bn_unit "$(bn_field "$sm" 3)" ms)" \
        "$(bn_unit "$(bn_field "$sd" 3)" ms)" "$(bn_ratio "$(bn_field "$sm" 3)" "$(bn_field "$sd" 3)")" - -
    td=$(bn_field "$(bn_stats "$BN_DIR/direct.mibs" 2>/dev/null || echo "0 - - -")" 2)
    tm=$(bn_field "$(bn_stats "$BN_DIR/$m.mibs" 2>/dev/null || echo "0 - - -")" 2)
    td=$(awk -v v="$td" 'BEGIN { if (v == "-") print v; else printf "%.0f\n", v }')
    tm=$(awk -v v="$tm" 'BEGIN { if (v == "-") print v; else printf "%.0f\n", v }')
    bn_row "egress $label, $BIG_MB MiB download, median" "$(bn_unit "$tm" MiB/s)" "$(bn_unit "$td" MiB/s)" \
        "$(bn_ratio "$tm" "$td")" - -
done
bn_table
exit $status

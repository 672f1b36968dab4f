#!/usr/bin/env bash
# bench/egress_tls.sh - what TLS interception (issue 11) adds to an https:// request: the same
# request to the same HTTPS upstream, once tunnelled end to end (CONNECT to a domain without
# rules) and once intercepted (CONNECT to a domain with a transform rule: the proxy terminates
# the client's TLS with a leaf from the session CA, injects a header, and opens its own verified
# TLS connection upstream). Both in one run, interleaved; printed as intercepted / tunnelled.
#
# The world (as bench/egress.sh builds it): "container" namespace with only lo and the proxy's
# listener, "broker host" running egress_proxy --intercept-ca-out, "upstream" with nginx serving
# HTTPS on 203.0.113.2:443 (certificate for api.test and tunnel.test from a bench CA). Every
# request is a new connection in both modes (one request per intercepted tunnel; the tunnelled
# client sends Connection: close), so each sample includes the client's TLS handshake; the
# intercepted one also includes the proxy's handshake upstream and, for the first request, the
# leaf minting (cached afterwards).
#
# Target: none set by DESIGN.md; the row reports the ratio and the added milliseconds at p50.
#
# Environment: BUILD, BENCH_OUT, BENCH_SCALE (requests = 600 x scale per mode), BENCH_KEEP.
set -u
BN_NAME=egress_tls
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

PROXY=$PWD/$BUILD/tests/tools/egress_proxy
REQUESTS=$((600 * BENCH_SCALE))
BATCH=50
P=rcbt$$
CT=$P-ct BR=$P-br UP=$P-up
PORT=3128
UP_IP=203.0.113.2

skip_all() {
    bn_skip "egress TLS interception" "$1"
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

make_certs() {
    local d=$BN_DIR/pki
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=runcell bench CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
        >/dev/null 2>&1 || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=api.test" \
        -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1 || return 1
    printf 'subjectAltName=DNS:api.test,DNS:tunnel.test\nextendedKeyUsage=serverAuth\n' >"$d/ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/ext" -out "$d/server.pem" >/dev/null 2>&1 || return 1
    chmod -R a+rX "$d"
}

start_nginx() {
    local d=$BN_DIR/nginx
    mkdir -p "$d/www" "$d/logs"
    printf 'ok\n' >"$d/www/ok"
    chmod -R a+rX "$d/www"
    cat >"$d/nginx.conf" <<EOF
worker_processes 1;
error_log $d/logs/error.log warn;
pid $d/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen $UP_IP:443 ssl;
        ssl_certificate $BN_DIR/pki/server.pem;
        ssl_certificate_key $BN_DIR/pki/server.key;
        keepalive_timeout 0;
        root $d/www;
    }
}
EOF
    ip netns exec "$UP" nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' >"$d/logs/out" 2>&1 &
    NGINX_PID=$!
    for _ in $(seq 100); do
        ip netns exec "$BR" curl -s -o /dev/null --max-time 1 --cacert "$BN_DIR/pki/ca.pem" \
            --resolve "api.test:443:$UP_IP" "https://api.test/ok" && return 0
        kill -0 "$NGINX_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

start_proxy() {
    printf '%s api.test tunnel.test\n' "$UP_IP" >"$BN_DIR/hosts"
    cat >"$BN_DIR/policy.json" <<'EOF'
{"allow": {"api.test": [{"match": {"path": {"startsWith": "/"}},
                         "transform": [{"headers": {"x-api-key": "bench-secret-0123456789"}}]}],
           "tunnel.test": []}}
EOF
    ip netns exec "$BR" "$PROXY" --policy "$BN_DIR/policy.json" --listen "127.0.0.1:$PORT" \
        --netns "$CT" --hosts-file "$BN_DIR/hosts" --audit "$BN_DIR/audit.log" \
        --ca-file "$BN_DIR/pki/ca.pem" --intercept-ca-out "$BN_DIR/session-ca.pem" \
        --session-id sesn_bench_tls --ready-file "$BN_DIR/proxy.ready" \
        >"$BN_DIR/proxy.out" 2>"$BN_DIR/proxy.err" &
    PROXY_PID=$!
    wait_file "$BN_DIR/proxy.ready"
}

# latency_batch MODE N: N sequential https requests in one curl process, one connection each;
# appends each time_total (ms) to $BN_DIR/MODE.ms.
latency_batch() {
    local host=tunnel.test ca=$BN_DIR/pki/ca.pem
    if [ "$1" = intercepted ]; then host=api.test ca=$BN_DIR/session-ca.pem; fi
    ip netns exec "$CT" curl -sS --max-time 10 -x "http://127.0.0.1:$PORT" --cacert "$ca" \
        -H 'Connection: close' -o /dev/null -w '%{http_code} %{time_total}\n' \
        "https://$host/ok?[1-$2]" 2>>"$BN_DIR/curl.err" |
        awk -v f="$BN_DIR/$1.ms" -v e="$BN_DIR/$1.errors" '
            $1 == 200 { printf "%.3f\n", $2 * 1000 >> f; next }
            { print >> e }'
}

[ "$(id -u)" = 0 ] || skip_all "needs root (network namespaces)"
[ -x "$PROXY" ] || skip_all "$PROXY not built"
for tool in ip curl nginx openssl; do
    command -v "$tool" >/dev/null || skip_all "$tool not installed"
done
chmod 755 "$BN_DIR"
bn_at_exit cleanup_netns
make_netns || skip_all "cannot create network namespaces here"
make_certs || skip_all "cannot create test certificates"
start_nginx ||
    skip_all "nginx did not start: $(cat "$BN_DIR/nginx/logs/error.log" "$BN_DIR/nginx/logs/out" 2>/dev/null |
        tail -n 3 | tr '\n' ' ')"
start_proxy || skip_all "egress_proxy did not start: $(tail -n 3 "$BN_DIR/proxy.err")"

bn_log "latency: $REQUESTS https requests per mode, batches of $BATCH, interleaved"
for m in tunnelled intercepted; do latency_batch "$m" 10; done # warm-up (and the leaf)
rm -f "$BN_DIR"/*.ms
for ((done_n = 0; done_n < REQUESTS; done_n += BATCH)); do
    if (((done_n / BATCH) % 2)); then order="intercepted tunnelled"; else order="tunnelled intercepted"; fi
    for m in $order; do latency_batch "$m" "$BATCH"; done
done

status=0
for m in tunnelled intercepted; do
    if [ -s "$BN_DIR/$m.errors" ]; then
        bn_log "$m: $(wc -l <"$BN_DIR/$m.errors") failed requests, first: $(head -n 1 "$BN_DIR/$m.errors")"
        status=1
    fi
done
st=$(bn_stats "$BN_DIR/tunnelled.ms" 2>/dev/null || echo "0 - - -")
si=$(bn_stats "$BN_DIR/intercepted.ms" 2>/dev/null || echo "0 - - -")
t50=$(bn_field "$st" 2)
i50=$(bn_field "$si" 2)
added=$(awk -v a="$i50" -v b="$t50" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.3f\n", a - b }')
bn_row "egress https intercepted vs tunnelled, request p50 (n=$(bn_field "$si" 1)), added $(bn_unit "$added" ms)" \
    "$(bn_unit "$i50" ms)" "$(bn_unit "$t50" ms) (tunnelled)" "$(bn_ratio "$i50" "$t50")" - -
bn_row "egress https intercepted vs tunnelled, request p95" "$(bn_unit "$(bn_field "$si" 3)" ms)" \
    "$(bn_unit "$(bn_field "$st" 3)" ms)" "$(bn_ratio "$(bn_field "$si" 3)" "$(bn_field "$st" 3)")" - -
bn_table
exit $status

#!/usr/bin/env bash
# tests/integration/broker_container.sh - the broker attacked from INSIDE real session containers
# (issue 6), through the whole chain as root: emulator -> nginx -> runcell-fcgi -> runcell-launcher
# -> shim (broker: API channel + egress proxy) -> runc container from the minimal snapshot.
#
# "The internet" is one network namespace (<p>-up: 203.0.113.2/.3, 10.77.0.2/.3) joined to the
# host by a veth (host side 203.0.113.1), serving HTTP :80 and HTTPS :443 (egress_lib.sh). The
# proxy's names come from a hosts file; no outside address is ever used.
#
# Sessions:
#   A  metadata runcell_policy=wide: RUNCELL_POLICY_DIR/wide.json (plain.test, tunnel.test and
#      the names that resolve to private, loopback and own addresses)
#   B  no metadata: the default RUNCELL_POLICY_FILE (tunnel.test only)
#   C  runcell_policy=nosuch: refused, its item force-stopped
# In A and B a scenario's bash step (so: the agent uid, the tool environment) runs
# /bin/rcprobe.sh: busybox wget, bash /dev/tcp and the static tests/tools/netprobe.c try the
# allowed domain (plain HTTP and CONNECT), an unlisted domain, IP literals, private, loopback,
# own and metadata addresses, DNS, direct connections, raw sockets and the API socket. The next
# bash step waits for a flag while the host, with `runc exec`, sweeps env, /proc/*/environ,
# /proc/*/cmdline and every readable file (as the agent uid and as the runner uid) for the
# session tokens, the environment key and the API key, and sends crafted requests to the API
# channel as the runner uid (another session's ids, encoded traversals, other work ids).
. "$(dirname "$0")/launcher_lib.sh"
. tests/integration/egress_lib.sh # launcher_lib.sh went to the repository root

BC_VH=rcbc$$h BC_VU=rcbc$$u
RUNC_ROOT=
bc_cleanup() {
    ip link del "$BC_VH" 2>/dev/null
    eg_cleanup
    lt_cleanup
}
trap bc_cleanup EXIT
trap 'exit 143' TERM INT # so that the EXIT trap cleans up after a timeout too

lt_require
eg_require
if ! command -v cc >/dev/null; then
    t_skip all "no C compiler for the static probe"
    exit 0
fi

# ---- the world ------------------------------------------------------------------------------

bc_world() {
    EG_T=$(mktemp -d /tmp/rc-broker-ct.XXXXXX)
    chmod 0755 "$EG_T"
    ip netns add "$EG_UP" && in_up ip link set lo up &&
        ip link add "$BC_VH" type veth peer name "$BC_VU" netns "$EG_UP" &&
        ip addr add 203.0.113.1/24 dev "$BC_VH" && ip link set "$BC_VH" up &&
        ip route add 10.77.0.0/24 dev "$BC_VH" &&
        in_up ip addr add 203.0.113.2/24 dev "$BC_VU" &&
        in_up ip addr add 203.0.113.3/24 dev "$BC_VU" &&
        in_up ip addr add 10.77.0.2/24 dev "$BC_VU" &&
        in_up ip addr add 10.77.0.3/24 dev "$BC_VU" &&
        in_up ip link set "$BC_VU" up || return 1
    in_up ip route add default dev "$BC_VU" || return 1
    eg_certs && eg_upstream && eg_hosts
}

bc_policies() {
    mkdir -m 0700 "$EG_T/policies"
    printf '%s\n' '{"allow": ["tunnel.test"]}' >"$EG_T/default.json"
    printf '%s\n' '{"allow": ["plain.test", "tunnel.test", "priv.test", "meta.test", "loop.test", "self.test"]}' \
        >"$EG_T/policies/wide.json"
    chmod 0600 "$EG_T/default.json" "$EG_T/policies/wide.json"
}

# The probe script the bash tool runs inside the container.
bc_probe_script() {
    cat >"$1" <<'PROBE'
#!/bin/bash
# rcprobe.sh egress|sweep - run inside the session container (tests/integration/broker_container.sh)
# (busybox 1.35's wget crashes with -T when a request fails: timeouts come from `timeout`)
P=/bin/netprobe
kv() { printf '%s=%s\n' "$1" "$2"; }
# proxy_raw REQUEST-BYTES: one request to the proxy over bash /dev/tcp; "status|deny-reason|body"
proxy_raw() {
    local line status reason= body
    exec 3<>/dev/tcp/127.0.0.1/3128 || { echo "noproxy||"; return; }
    printf '%b' "$1" >&3
    IFS= read -r -t 10 line <&3
    status=${line#* }; status=${status%% *}
    while IFS= read -r -t 10 line <&3; do
        line=${line%$'\r'}
        [ -z "$line" ] && break
        case "${line,,}" in x-runcell-deny-reason:*) reason=${line#*: } ;; esac
    done
    body=$(timeout 10 head -c 120 <&3 | tr -d '\r\n')
    exec 3<&-
    echo "$status|$reason|$body"
}
# connect_get HOST PORT PATH: CONNECT through the proxy, then a plain GET inside the tunnel.
connect_get() {
    local line status body
    exec 3<>/dev/tcp/127.0.0.1/3128 || { echo "noproxy|"; return; }
    printf 'CONNECT %s:%s HTTP/1.1\r\nHost: %s:%s\r\n\r\n' "$1" "$2" "$1" "$2" >&3
    IFS= read -r -t 10 line <&3
    status=${line#* }; status=${status%% *}
    while IFS= read -r -t 10 line <&3; do line=${line%$'\r'}; [ -z "$line" ] && break; done
    if [ "$status" = 200 ]; then
        printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$3" "$1" >&3
        body=$(timeout 10 cat <&3 | tr -d '\r' | tail -n 1)
    fi
    exec 3<&-
    echo "$status|$body"
}
egress() {
    kv uid "$(id -u)"
    kv http_proxy "$http_proxy"
    kv https_proxy "$HTTPS_PROXY"
    kv no_proxy "$NO_PROXY"
    # the allowed domain: busybox wget (proxy from the environment), bash /dev/tcp, CONNECT
    kv wget_allowed "$(timeout 15 wget -q -O - http://plain.test/wget-ok 2>&1 | head -c 100)"
    timeout 15 wget -q -O /dev/null http://plain.test/wget-ok 2>/dev/null; kv wget_allowed_rc $?
    kv http_allowed "$(proxy_raw 'GET http://plain.test/raw-ok HTTP/1.1\r\nHost: plain.test\r\n\r\n')"
    kv connect_allowed "$(connect_get tunnel.test 80 /via-connect)"
    kv connect_plain "$(connect_get plain.test 80 /via-connect)"
    # an unlisted domain
    kv wget_unlisted "$(timeout 15 wget -O /dev/null http://unlisted.test/ 2>&1 | tr '\n' ' ')"
    timeout 15 wget -q -O /dev/null http://unlisted.test/ 2>/dev/null; kv wget_unlisted_rc $?
    kv http_unlisted "$(proxy_raw 'GET http://unlisted.test/ HTTP/1.1\r\nHost: unlisted.test\r\n\r\n')"
    kv connect_unlisted "$(connect_get unlisted.test 443 /)"
    # IP literals, private, loopback, own and metadata addresses
    kv http_ip "$(proxy_raw 'GET http://203.0.113.2/ HTTP/1.1\r\nHost: 203.0.113.2\r\n\r\n')"
    kv connect_ip "$(connect_get 203.0.113.2 80 /)"
    kv http_numeric "$(proxy_raw 'GET http://3405803778/ HTTP/1.1\r\nHost: 3405803778\r\n\r\n')"
    kv http_priv_name "$(proxy_raw 'GET http://priv.test/ HTTP/1.1\r\nHost: priv.test\r\n\r\n')"
    kv http_priv_ip "$(proxy_raw 'GET http://10.77.0.2/ HTTP/1.1\r\nHost: 10.77.0.2\r\n\r\n')"
    kv http_meta_name "$(proxy_raw 'GET http://meta.test/latest/meta-data/ HTTP/1.1\r\nHost: meta.test\r\n\r\n')"
    kv http_meta_ip "$(proxy_raw 'GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n')"
    kv connect_meta_ip "$(connect_get 169.254.169.254 80 /)"
    kv http_loop_name "$(proxy_raw 'GET http://loop.test:3128/ HTTP/1.1\r\nHost: loop.test:3128\r\n\r\n')"
    kv http_self_name "$(proxy_raw 'GET http://self.test/ HTTP/1.1\r\nHost: self.test\r\n\r\n')"
    # ambiguous spellings of a refused target
    kv odd_v6_loop "$(proxy_raw 'GET http://[::1]:3128/odd HTTP/1.1\r\nHost: [::1]:3128\r\n\r\n')"
    kv odd_v4mapped_meta "$(proxy_raw 'GET http://[::ffff:169.254.169.254]/odd HTTP/1.1\r\nHost: [::ffff:169.254.169.254]\r\n\r\n')"
    kv odd_octal "$(proxy_raw 'GET http://0177.0.0.1:3128/odd HTTP/1.1\r\nHost: 0177.0.0.1:3128\r\n\r\n')"
    kv odd_hex "$(proxy_raw 'GET http://0xa9.0xfe.0xa9.0xfe/odd HTTP/1.1\r\nHost: 0xa9.0xfe.0xa9.0xfe\r\n\r\n')"
    kv odd_userinfo "$(proxy_raw 'GET http://plain.test@unlisted.test/odd HTTP/1.1\r\nHost: unlisted.test\r\n\r\n')"
    kv odd_host_mismatch "$(proxy_raw 'GET http://plain.test/odd HTTP/1.1\r\nHost: unlisted.test\r\n\r\n')"
    kv odd_trailing_dot "$(connect_get unlisted.test. 80 /odd)"
    kv odd_suffix "$(proxy_raw 'GET http://plain.test.unlisted.test/odd HTTP/1.1\r\nHost: plain.test.unlisted.test\r\n\r\n')"
    kv odd_self_proxy "$(connect_get 127.0.0.1 3128 /odd)"
    kv odd_upper "$(proxy_raw 'GET http://PLAIN.TEST/upper HTTP/1.1\r\nHost: PLAIN.TEST\r\n\r\n')"
    kv http_half_close "$(printf 'GET http://plain.test/half HTTP/1.1\r\nHost: plain.test\r\n\r\n' | NETPROBE_HALF_CLOSE=1 $P tcp 127.0.0.1 3128 2>/dev/null | head -n 1 | tr -d '\r')"
    kv http_encoded "$(proxy_raw 'GET http://plain.test/a/%2e%2e/b HTTP/1.1\r\nHost: plain.test\r\n\r\n')"
    timeout 15 wget -q -O /dev/null http://169.254.169.254/ 2>/dev/null; kv wget_meta_rc $?
    # DNS: no resolver, no route to any server
    kv resolv_conf "$(cat /etc/resolv.conf 2>/dev/null | tr '\n' ' ')"
    timeout 10 nslookup plain.test 203.0.113.2 >/dev/null 2>&1; kv nslookup_rc $?
    timeout 10 nslookup plain.test >/dev/null 2>&1; kv nslookup_default_rc $?
    kv dns_udp "$($P udp 203.0.113.2 53 | tr '\n' ' ')"
    kv dns_udp_local "$($P udp 127.0.0.1 53 | tr '\n' ' ')"
    # direct connections that ignore the proxy
    kv direct_up "$($P tcp 203.0.113.2 80 </dev/null 2>&1 | tr '\n' ' ')"
    kv direct_priv "$($P tcp 10.77.0.2 80 </dev/null 2>&1 | tr '\n' ' ')"
    kv direct_meta "$($P tcp 169.254.169.254 80 </dev/null 2>&1 | tr '\n' ' ')"
    kv direct_hostaddr "$($P tcp 203.0.113.1 22 </dev/null 2>&1 | tr '\n' ' ')"
    kv direct_v6 "$($P tcp fd00::2 22 </dev/null 2>&1 | tr '\n' ' ')"
    (exec 4<>/dev/tcp/203.0.113.2/80) 2>/dev/null; kv devtcp_direct_rc $?
    timeout 15 wget -Y off -q -O /dev/null http://203.0.113.2/direct 2>/dev/null; kv wget_noproxy_rc $?
    # raw sockets and interfaces
    kv raw "$($P raw 203.0.113.2 | tr '\n' ' ')"
    kv ifaces "$($P ifaces | tr '\n' ' ')"
    # the API channel socket refuses the agent uid
    kv api_agent "$($P unix /run/runcell-api/api.sock </dev/null 2>&1 | tr '\n' ' ')"
    kv probe_end 1
}
sweep() {
    echo "== env"; env
    local f
    for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
        echo "== $f"; cat "$f" 2>/dev/null | tr '\0' '\n'
    done
    # (not the sweep's own output file: cat would chase its own tail)
    find / \( -path /proc -o -path /sys -o -path /dev -o -name 'sweep-*.out' \) -prune -o -type f -print 2>/dev/null |
        while IFS= read -r f; do
            [ -r "$f" ] || continue
            echo "== $f"; cat "$f" 2>/dev/null
        done
    echo "== sweep_end"
}
"$1"
PROBE
}

bc_scenario() {
    mkdir -p "$EG_T/scenarios"
    cat >"$EG_T/scenarios/broker-probe.json" <<'EOF'
{
  "name": "broker-probe",
  "description": "issue 6: in-container egress probes as the agent uid, then wait for the host's sweeps",
  "agent": {"tools": [{"type": "agent_toolset_20260401",
                       "default_config": {"enabled": true, "permission_policy": {"type": "always_allow"}}}]},
  "turns": [
    {"user": "probe the network",
     "steps": [
       {"tool": "bash", "input": {"command": "bash /bin/rcprobe.sh egress >/workspace/probe.out 2>&1; echo probed"},
        "expect": {"is_error": false, "text": "probed", "wait_ms": 110000}},
       {"tool": "bash", "input": {"command": "bash /bin/rcprobe.sh sweep >/workspace/sweep-tool.out 2>&1; echo swept"},
        "expect": {"is_error": false, "text": "swept", "wait_ms": 110000}},
       {"tool": "bash", "input": {"command": "for i in $(seq 500); do [ -e /workspace/release ] && break; sleep 0.2; done; echo released"},
        "expect": {"is_error": false, "text": "released", "wait_ms": 130000}},
       {"message": "done"}],
     "end": "end_turn"}]
}
EOF
}

# The minimal snapshot plus /bin/netprobe (static) and /bin/rcprobe.sh.
bc_snapshot() {
    lt_snapshot minimal
    mkdir -p "$EG_T/extra/bin"
    if ! cc -static -O2 -D_GNU_SOURCE -o "$EG_T/extra/bin/netprobe" tests/tools/netprobe.c 2>"$EG_T/cc.err"; then
        t_skip all "cannot link netprobe -static: $(head -c 200 "$EG_T/cc.err")"
        exit 0
    fi
    bc_probe_script "$EG_T/extra/bin/rcprobe.sh"
    chmod 0755 "$EG_T/extra/bin/netprobe" "$EG_T/extra/bin/rcprobe.sh"
    tar --append -f "$LT_TAR" -C "$EG_T/extra" --numeric-owner --owner=0 --group=0 \
        ./bin/netprobe ./bin/rcprobe.sh
}

if ! bc_world; then t_fail setup "network namespaces and upstream: $(cat "$EG_T/upstream.err" 2>/dev/null)"; t_done; fi
bc_policies
bc_scenario
bc_snapshot
port=$(free_port)
em_start --scenarios "$EG_T/scenarios" --webhook-url "http://127.0.0.1:$port/webhook" \
    --webhook-backoff-ms 300,600
mk_env ENV launcher
mk_key ek "$ENV"
fcgi_env "$ENV"
lt_launcher_start RUNCELL_POLICY_FILE="$EG_T/default.json" RUNCELL_POLICY_DIR="$EG_T/policies" \
    RUNCELL_BROKER_HOSTS_FILE="$EG_T/hosts" RUNCELL_CA_FILE="$EG_T/pki/ca.pem"
fcgi_start
nginx_start "$port"
RUNC_ROOT=$LT_STATE/runc

# bc_session VAR METADATA-JSON: a session playing broker-probe.
api POST /v1/agents "$(jq -cn '{name: "broker-probe", model: "claude-sonnet-4-6",
    tools: [{type: "agent_toolset_20260401", default_config: {enabled: true,
             permission_policy: {type: "always_allow"}}}]}')"
AGENT=$(jb .id)
bc_session() {
    api POST /v1/sessions "$(jq -cn --arg a "$AGENT" --arg e "$ENV" --argjson m "$2" \
        '{agent: $a, environment_id: $e, metadata: ({scenario: "broker-probe"} + $m)}')"
    printf -v "$1" '%s' "$(jb .id)"
}
bc_session SA '{"runcell_policy": "wide"}'
bc_session SB '{}'
for s in "$SA" "$SB"; do
    if [ -z "$s" ] || [ "$s" = null ]; then
        t_fail sessions "not created: $(head -c 200 "$EM_DIR/body")"
        t_done
    fi
done
ws() { echo "$LT_STATE/workspaces/$1/data"; }

# The credentials to look for: both sessions' tokens (from the root-only work files), the
# environment key and the API key.
wait_for 60 test -s "$LT_STATE/sessions/$SA/work" && wait_for 60 test -s "$LT_STATE/sessions/$SB/work"
TOK_A=$(sed -n 3p "$LT_STATE/sessions/$SA/work" 2>/dev/null)
TOK_B=$(sed -n 3p "$LT_STATE/sessions/$SB/work" 2>/dev/null)
WID_B=$(sed -n 2p "$LT_STATE/sessions/$SB/work" 2>/dev/null)
EKEY=$(sed -n 's/^Authorization: Bearer //p' "$EM_DIR/cred.ek")
# Each in its own 0600 file, so no secret ever goes into an argv (grep -F -f FILE).
if [ -n "$TOK_A" ] && [ -n "$TOK_B" ] && [ -n "$EKEY" ] && [ -n "$API_KEY" ] && [ "$TOK_A" != "$TOK_B" ]; then
    t_ok credentials_known
else
    t_fail credentials_known "a session token, the environment key or the API key is missing"
fi
(
    umask 077
    printf '%s\n' "$TOK_A" >"$EG_T/secret.TOK_A"
    printf '%s\n' "$TOK_B" >"$EG_T/secret.TOK_B"
    printf '%s\n' "$EKEY" >"$EG_T/secret.EKEY"
    printf '%s\n' "$API_KEY" >"$EG_T/secret.API_KEY"
)

if ! wait_for 120 grep -qs '^probe_end=1' "$(ws "$SA")/probe.out" ||
    ! wait_for 60 grep -qs '^probe_end=1' "$(ws "$SB")/probe.out"; then
    t_fail probes_ran "no probe output: $(tail -n 5 "$LT_LOG" | tr '\n' ' ')"
    t_done
fi
t_ok probes_ran
PA=$(ws "$SA")/probe.out PB=$(ws "$SB")/probe.out
pv() { sed -n "s/^$2=//p" "$1" | head -n 1; }
# check_field NAME FILE KEY WANT-SUBSTRING
check_field() { check_contains "$1" "$(pv "$2" "$3")" "$4"; }

# ---- egress from the agent uid (session A, policy "wide") ------------------------------------
check_eq agent.uid "$(pv "$PA" uid)" 1000
check_eq agent.proxy_env "$(pv "$PA" http_proxy) $(pv "$PA" https_proxy) $(pv "$PA" no_proxy)" \
    "http://127.0.0.1:3128 http://127.0.0.1:3128 localhost,127.0.0.1"
check_eq allowed.wget_plain_http "$(pv "$PA" wget_allowed)" "plain-ok /wget-ok"
check_eq allowed.devtcp_plain_http "$(pv "$PA" http_allowed)" "200||plain-ok /raw-ok"
check_eq allowed.connect "$(pv "$PA" connect_allowed)" "200|plain-ok /via-connect"
check_eq refused.unlisted_http "$(pv "$PA" http_unlisted)" "403|domain not in policy|runcell egress proxy: domain not in policy"
check_field refused.unlisted_connect "$PA" connect_unlisted "403|"
check_eq refused.unlisted_wget "$(pv "$PA" wget_unlisted_rc)" 1
check_field refused.unlisted_wget_403 "$PA" wget_unlisted "403 Forbidden"
check_eq allowed.wget_rc "$(pv "$PA" wget_allowed_rc)" 0
check_field refused.ip_literal_http "$PA" http_ip "403|IP address not in subnets.allow"
check_field refused.ip_literal_connect "$PA" connect_ip "403|"
check_field refused.numeric_host "$PA" http_numeric "400|"
check_field refused.private_name "$PA" http_priv_name "403|SSRF guard: private address"
check_field refused.private_ip "$PA" http_priv_ip "403|IP address not in subnets.allow"
check_field refused.metadata_name "$PA" http_meta_name "403|SSRF guard: cloud metadata address"
check_field refused.metadata_ip "$PA" http_meta_ip "403|IP address not in subnets.allow"
check_field refused.metadata_connect "$PA" connect_meta_ip "403|"
check_eq refused.metadata_wget "$(pv "$PA" wget_meta_rc)" 1
check_field refused.loopback_name "$PA" http_loop_name "403|SSRF guard: loopback address"
check_field refused.own_address "$PA" http_self_name "403|SSRF guard: one of the broker host's own addresses"
check_field refused.encoded_traversal "$PA" http_encoded "400|"
for k in odd_v6_loop odd_v4mapped_meta odd_octal odd_hex odd_userinfo odd_host_mismatch \
    odd_trailing_dot odd_suffix odd_self_proxy; do
    v=$(pv "$PA" "$k")
    case "$v" in 4[0-9][0-9]\|*) t_ok "refused.$k" ;; *) t_fail "refused.$k" "got '$v'" ;; esac
done
check refused.odd_nothing_upstream bash -c "! grep -q '\"/odd' '$EG_T/upstream.log'"
check_eq allowed.half_close "$(pv "$PA" http_half_close)" "HTTP/1.1 200 OK"
check_field allowed.case_insensitive "$PA" odd_upper "200||plain-ok /upper"
check_eq dns.no_resolv_conf "$(pv "$PA" resolv_conf)" ""
check no_dns.nslookup_server test "$(pv "$PA" nslookup_rc)" != 0
check no_dns.nslookup_default test "$(pv "$PA" nslookup_default_rc)" != 0
check_field no_dns.udp_to_upstream "$PA" dns_udp "udp_send=ENETUNREACH"
check_absent no_dns.udp_local "$(pv "$PA" dns_udp_local)" "udp_answer=yes"
check_field direct.upstream "$PA" direct_up "tcp_connect=ENETUNREACH"
check_field direct.private "$PA" direct_priv "tcp_connect=ENETUNREACH"
check_field direct.metadata "$PA" direct_meta "tcp_connect=ENETUNREACH"
check_field direct.host_address "$PA" direct_hostaddr "tcp_connect=ENETUNREACH"
check_field direct.ipv6 "$PA" direct_v6 "tcp_connect=ENETUNREACH"
check direct.devtcp test "$(pv "$PA" devtcp_direct_rc)" != 0
check direct.wget_no_proxy test "$(pv "$PA" wget_noproxy_rc)" != 0
RAW=$(pv "$PA" raw)
check_absent raw.nothing_sent "$RAW" "_send=ok"
check_absent raw.no_raw_socket "$RAW" "raw_icmp=opened"
check_absent raw.no_packet_socket "$RAW" "packet=opened"
check_eq netns.only_lo "$(pv "$PA" ifaces)" "iface=lo ifaces=1 "
check_field api.agent_uid_refused "$PA" api_agent "unix_connect=EACCES"
check upstream.no_direct_request bash -c "! grep -q '\"/direct' '$EG_T/upstream.log'"

# ---- per-session policy: B got the default (tunnel.test only), A the named one ----------------
check_eq policy.b_default_refuses_plain "$(pv "$PB" http_allowed)" "403|domain not in policy|runcell egress proxy: domain not in policy"
check_eq policy.b_default_allows_tunnel "$(pv "$PB" connect_allowed)" "200|plain-ok /via-connect"
check_field policy.b_default_refuses_plain_connect "$PB" connect_plain "403|"
check_field policy.a_wide_allows_plain_connect "$PA" connect_plain "200|plain-ok"
check policy.log_names_sources bash -c "grep -q '\"session_id\":\"$SA\".*egress policy: session $EG_T/policies/wide.json' '$LT_LOG' &&
    grep -q '\"session_id\":\"$SB\".*egress policy: default $EG_T/default.json' '$LT_LOG'"

# ---- the API channel, from the runner uid of session A ----------------------------------------
# rexec UID SID CMD...: run CMD in the live container as container uid UID. Not `runc exec`: it
# cannot join a network namespace owned by the host's user namespace (the shim's), so nsenter
# joins the container's namespaces (the netns while still privileged, then the user namespace)
# and switches to UID, which drops every capability. The container's seccomp filter is not
# applied to it; the agent-side probes above run through the real runner instead.
rexec() {
    local u=$1 pid
    pid=$(runc --root "$RUNC_ROOT" state "$2" 2>/dev/null | jq -r .pid)
    shift 2
    [ -n "$pid" ] && [ "$pid" != null ] || return 1
    timeout 120 nsenter -t "$pid" -U -m -n -i -u -p -r -w -S "$u" -G "$u" "$@"
}
SOCK=/run/runcell-api/api.sock
# api_status REQUEST-LINE [HEADERS]: the status line the channel answers (as the runner uid).
api_status() {
    printf '%s HTTP/1.1\r\nHost: api\r\nConnection: close\r\nanthropic-version: 2023-06-01\r\nanthropic-beta: managed-agents-2026-04-01\r\n%b\r\n' "$1" "${2-}" |
        rexec 0 "$SA" /bin/netprobe unix "$SOCK" 2>/dev/null | head -n 1 | tr -d '\r' | cut -d' ' -f2
}
ENV_A=$(sed -n 1p "$LT_STATE/sessions/$SA/work" 2>/dev/null)
WID_A=$(sed -n 2p "$LT_STATE/sessions/$SA/work" 2>/dev/null)
check_eq api.own_session "$(api_status "GET /v1/sessions/$SA")" 200
check_eq api.other_session "$(api_status "GET /v1/sessions/$SB")" 403
check_eq api.other_session_events "$(api_status "GET /v1/sessions/$SB/events")" 403
check_eq api.traversal_dotdot "$(api_status "GET /v1/sessions/$SA/../$SB")" 403
check_eq api.traversal_encoded "$(api_status "GET /v1/sessions/$SA/%2e%2e/$SB")" 403
check_eq api.encoded_slash "$(api_status "GET /v1/sessions/$SA%2F..%2F$SB")" 403
check_eq api.encoded_id "$(api_status "GET /v1/sessions/%73${SA#s}")" 403
check_eq api.double_slash "$(api_status "GET //v1/sessions/$SA")" 403
check_eq api.absolute_form "$(api_status "GET http://api.anthropic.com/v1/sessions/$SB")" 403
check_eq api.other_work_heartbeat "$(api_status "POST /v1/environments/$ENV_A/work/$WID_B/heartbeat" 'Content-Length: 0\r\n')" 403
check_eq api.other_env_stop "$(api_status "POST /v1/environments/env_other/work/$WID_A/stop" 'Content-Length: 0\r\n')" 403
check_eq api.poll "$(api_status "GET /v1/environments/$ENV_A/work/poll")" 403
check_eq api.session_list "$(api_status "GET /v1/sessions")" 403
# A runner that half-closes after its request still gets the answer (it has not hung up).
st=$(printf 'GET /v1/sessions/%s HTTP/1.1\r\nHost: api\r\nConnection: close\r\nanthropic-version: 2023-06-01\r\nanthropic-beta: managed-agents-2026-04-01\r\n\r\n' "$SA" |
    rexec 0 "$SA" /bin/busybox env NETPROBE_HALF_CLOSE=1 /bin/netprobe unix "$SOCK" 2>/dev/null | head -n 1 | tr -d '\r' | cut -d' ' -f2)
check_eq api.half_close_answered "$st" 200
out=$(rexec 1000 "$SA" /bin/netprobe unix "$SOCK" </dev/null 2>&1)
check_contains api.agent_uid_runc_exec "$out" "unix_connect=EACCES"
out=$(rexec 4242 "$SA" /bin/netprobe unix "$SOCK" </dev/null 2>&1)
check_contains api.other_uid "$out" "unix_connect=EACCES"
if rexec 0 "$SA" /bin/chmod 0777 "$SOCK" 2>/dev/null; then
    t_fail api.socket_mode_fixed "the runner uid could chmod the API socket"
else
    t_ok api.socket_mode_fixed
fi
check api.audit_forbidden bash -c "grep -q 'forbidden\\|403' '$LT_STATE/sessions/$SA/api-audit.jsonl'"

# ---- credential sweeps: several points of the live session, agent and runner uid --------------
# sweep LABEL: everything both uids can read in both containers, kept on the host only.
sweep() {
    local s u
    for s in "$SA" "$SB"; do
        for u in 1000 0; do
            rexec "$u" "$s" /bin/bash /bin/rcprobe.sh sweep >"$EG_T/sweep.$1.$s.$u" 2>/dev/null
        done
    done
}
for s in "$SA" "$SB"; do
    wait_for 120 grep -qs '^== sweep_end' "$(ws "$s")/sweep-tool.out" || t_fail sweep.tool_done "$s: no end"
done
sweep mid # after the probes and the API channel traffic, the tokens in use
cp "$(ws "$SA")/sweep-tool.out" "$EG_T/sweep.tool.$SA.1000" 2>/dev/null
cp "$(ws "$SB")/sweep-tool.out" "$EG_T/sweep.tool.$SB.1000" 2>/dev/null
# a few more events through the channel, then sweep again
for _ in 1 2 3; do api_status "GET /v1/sessions/$SA/events" >/dev/null; done
sweep late
n=$(cat "$EG_T"/sweep.* | grep -c '^== ')
check sweep.covers_files test "$n" -gt 100
check sweep.saw_tool_env grep -qs '^HTTP_PROXY=http://127.0.0.1:3128' "$EG_T/sweep.tool.$SA.1000"
check sweep.saw_runner_cmdline grep -qs 'runcell-runner' "$EG_T/sweep.late.$SA.0"
check sweep.complete bash -c "grep -c '^== sweep_end' '$EG_T'/sweep.* | grep -v ':1\$' | wc -l | grep -qx 0"
for what in TOK_A TOK_B EKEY API_KEY; do
    if grep -laF -f "$EG_T/secret.$what" "$EG_T"/sweep.* >"$EG_T/hits" 2>/dev/null; then
        t_fail "sweep.no_$what" "found in $(tr '\n' ' ' <"$EG_T/hits")"
    else
        t_ok "sweep.no_$what"
    fi
done

# ---- session C names a policy that does not exist: refused, item stopped ----------------------
bc_session SC '{"runcell_policy": "nosuch"}'
if wait_for 60 grep -q "\"session_id\":\"$SC\".*session start failed: .*names policy \\\\\"nosuch\\\\\"" "$LT_LOG"; then
    t_ok policy.missing_named_refused
else
    t_fail policy.missing_named_refused "$(grep "$SC" "$LT_LOG" | tail -n 3 | tr '\n' ' ')"
fi
wait_for 30 bash -c "[ \"\$(session_work_states '$SC')\" = stopped:1 ]" 2>/dev/null
api GET "/v1/environments/$ENV/work?limit=100"
check_eq policy.missing_named_item_stopped \
    "$(jq -r --arg s "$SC" '[.data[] | select(.data.id == $s) | .state] | unique | join(",")' "$EM_DIR/body")" stopped

# ---- release the sessions; they end cleanly ---------------------------------------------------
touch "$(ws "$SA")/release" "$(ws "$SB")/release"
for s in "$SA" "$SB"; do
    v=$(wait_verdict "$s" 60)
    if [ "$v" = passed ]; then
        t_ok "verdict.$([ "$s" = "$SA" ] && echo a || echo b)"
    else
        api GET "/_emulator/v1/sessions/$s/verdict"
        t_fail "verdict.$([ "$s" = "$SA" ] && echo a || echo b)" "$v: $(head -c 600 "$EM_DIR/body")"
    fi
done
if left=$(wait_clean 60); then t_ok nothing_left; else t_fail nothing_left "$left"; fi
check audit.metadata_refused bash -c "grep -q '\"decision\":\"deny\".*\"host\":\"169.254.169.254\"' '$LT_STATE/sessions/$SA/egress-audit.jsonl'"
for what in TOK_A TOK_B; do
    check "host_logs.no_$what" bash -c "! grep -rqsF -f '$EG_T/secret.$what' '$LT_LOG' '$LT_STATE/sessions' --exclude=work"
done
t_done

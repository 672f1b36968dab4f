#!/usr/bin/env bash
# tests/integration/broker_tls_container.sh - the container side of TLS interception (issue 11),
# through the whole chain as root: emulator -> nginx -> runcell-fcgi -> runcell-launcher -> shim
# (broker with a per-session CA) -> runc container from the minimal snapshot.
#
# The snapshot gets a fake "system" bundle (/etc/ssl/certs/ca-certificates.crt), an empty
# /usr/local/share/ca-certificates and /bin/tlsprobe, a static OpenSSL client built here (CONNECT
# through the proxy, SNI, host-name check, trust from $TLSPROBE_CAFILE or OpenSSL's defaults,
# which honour $SSL_CERT_FILE). "The internet" is a network namespace behind a veth serving
# HTTPS for api.test and tunnel.test with a test CA the container does not trust.
#
# Sessions:
#   A  runcell_policy=inject: api.test has a transform rule (credential injection behind a
#      placeholder), tunnel.test none. A CA is made; its certificate is published.
#   B  the default policy (tunnel.test only): no rules, so no CA, no mounts, no variables.
#   D  like A, its shim killed with SIGKILL: the reconcile removes its CA dir.
#   E  like A under RUNCELL_TLS_INTERCEPT=0 (the launcher restarted): no CA, nothing in the
#      container, CONNECT to api.test refused as before issue 11.
#   F  like A under RUNCELL_WRITABLE_ROOT=1: the CA is bound as a new file into the anchor dir
#      (runc makes it in the session's overlay; the snapshot is not touched).
# Checked: the files and their modes on the host, config.json's mounts and variables, what the
# agent's tools see (variables survive the runner's scrub; files read-only; the pem inside equals
# the host's; the merged bundle over the system bundle), that the proxy's CA is that pem (openssl
# s_client from the session's netns), an https request from inside getting the credential
# injected, the pass-through of a domain without rules, and that no private key (PEM marker or
# the CA's raw public point, which every DER key encoding carries) is anywhere in the container
# (files, /proc/*/environ, as the agent and the runner uid) or under the launcher's dirs.
# Real clients (curl, Python urllib) in the container: tests/integration/broker_tls_clients.sh.
# shellcheck source=tests/integration/launcher_lib.sh
. "$(dirname "$0")/launcher_lib.sh"
# shellcheck source=tests/integration/egress_lib.sh
. tests/integration/egress_lib.sh # launcher_lib.sh went to the repository root

BT_VH=rcbt$$h BT_VU=rcbt$$u
RUNC_ROOT=
# shellcheck disable=SC2317 # called from the EXIT trap
bt_cleanup() {
    ip link del "$BT_VH" 2>/dev/null
    eg_cleanup
    lt_cleanup
}
trap bt_cleanup EXIT
trap 'exit 143' TERM INT

lt_require
eg_require
if ! command -v cc >/dev/null || ! command -v nsenter >/dev/null; then
    t_skip all "no C compiler or nsenter"
    exit 0
fi

# ---- the world ------------------------------------------------------------------------------

bt_world() {
    EG_T=$(mktemp -d /tmp/rc-broker-tls.XXXXXX)
    chmod 0755 "$EG_T"
    ip netns add "$EG_UP" && in_up ip link set lo up &&
        ip link add "$BT_VH" type veth peer name "$BT_VU" netns "$EG_UP" &&
        ip addr add 203.0.113.1/24 dev "$BT_VH" && ip link set "$BT_VH" up &&
        in_up ip addr add 203.0.113.2/24 dev "$BT_VU" &&
        in_up ip addr add 203.0.113.3/24 dev "$BT_VU" &&
        in_up ip link set "$BT_VU" up || return 1
    in_up ip route add default dev "$BT_VU" || return 1
    eg_certs && eg_upstream && eg_hosts
}

INJECTED=rc-tls-test-INJECTED-cred-7f3a91
bt_policies() {
    mkdir -m 0700 "$EG_T/policies"
    printf '%s\n' '{"allow": ["tunnel.test"]}' >"$EG_T/default.json"
    cat >"$EG_T/policies/inject.json" <<EOF
{"allow": {
  "api.test": [
    {"match": {"headers": [{"key": {"exact": "x-api-key"}, "value": {"exact": "_brokered_"}}]},
     "transform": [{"headers": {"x-api-key": "$INJECTED"}}]},
    {"response": {"statusCode": 403, "contentType": "text/plain", "body": "no placeholder\n"}}],
  "tunnel.test": []}}
EOF
    chmod 0600 "$EG_T/default.json" "$EG_T/policies/inject.json"
}

# The probe the bash tool runs inside the container (as the agent uid, the tool environment).
bt_probe_script() {
    cat >"$1" <<'PROBE'
#!/bin/bash
# tlsprobe.sh probe|sweep - run inside the session container (tests/integration/broker_tls_container.sh)
kv() { printf '%s=%s\n' "$1" "$2"; }
sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
probe() {
    local v
    kv uid "$(id -u)"
    for v in SSL_CERT_FILE CURL_CA_BUNDLE REQUESTS_CA_BUNDLE GIT_SSL_CAINFO PIP_CERT \
        NPM_CONFIG_CAFILE AWS_CA_BUNDLE CARGO_HTTP_CAINFO GRPC_DEFAULT_SSL_ROOTS_FILE_PATH \
        NODE_EXTRA_CA_CERTS NODE_USE_SYSTEM_CA HTTPS_PROXY; do
        kv "env_$v" "${!v-<unset>}"
    done
    kv ca_dir "$(ls /run/runcell-ca 2>&1 | tr '\n' ' ')"
    kv ca_sha "$(sha /run/runcell-ca/ca.pem)"
    kv bundle_sha "$(sha /run/runcell-ca/ca-bundle.pem)"
    kv sys_bundle_sha "$(sha /etc/ssl/certs/ca-certificates.crt)"
    kv sys_bundle_certs "$(grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt)"
    kv anchors "$(ls /usr/local/share/ca-certificates 2>&1 | tr '\n' ' ')"
    kv anchor_sha "$(sha /usr/local/share/ca-certificates/runcell-ca.crt)"
    (echo x >>/run/runcell-ca/ca.pem) 2>/dev/null
    kv write_ca_rc $?
    (echo x >>/etc/ssl/certs/ca-certificates.crt) 2>/dev/null
    kv write_bundle_rc $?
    # the rule domain, trusted through the tool environment ($SSL_CERT_FILE)
    kv inject "$(timeout 20 /bin/tlsprobe api.test /v1/inject 'x-api-key: _brokered_' 2>&1 | tr '\n' ' ')"
    kv inject_no_placeholder "$(timeout 20 /bin/tlsprobe api.test /v1/other 2>&1 | tr '\n' ' ')"
    # through the system bundle the merged one is bound over
    kv inject_sysbundle "$(env -u SSL_CERT_FILE TLSPROBE_CAFILE=/etc/ssl/certs/ca-certificates.crt timeout 20 /bin/tlsprobe api.test /v1/sys 'x-api-key: _brokered_' 2>&1 | tr '\n' ' ')"
    # with nothing trusted the interception is visible
    kv inject_untrusted "$(env -u SSL_CERT_FILE TLSPROBE_CAFILE=/nonexistent timeout 20 /bin/tlsprobe api.test /v1/untrusted 2>&1 | tr '\n' ' ')"
    # a domain without rules is tunnelled end to end: the upstream's own certificate
    kv tunnel "$(timeout 20 /bin/tlsprobe tunnel.test /v1/tunnel 2>&1 | tr '\n' ' ')"
    kv probe_end 1
}
sweep() {
    echo "== env"; env
    local f
    for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
        echo "== $f"; tr '\0' '\n' <"$f" 2>/dev/null
    done
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

bt_tlsprobe_c() {
    cat >"$1" <<'EOF'
/* tlsprobe HOST PATH [HEADER...]: CONNECT HOST:443 through the proxy at 127.0.0.1:3128, TLS with
 * SNI and a host-name check, trust from $TLSPROBE_CAFILE or OpenSSL's defaults ($SSL_CERT_FILE),
 * then one GET. Prints key=value lines and reports the verification instead of failing on it. */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int read_head(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        if (read(fd, buf + n, 1) <= 0)
            return -1;
        buf[++n] = '\0';
        if (n >= 4 && !memcmp(buf + n - 4, "\r\n\r\n", 4))
            return 0;
    }
    return -1;
}

int main(int argc, char **argv)
{
    char req[4096], head[8192], buf[16384];
    if (argc < 3)
        return 2;
    const char *host = argv[1], *path = argv[2], *cafile = getenv("TLSPROBE_CAFILE");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(3128)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        puts("connect=noproxy");
        return 1;
    }
    snprintf(req, sizeof req, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host);
    if (write(fd, req, strlen(req)) < 0 || read_head(fd, head, sizeof head) < 0) {
        puts("connect=io");
        return 1;
    }
    char *sp = strchr(head, ' ');
    printf("connect=%.3s\n", sp ? sp + 1 : "???");
    if (!sp || strncmp(sp + 1, "200", 3) != 0) {
        char *why = strcasestr(head, "x-runcell-deny-reason:");
        if (why) {
            why += 22;
            while (*why == ' ')
                why++;
            printf("deny=%.*s\n", (int)strcspn(why, "\r\n"), why);
        }
        return 1;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (cafile ? !SSL_CTX_load_verify_locations(ctx, cafile, NULL)
               : !SSL_CTX_set_default_verify_paths(ctx))
        puts("trust=load_failed");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, host);
    SSL_set1_host(ssl, host);
    if (SSL_connect(ssl) != 1) {
        printf("handshake=fail:%s\n", ERR_reason_error_string(ERR_get_error()));
        return 1;
    }
    puts("handshake=ok");
    long v = SSL_get_verify_result(ssl);
    printf("verify=%s\n", v == X509_V_OK ? "ok" : X509_verify_cert_error_string(v));
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (peer) {
        X509_NAME_oneline(X509_get_issuer_name(peer), buf, sizeof buf);
        printf("issuer=%s\n", buf);
        X509_free(peer);
    }
    size_t n = (size_t)snprintf(req, sizeof req,
                                "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", path, host);
    for (int i = 3; i < argc && n < sizeof req; i++)
        n += (size_t)snprintf(req + n, sizeof req - n, "%s\r\n", argv[i]);
    if (n + 2 < sizeof req)
        n += (size_t)snprintf(req + n, sizeof req - n, "\r\n");
    SSL_write(ssl, req, (int)n);
    size_t got = 0;
    int r;
    while (got + 1 < sizeof buf && (r = SSL_read(ssl, buf + got, (int)(sizeof buf - 1 - got))) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    char *status = strchr(buf, ' ');
    printf("status=%.3s\n", status ? status + 1 : "???");
    char *body = strstr(buf, "\r\n\r\n");
    if (body)
        printf("body=%.*s\n", (int)strcspn(body + 4, "\r\n"), body + 4);
    return 0;
}
EOF
}

bt_scenario() {
    mkdir -p "$EG_T/scenarios"
    cat >"$EG_T/scenarios/tls-probe.json" <<'EOF'
{
  "name": "tls-probe",
  "description": "issue 11: in-container TLS trust probes as the agent uid, then wait for the host's checks",
  "agent": {"tools": [{"type": "agent_toolset_20260401",
                       "default_config": {"enabled": true, "permission_policy": {"type": "always_allow"}}}]},
  "turns": [
    {"user": "probe TLS",
     "steps": [
       {"tool": "bash", "input": {"command": "bash /bin/tlsprobe.sh probe >/workspace/tls.out 2>&1; echo probed"},
        "expect": {"is_error": false, "text": "probed", "wait_ms": 110000}},
       {"tool": "bash", "input": {"command": "bash /bin/tlsprobe.sh sweep >/workspace/sweep-tool.out 2>&1; echo swept"},
        "expect": {"is_error": false, "text": "swept", "wait_ms": 110000}},
       {"tool": "bash", "input": {"command": "for i in $(seq 500); do [ -e /workspace/release ] && break; sleep 0.2; done; echo released"},
        "expect": {"is_error": false, "text": "released", "wait_ms": 130000}},
       {"message": "done"}],
     "end": "end_turn"}]
}
EOF
}

# The minimal snapshot plus a fake system bundle, an empty anchor dir and the probes.
bt_snapshot() {
    local x=$EG_T/extra
    lt_snapshot minimal
    mkdir -p "$x/bin" "$x/etc/ssl/certs" "$x/usr/local/share/ca-certificates"
    bt_tlsprobe_c "$EG_T/tlsprobe.c"
    if ! cc -static -O2 -Werror=implicit-function-declaration -o "$x/bin/tlsprobe" "$EG_T/tlsprobe.c" -lssl -lcrypto -lpthread 2>"$EG_T/cc.err"; then
        t_skip all "cannot link a static OpenSSL client: $(grep -m1 error "$EG_T/cc.err")"
        exit 0
    fi
    bt_probe_script "$x/bin/tlsprobe.sh"
    chmod 0755 "$x/bin/tlsprobe" "$x/bin/tlsprobe.sh"
    # a "system root" the session CA is merged after (its key is thrown away)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=fake system root" -keyout /dev/null -out "$x/etc/ssl/certs/ca-certificates.crt" \
        >/dev/null 2>&1 || return 1
    chmod 0644 "$x/etc/ssl/certs/ca-certificates.crt"
    tar --append -f "$LT_TAR" -C "$x" --numeric-owner --owner=0 --group=0 --no-recursion \
        ./etc/ssl ./etc/ssl/certs ./etc/ssl/certs/ca-certificates.crt ./usr/local/share \
        ./usr/local/share/ca-certificates ./bin/tlsprobe ./bin/tlsprobe.sh
}

if ! bt_world; then t_fail setup "network namespaces and upstream: $(cat "$EG_T/upstream.err" 2>/dev/null)"; t_done; fi
bt_policies
bt_scenario
bt_snapshot || { t_fail snapshot "could not extend the snapshot"; t_done; }
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

api POST /v1/agents "$(jq -cn '{name: "tls-probe", model: "claude-sonnet-4-6",
    tools: [{type: "agent_toolset_20260401", default_config: {enabled: true,
             permission_policy: {type: "always_allow"}}}]}')"
AGENT=$(jb .id)
bt_session() {
    api POST /v1/sessions "$(jq -cn --arg a "$AGENT" --arg e "$ENV" --argjson m "$2" \
        '{agent: $a, environment_id: $e, metadata: ({scenario: "tls-probe"} + $m)}')"
    printf -v "$1" '%s' "$(jb .id)"
}
bt_session SA '{"runcell_policy": "inject"}'
bt_session SB '{}'
for s in "$SA" "$SB"; do
    if [ -z "$s" ] || [ "$s" = null ]; then
        t_fail sessions "not created: $(head -c 200 "$EM_DIR/body")"
        t_done
    fi
done
ws() { echo "$LT_STATE/workspaces/$1/data"; }
pv() { sed -n "s/^$2=//p" "$1" | head -n 1; }

if ! wait_for 150 grep -qs '^probe_end=1' "$(ws "$SA")/tls.out" ||
    ! wait_for 60 grep -qs '^probe_end=1' "$(ws "$SB")/tls.out"; then
    t_fail probes_ran "no probe output: $(tail -n 5 "$LT_LOG" | tr '\n' ' ')"
    t_done
fi
t_ok probes_ran
PA=$(ws "$SA")/tls.out PB=$(ws "$SB")/tls.out
CA_DIR=$LT_STATE/tls/$SA

# ---- the host side: files, modes, config.json ------------------------------------------------
check host.ca_dir_root_0755 test "$(stat -c '%a %u:%g' "$CA_DIR" 2>/dev/null)" = "755 0:0"
check host.ca_pem_root_0644 test "$(stat -c '%a %u:%g' "$CA_DIR/ca.pem" 2>/dev/null)" = "644 0:0"
check host.ca_pem_is_one_certificate bash -c "openssl x509 -in '$CA_DIR/ca.pem' -noout 2>/dev/null &&
    [ \"\$(grep -c -- '-----BEGIN' '$CA_DIR/ca.pem')\" = 1 ]"
check host.ca_is_a_ca bash -c "openssl x509 -in '$CA_DIR/ca.pem' -noout -text | grep -q 'CA:TRUE'"
check host.no_ca_for_session_without_rules test ! -e "$LT_STATE/tls/$SB"
check host.log_ca_created grep -q "\"session_id\":\"$SA\".*tls: per-session interception CA created" "$LT_LOG"
check host.log_no_ca_for_b bash -c "! grep -q '\"session_id\":\"$SB\".*tls:' '$LT_LOG'"
CFG_A=$LT_STATE/bundles/$SA/config.json CFG_B=$LT_STATE/bundles/$SB/config.json
mount_src() { jq -r --arg d "$2" '.mounts[] | select(.destination == $d) | "\(.source) \(.options | join(","))"' "$1" 2>/dev/null; }
check_eq config.a_ca_dir_mount "$(mount_src "$CFG_A" /run/runcell-ca)" "$CA_DIR bind,ro,nosuid,nodev,noexec"
check_eq config.a_bundle_over_system "$(mount_src "$CFG_A" /etc/ssl/certs/ca-certificates.crt)" \
    "$CA_DIR/ca-bundle.pem bind,ro,nosuid,nodev,noexec"
check_eq config.a_anchor_dir "$(mount_src "$CFG_A" /usr/local/share/ca-certificates)" \
    "$CA_DIR/anchors-0 bind,ro,nosuid,nodev,noexec"
check_eq config.a_ssl_cert_file "$(jq -r '.process.env[] | select(startswith("SSL_CERT_FILE="))' "$CFG_A" 2>/dev/null)" \
    SSL_CERT_FILE=/run/runcell-ca/ca-bundle.pem
check_eq config.b_no_ca_mounts "$(jq -r '[.mounts[] | select(.destination | test("runcell-ca|ca-certificates"))] | length' "$CFG_B" 2>/dev/null)" 0
check_eq config.b_no_trust_env "$(jq -r '[.process.env[] | select(test("^(SSL_CERT_FILE|NODE_EXTRA_CA_CERTS|NODE_USE_SYSTEM_CA|CURL_CA_BUNDLE)="))] | length' "$CFG_B" 2>/dev/null)" 0

# ---- what the agent's tools see (session A) --------------------------------------------------
check_eq agent.uid "$(pv "$PA" uid)" 1000
for v in SSL_CERT_FILE CURL_CA_BUNDLE REQUESTS_CA_BUNDLE GIT_SSL_CAINFO PIP_CERT NPM_CONFIG_CAFILE \
    AWS_CA_BUNDLE CARGO_HTTP_CAINFO GRPC_DEFAULT_SSL_ROOTS_FILE_PATH; do
    check_eq "agent.env_$v" "$(pv "$PA" "env_$v")" /run/runcell-ca/ca-bundle.pem
done
check_eq agent.env_NODE_EXTRA_CA_CERTS "$(pv "$PA" env_NODE_EXTRA_CA_CERTS)" /run/runcell-ca/ca.pem
check_eq agent.env_NODE_USE_SYSTEM_CA "$(pv "$PA" env_NODE_USE_SYSTEM_CA)" 1
check_eq agent.ca_dir "$(pv "$PA" ca_dir)" "anchors-0 ca-bundle.pem ca.pem "
HOST_CA_SHA=$(sha256sum "$CA_DIR/ca.pem" | cut -d' ' -f1)
check_eq agent.ca_pem_equals_host "$(pv "$PA" ca_sha)" "$HOST_CA_SHA"
check_eq agent.anchor_equals_ca "$(pv "$PA" anchor_sha)" "$HOST_CA_SHA"
check_eq agent.anchor_dir "$(pv "$PA" anchors)" "runcell-ca.crt "
check_eq agent.bundle_equals_host "$(pv "$PA" bundle_sha)" "$(sha256sum "$CA_DIR/ca-bundle.pem" | cut -d' ' -f1)"
check_eq agent.system_bundle_is_merged "$(pv "$PA" sys_bundle_sha)" "$(pv "$PA" bundle_sha)"
check_eq agent.system_bundle_two_certs "$(pv "$PA" sys_bundle_certs)" 2
check agent.ca_read_only test "$(pv "$PA" write_ca_rc)" != 0
check agent.bundle_read_only test "$(pv "$PA" write_bundle_rc)" != 0
check host.bundle_starts_with_system_root bash -c "openssl x509 -in '$CA_DIR/ca-bundle.pem' -noout -subject | grep -q 'fake system root'"

# ---- session B: nothing --------------------------------------------------------------------
for v in SSL_CERT_FILE NODE_EXTRA_CA_CERTS NODE_USE_SYSTEM_CA REQUESTS_CA_BUNDLE; do
    check_eq "b.env_${v}_unset" "$(pv "$PB" "env_$v")" "<unset>"
done
check_contains b.no_ca_dir "$(pv "$PB" ca_dir)" "No such file"
check_eq b.system_bundle_untouched "$(pv "$PB" sys_bundle_certs)" 1
check_eq b.anchor_dir_empty "$(pv "$PB" anchors)" ""
check_contains b.tunnel_passthrough "$(pv "$PB" tunnel)" "issuer=/CN=runcell egress test CA"

# ---- interception: the proxy's CA is the published pem; the credential is injected ------------
INJ=$(pv "$PA" inject)
if [[ "$INJ" == *"TLS interception is not supported"* ]] || [[ "$INJ" == *"connect=403"* ]]; then
    for n in s_client_verifies inject_verified inject_status inject_upstream_header \
        no_placeholder_response sysbundle_verifies untrusted_fails; do
        t_skip "intercept.$n" "the proxy does not terminate TLS yet: $INJ"
    done
else
    out=$(timeout 20 nsenter --net="$LT_RUN/netns/$SA" openssl s_client -proxy 127.0.0.1:3128 \
        -connect api.test:443 -servername api.test -verify_hostname api.test \
        -CAfile "$CA_DIR/ca.pem" -verify_return_error </dev/null 2>&1)
    check_contains intercept.s_client_verifies "$out" "Verify return code: 0 (ok)"
    check_contains intercept.inject_verified "$INJ" "handshake=ok verify=ok issuer="
    check_contains intercept.inject_status "$INJ" "status=200 body=tls-ok /v1/inject"
    # exactly one x-api-key reached the upstream, with the injected value (not the placeholder)
    check intercept.inject_upstream_header bash -c "jq -se --arg v '$INJECTED' '[.[] | select(.path == \"/v1/inject\") |
        .headers[] | select(.[0] | ascii_downcase == \"x-api-key\") | .[1]] == [\$v]' '$EG_T/upstream.log' >/dev/null"
    check_contains intercept.no_placeholder_response "$(pv "$PA" inject_no_placeholder)" "status=403 body=no placeholder"
    check_contains intercept.sysbundle_verifies "$(pv "$PA" inject_sysbundle)" "verify=ok"
    check_absent intercept.untrusted_fails "$(pv "$PA" inject_untrusted)" "verify=ok"
fi
check_contains a.tunnel_passthrough "$(pv "$PA" tunnel)" "issuer=/CN=runcell egress test CA"
check_absent a.tunnel_not_trusted "$(pv "$PA" tunnel)" "verify=ok"

# ---- no private key anywhere ----------------------------------------------------------------
rexec() {
    local u=$1 pid
    pid=$(runc --root "$RUNC_ROOT" state "$2" 2>/dev/null | jq -r .pid)
    shift 2
    [ -n "$pid" ] && [ "$pid" != null ] || return 1
    timeout 120 nsenter -t "$pid" -U -m -n -i -u -p -r -w -S "$u" -G "$u" "$@"
}
wait_for 120 grep -qs '^== sweep_end' "$(ws "$SA")/sweep-tool.out" || t_fail sweep.tool_done "no end"
cp "$(ws "$SA")/sweep-tool.out" "$EG_T/sweep.tool" 2>/dev/null
for u in 1000 0; do rexec "$u" "$SA" /bin/bash /bin/tlsprobe.sh sweep >"$EG_T/sweep.$u" 2>/dev/null; done
check sweep.complete bash -c "[ \"\$(grep -c '^== sweep_end' '$EG_T'/sweep.tool '$EG_T'/sweep.1000 '$EG_T'/sweep.0 | grep -c ':1\$')\" = 3 ]"
check sweep.saw_the_ca grep -qs 'BEGIN CERTIFICATE' "$EG_T/sweep.1000"
check sweep.saw_tool_env grep -qs '^SSL_CERT_FILE=/run/runcell-ca/ca-bundle.pem' "$EG_T/sweep.tool"
# The CA's public point (65 bytes): every DER encoding of its private key carries it too.
openssl x509 -in "$CA_DIR/ca.pem" -noout -pubkey 2>/dev/null | openssl pkey -pubin -outform DER 2>/dev/null |
    tail -c 65 >"$EG_T/ca.point"
check key.public_point_known test "$(stat -c %s "$EG_T/ca.point" 2>/dev/null)" = 65
# key_hits POINT-FILE FILE-OR-DIR...: files holding that key in DER (the raw point) or a PEM
# private key block whose public key is that point. (System libraries such as GnuTLS carry
# self-test keys in PEM, so a bare "PRIVATE KEY" marker proves nothing; the point does.)
key_hits() {
    python3 - "$@" <<'PY'
import os, re, subprocess, sys
point = open(sys.argv[1], "rb").read()
block = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----\r?\n[A-Za-z0-9+/=:, \r\n-]*?-----END \1PRIVATE KEY-----")
hits = []
def pem_is_ours(pem):
    r = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=pem,
                       capture_output=True)
    return r.returncode == 0 and r.stdout.endswith(point)
def scan(path):
    try:
        if os.path.getsize(path) > (64 << 20):  # the workspace's ext4 image: its files are walked
            return
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return
    if (len(point) == 65 and point in data) or any(pem_is_ours(m.group(0)) for m in block.finditer(data)):
        hits.append(path)
for top in sys.argv[2:]:
    if os.path.isfile(top):
        scan(top)
    for root, dirs, files in os.walk(top):
        for name in files:
            p = os.path.join(root, name)
            if os.path.isfile(p) and not os.path.islink(p):
                scan(p)
print(" ".join(hits))
PY
}
# the detector itself: a key in PEM (against its own point) and the CA's DER certificate
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$EG_T/control.key" 2>/dev/null
openssl pkey -in "$EG_T/control.key" -pubout -outform DER 2>/dev/null | tail -c 65 >"$EG_T/control.point"
openssl x509 -in "$CA_DIR/ca.pem" -outform DER -out "$EG_T/control.der" 2>/dev/null
check_eq key.detector_finds_pem "$(key_hits "$EG_T/control.point" "$EG_T/control.key")" "$EG_T/control.key"
check_eq key.detector_finds_der "$(key_hits "$EG_T/ca.point" "$EG_T/control.der")" "$EG_T/control.der"
rm -f "$EG_T/control.key" "$EG_T/control.der" "$EG_T/control.point"
check_eq key.not_in_container_agent_or_runner \
    "$(key_hits "$EG_T/ca.point" "$EG_T/sweep.tool" "$EG_T/sweep.1000" "$EG_T/sweep.0")" ""
check_eq key.not_on_host_state_or_run_dirs "$(key_hits "$EG_T/ca.point" "$LT_STATE" "$LT_RUN")" ""

# ---- session D: a shim killed with SIGKILL; the reconcile removes its CA dir ------------------
touch "$(ws "$SA")/release" "$(ws "$SB")/release"
for s in "$SA" "$SB"; do
    v=$(wait_verdict "$s" 60)
    n=verdict.$([ "$s" = "$SA" ] && echo a || echo b)
    if [ "$v" = passed ]; then t_ok "$n"; else t_fail "$n" "$v"; fi
done
check end.ca_dir_removed_a wait_for 30 test ! -e "$CA_DIR"
bt_session SD '{"runcell_policy": "inject"}'
if wait_for 90 test -s "$LT_STATE/tls/$SD/ca.pem"; then
    dpid=$(jq -r .pid "$LT_RUN/sessions/$SD/state.json" 2>/dev/null)
    if [ -n "$dpid" ] && [ "$dpid" != null ] && kill -9 "$dpid" 2>/dev/null; then
        check crash.reconcile_removes_ca_dir wait_for 60 test ! -e "$LT_STATE/tls/$SD"
    else
        t_fail crash.reconcile_removes_ca_dir "no shim pid for $SD"
    fi
else
    t_fail crash.reconcile_removes_ca_dir "session D never published its CA"
fi

# ---- session E: RUNCELL_TLS_INTERCEPT=0 - no CA, nothing in the container, CONNECT refused ----
lt_launcher_stop
lt_launcher_start RUNCELL_POLICY_FILE="$EG_T/default.json" RUNCELL_POLICY_DIR="$EG_T/policies" \
    RUNCELL_BROKER_HOSTS_FILE="$EG_T/hosts" RUNCELL_CA_FILE="$EG_T/pki/ca.pem" RUNCELL_TLS_INTERCEPT=0
bt_session SE '{"runcell_policy": "inject"}'
if wait_for 150 grep -qs '^probe_end=1' "$(ws "$SE")/tls.out"; then
    PE=$(ws "$SE")/tls.out
    check_eq off.no_ssl_cert_file "$(pv "$PE" env_SSL_CERT_FILE)" "<unset>"
    check_contains off.no_ca_dir "$(pv "$PE" ca_dir)" "No such file"
    check_eq off.system_bundle_untouched "$(pv "$PE" sys_bundle_certs)" 1
    check_contains off.connect_refused "$(pv "$PE" inject)" "connect=403 deny=domain has request rules"
    check off.no_host_dir test ! -e "$LT_STATE/tls/$SE"
    check off.logged grep -q "\"session_id\":\"$SE\".*tls: interception off" "$LT_LOG"
    touch "$(ws "$SE")/release"
    v=$(wait_verdict "$SE" 60)
    if [ "$v" = passed ]; then t_ok verdict.e; else t_fail verdict.e "$v"; fi
else
    t_fail off.probes_ran "no probe output: $(tail -n 5 "$LT_LOG" | tr '\n' ' ')"
fi

# ---- session F: RUNCELL_WRITABLE_ROOT=1 - the CA file is bound into the anchor dir ------------
lt_launcher_stop
lt_launcher_start RUNCELL_POLICY_FILE="$EG_T/default.json" RUNCELL_POLICY_DIR="$EG_T/policies" \
    RUNCELL_BROKER_HOSTS_FILE="$EG_T/hosts" RUNCELL_CA_FILE="$EG_T/pki/ca.pem" RUNCELL_WRITABLE_ROOT=1
bt_session SF '{"runcell_policy": "inject"}'
if wait_for 150 grep -qs '^probe_end=1' "$(ws "$SF")/tls.out"; then
    PF=$(ws "$SF")/tls.out
    check_eq writable.anchor_file "$(pv "$PF" anchors)" "runcell-ca.crt "
    check_eq writable.anchor_is_ca "$(pv "$PF" anchor_sha)" "$(pv "$PF" ca_sha)"
    check_eq writable.system_bundle_is_merged "$(pv "$PF" sys_bundle_sha)" "$(pv "$PF" bundle_sha)"
    check_contains writable.inject "$(pv "$PF" inject)" "verify=ok"
    check writable.snapshot_untouched bash -c "! find '$LT_STATE/snapshots' -name runcell-ca.crt | grep -q ."
    touch "$(ws "$SF")/release"
    v=$(wait_verdict "$SF" 60)
    if [ "$v" = passed ]; then t_ok verdict.f; else t_fail verdict.f "$v"; fi
else
    t_fail writable.probes_ran "no probe output: $(tail -n 5 "$LT_LOG" | tr '\n' ' ')"
fi
if left=$(wait_clean 60); then t_ok nothing_left; else t_fail nothing_left "$left"; fi
check_eq end.tls_dir_empty "$(find "$LT_STATE/tls" -mindepth 1 2>/dev/null | tr '\n' ' ')" ""
check host_logs.no_injected_value bash -c "! grep -rqsF '$INJECTED' '$LT_LOG' '$LT_STATE/sessions' '$LT_STATE/workspaces'"
t_done

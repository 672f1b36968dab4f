#!/usr/bin/env bash
# tests/integration/broker_tls.sh - TLS interception with the per-session CA (issue 11), with real
# curl in the egress test world (egress_lib.sh: container, broker and "internet" namespaces).
#
# The proxy runs with --intercept-ca-out (a fresh session CA, as the shim creates one); curl in
# the container trusts that CA (--cacert) and calls https://api.test/... through CONNECT. The
# upstream here echoes requests back on some paths, so the tests can check that:
#   - the credential arrives upstream, replaces every copy the client sent, never reaches the
#     client, the audit log or the proxy's log;
#   - each matcher dimension (path exact/startsWith/regex, method, queryString, headers with a
#     case-insensitive name), first-match precedence, response rules, no-rule passthrough and a
#     path outside the rule (no credential) behave as for plain http://;
#   - a Host header (or SNI) that is not the CONNECT target is refused and reaches nobody;
#   - a response reflecting the credential (raw, base64, URL-encoded, in a header) is cut, on
#     the intercepted and on the plain-HTTP path;
#   - a client that does not trust the CA fails its handshake at once, and the audit says why;
#   - a domain without rules is still tunnelled end to end (the upstream's own certificate);
#   - forwardURL sends the request to the operator's proxy with x-runcell-forwarded-* headers and
#     an HS256 token that verifies with the key;
#   - without a CA, CONNECT to a domain with rules is still refused.
# shellcheck source=tests/integration/egress_lib.sh
. "$(dirname "$0")/egress_lib.sh"

eg_require

SECRET='sk-live-INJECTED-tls-secret-0123456789abcdef'
FWDKEY='forward-key-0123456789abcdefghijklmnopqrstuvwxyz'

# Certificates for every upstream name (the egress lib's cover only api.test and tunnel.test).
tls_certs() {
    local d=$EG_T/pki
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=runcell tls test upstream CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
        >/dev/null 2>&1 || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=api.test" \
        -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1 || return 1
    printf 'subjectAltName=DNS:api.test,DNS:open.test,DNS:fwd.test,DNS:tunnel.test,DNS:plain.test\nextendedKeyUsage=serverAuth\n' \
        >"$d/ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/ext" -out "$d/server.pem" >/dev/null 2>&1 || return 1
}

# HTTP on :80 and HTTPS on :443. Logs every request as a JSON line; some paths echo it back.
tls_upstream() {
    cat >"$EG_T/upstream.py" <<'PY'
import base64, http.server, json, socketserver, ssl, sys, threading, urllib.parse
log_path, cert, key, ready = sys.argv[1:5]
lock = threading.Lock()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def handle_any(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n) if n else b""
        rec = {"port": self.server.server_address[1], "method": self.command, "path": self.path,
               "headers": [[k, v] for k, v in self.headers.items()],
               "body": data.decode("utf-8", "replace")}
        with lock, open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        auth = self.headers.get("Authorization", "")
        extra = {}
        p = self.path.split("?")[0]
        if p.endswith("/echo/headers"):
            out = json.dumps(rec["headers"]).encode()
        elif p.endswith("/echo/b64"):
            out = b"x" + base64.b64encode(b"..." + str(self.headers).encode())
        elif p.endswith("/echo/url"):
            out = ("q=" + urllib.parse.quote(auth, safe="")).encode()
        elif p.endswith("/echo/header"):
            out = b"look at the headers\n"
            extra["X-Echo"] = auth
        elif p.endswith("/echo/late"):
            out = b"a" * 100000 + auth.encode() + b"\n"
        elif p.endswith("/big"):
            out = b"0123456789abcdef" * 16384
        else:
            out = (("tls-ok " if rec["port"] == 443 else "plain-ok ") + self.path + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_DELETE = handle_any

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

plain = S(("0.0.0.0", 80), H)
tls = S(("0.0.0.0", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=plain.serve_forever, daemon=True).start()
open(ready, "w").write("ok\n")
tls.serve_forever()
PY
    : >"$EG_T/upstream.log"
    ip netns exec "$EG_UP" python3 "$EG_T/upstream.py" "$EG_T/upstream.log" \
        "$EG_T/pki/server.pem" "$EG_T/pki/server.key" "$EG_T/upstream.ready" \
        2>"$EG_T/upstream.err" &
    EG_PIDS+=($!)
    eg_wait_file "$EG_T/upstream.ready"
}

EG_T=$(mktemp -d /tmp/rc-broker-tls.XXXXXX)
if ! eg_netns; then t_fail setup "network namespaces"; t_done; fi
if ! tls_certs; then t_fail setup "test certificates"; t_done; fi
if ! tls_upstream; then t_fail setup "upstream server: $(cat "$EG_T/upstream.err")"; t_done; fi
printf '203.0.113.2 api.test open.test fwd.test tunnel.test plain.test\n' >"$EG_T/hosts"
printf '%s\n' "$FWDKEY" >"$EG_T/fwd.key"
chmod 600 "$EG_T/fwd.key"

cat >"$EG_T/policy.json" <<EOF
{"allow": {
  "api.test": [
    {"match": {"path": {"startsWith": "/v1/"}, "method": ["GET", "POST"],
               "headers": [{"key": {"exact": "Authorization"},
                            "value": {"exact": "Bearer _brokered_"}}]},
     "transform": [{"headers": {"Authorization": "Bearer $SECRET"}}]},
    {"match": {"path": {"startsWith": "/v1/"}},
     "transform": [{"headers": {"x-second": "second-rule"}}]},
    {"match": {"path": {"exact": "/q"}, "queryString": [{"key": {"exact": "k"}, "value": {"startsWith": "v"}}]},
     "transform": [{"headers": {"x-rule": "query"}}]},
    {"match": {"path": {"regex": "^/re/[0-9]+$"}},
     "transform": [{"headers": {"x-rule": "regex"}}]},
    {"match": {"path": {"exact": "/hdr"}, "headers": [{"key": {"exact": "X-Placeholder"}}]},
     "transform": [{"headers": {"x-rule": "header"}}]},
    {"match": {"path": {"exact": "/fwd"}}, "forwardURL": "https://fwd.test/forward/in"},
    {"match": {"path": {"exact": "/public"}, "method": ["GET"]}, "transform": []},
    {"response": {"statusCode": 403, "contentType": "text/plain", "body": "outside scope\n"}}
  ],
  "open.test": [
    {"match": {"path": {"exact": "/only"}}, "transform": [{"headers": {"x-rule": "open"}}]}
  ],
  "plain.test": [
    {"match": {"path": {"startsWith": "/"}}, "transform": [{"headers": {"Authorization": "Bearer $SECRET"}}]}
  ],
  "tunnel.test": [],
  "fwd.test": []
}}
EOF

# tls_proxy NAME [args...]: a proxy like eg_proxy, with this test's hosts file.
tls_proxy() {
    local name=$1 port=${EG_NEXT_PORT:-3128}
    shift
    EG_NEXT_PORT=$((port + 1))
    ip netns exec "$EG_BR" env RUNCELL_BROKER_HOSTS_FILE="$EG_T/hosts" "$EG_PROXY" \
        --policy "$EG_T/policy.json" --listen "127.0.0.1:$port" --netns "$EG_CT" \
        --audit "$EG_T/$name.audit" --session-id "sesn_tls_test" --ca-file "$EG_T/pki/ca.pem" \
        --ready-file "$EG_T/$name.ready" "$@" >"$EG_T/$name.out" 2>"$EG_T/$name.err" &
    EG_PIDS+=($!)
    if ! eg_wait_file "$EG_T/$name.ready"; then
        t_fail "${name}_start" "$(cat "$EG_T/$name.err")"
        return 1
    fi
    EG_PORT=$port
}

# --tool-calls plays the runner's report of its running tool calls (issue 11).
tls_proxy main --intercept-ca-out "$EG_T/session-ca.pem" --forward-key "$EG_T/fwd.key" \
    --tool-calls toolu_tls_1,toolu_tls-2 || t_done
P=$EG_PORT
AUDIT=$EG_T/main.audit
ULOG=$EG_T/upstream.log
SCA=$EG_T/session-ca.pem

# tcurl ARGS...: curl in the container through the intercepting proxy, trusting the session CA.
tcurl() { ecurl "$P" --cacert "$SCA" "$@"; }
tstatus() { in_ct curl -s -o /dev/null --max-time 10 -w '%{http_code}' -x "http://127.0.0.1:$P" --cacert "$SCA" "$@"; }
upstream_header() { # NAME: the values the upstream saw for NAME in its last request
    tail -n 1 "$ULOG" | python3 -c 'import json,sys; n=sys.argv[1].lower(); print("|".join(v for k,v in json.load(sys.stdin)["headers"] if k.lower()==n))' "$1"
}
upstream_count() { wc -l <"$ULOG"; }

# ---- the session CA ----
check_contains ca_subject "$(openssl x509 -in "$SCA" -noout -subject)" "runcell session CA sesn_tls_test"
check_contains ca_is_ca "$(openssl x509 -in "$SCA" -noout -text)" "CA:TRUE, pathlen:0"
check_absent ca_file_has_no_key "$(cat "$SCA")" "PRIVATE KEY"

# ---- injection over intercepted https:// ----
OUT=$(tcurl -v -i -H 'Authorization: Bearer _brokered_' https://api.test/v1/items?limit=5 2>&1)
check_contains intercept_reaches_upstream "$OUT" "tls-ok /v1/items?limit=5"
check_contains intercept_leaf_from_session_ca "$OUT" "issuer: CN=runcell session CA sesn_tls_test"
check_eq intercept_injected "$(upstream_header authorization)" "Bearer $SECRET"
check_absent intercept_client_never_sees_value "$OUT" "INJECTED"
check_eq intercept_upstream_host "$(upstream_header host)" "api.test"
check_eq intercept_identity_encoding "$(upstream_header accept-encoding)" "identity"
tcurl -H 'Authorization: Bearer _brokered_' -H 'authorization: Bearer other' \
    https://api.test/v1/x >/dev/null
check_eq intercept_overwrites_every_copy "$(upstream_header authorization)" "Bearer $SECRET"
check_eq intercept_post_body "$(tcurl -H 'Authorization: Bearer _brokered_' -d '{"a":1}' \
    https://api.test/v1/post)" "tls-ok /v1/post"
check_contains intercept_post_body_arrived "$(tail -n 1 "$ULOG")" '"body": "{\"a\":1}"'
check_eq intercept_http2_client_gets_http11 "$(tcurl --http2 -o /dev/null -w '%{http_version}' \
    -H 'Authorization: Bearer _brokered_' https://api.test/v1/h2)" "1.1"
BIG=$(tcurl https://api.test/v1/big | md5sum | cut -d' ' -f1)
check_eq intercept_large_response_intact "$BIG" \
    "$(python3 -c 'import hashlib; print(hashlib.md5(b"0123456789abcdef"*16384).hexdigest())')"

# ---- matchers and precedence ----
tcurl -H 'Authorization: Bearer _brokered_' https://api.test/v1/prec >/dev/null
check_eq first_match_wins_no_second_header "$(upstream_header x-second)" ""
tcurl -H 'Authorization: Bearer other' https://api.test/v1/prec >/dev/null
check_eq wrong_placeholder_next_rule "$(upstream_header x-second)" "second-rule"
check_eq wrong_placeholder_no_credential "$(upstream_header authorization)" "Bearer other"
tcurl -X DELETE -H 'Authorization: Bearer _brokered_' https://api.test/v1/del >/dev/null
check_eq method_not_in_rule_no_credential "$(upstream_header authorization)" "Bearer _brokered_"
check_eq method_not_in_rule_next_rule "$(upstream_header x-second)" "second-rule"
tcurl 'https://api.test/q?a=1&k=vv' >/dev/null
check_eq query_matcher "$(upstream_header x-rule)" "query"
check_eq query_mismatch_response_rule "$(tstatus 'https://api.test/q?k=other')" 403
tcurl https://api.test/re/123 >/dev/null
check_eq regex_matcher "$(upstream_header x-rule)" "regex"
check_eq regex_mismatch_response_rule "$(tstatus https://api.test/re/12a)" 403
tcurl -H 'x-PLACEHOLDER: 1' https://api.test/hdr >/dev/null
check_eq header_name_case_insensitive "$(upstream_header x-rule)" "header"
tcurl -H 'x-rule: mine' -H 'X-Placeholder: 1' https://api.test/hdr >/dev/null
check_eq transform_overwrites_client_header "$(upstream_header x-rule)" "header"
before=$(upstream_count)
OUT=$(tcurl -i https://api.test/elsewhere)
check_contains response_rule_inside_tls "$OUT" "outside scope"
check_eq response_rule_upstream_untouched "$(upstream_count)" "$before"
check_eq empty_transform_passes "$(tcurl -H 'Authorization: Bearer mine' https://api.test/public)" \
    "tls-ok /public"
check_eq empty_transform_keeps_header "$(upstream_header authorization)" "Bearer mine"
check_eq no_rule_match_passthrough "$(tcurl -H 'x-rule: mine' https://open.test/other)" \
    "tls-ok /other"
check_eq no_rule_match_unmodified "$(upstream_header x-rule)" "mine"
tcurl https://open.test/only >/dev/null
check_eq other_domain_rule "$(upstream_header x-rule)" "open"

# ---- Host must be the CONNECT target ----
before=$(upstream_count)
OUT=$(tcurl -i -H 'Host: open.test' -H 'Authorization: Bearer _brokered_' https://api.test/v1/x)
check_contains host_mismatch_400 "$OUT" "HTTP/1.1 400"
check_contains host_mismatch_reason "$OUT" "Host header does not match the request target"
check_eq host_mismatch_upstream_untouched "$(upstream_count)" "$before"
check_eq host_with_default_port_ok "$(tcurl -H 'Host: api.test:443' https://api.test/public)" \
    "tls-ok /public"

# SNI, when sent, must name the CONNECT target too
OUT=$(in_ct timeout 5 openssl s_client -proxy "127.0.0.1:$P" -connect api.test:443 \
    -servername open.test -CAfile "$SCA" </dev/null 2>&1)
check_contains sni_mismatch_refused "$OUT" "unrecognized name"
sleep 0.2
check_contains sni_mismatch_audited "$(cat "$AUDIT")" "client SNI does not match the CONNECT target"

# ---- reflection: the credential never comes back ----
for kind in headers b64 url header late; do
    before=$(upstream_count)
    OUT=$(tcurl -i -H 'Authorization: Bearer _brokered_' "https://api.test/v1/echo/$kind" 2>&1)
    check_eq "reflection_${kind}_reached_upstream" "$(upstream_count)" "$((before + 1))"
    check_absent "reflection_${kind}_cut" "$OUT" "INJECTED"
done
check_contains reflection_logged "$(cat "$EG_T/main.err")" \
    "response reflected an injected credential from api.test (rule api.test#0); connection cut"
check_absent reflection_plain_http_cut "$(ecurl "$P" -i http://plain.test/echo/headers 2>&1)" \
    "INJECTED"
check_contains reflection_plain_http_reached "$(upstream_header authorization)" "INJECTED"

# ---- a client that does not trust the session CA ----
start=$(date +%s%N)
OUT=$(ecurl "$P" -H 'Authorization: Bearer _brokered_' https://api.test/v1/x 2>&1)
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
check_eq untrusting_client_fails "$rc" 60
if [ "$ms" -lt 3000 ]; then t_ok untrusting_client_fails_fast; else t_fail untrusting_client_fails_fast "${ms} ms"; fi
sleep 0.2
check_contains untrusting_client_audited "$(cat "$AUDIT")" \
    "client refused the interception certificate"

# ---- domains without rules stay end to end ----
OUT=$(ecurl "$P" -v --cacert "$EG_T/pki/ca.pem" https://tunnel.test/e2e 2>&1)
check_contains tunnel_end_to_end "$OUT" "tls-ok /e2e"
check_contains tunnel_upstream_certificate "$OUT" "issuer: CN=runcell tls test upstream CA"
check_eq tunnel_session_ca_not_used "$(eg_status "$P" --cacert "$SCA" https://tunnel.test/x)" 000

# ---- forwardURL ----
tcurl -H 'x-runcell-forwarded-host: evil.test' 'https://api.test/fwd?a=1' >/dev/null
check_contains forward_path "$(tail -n 1 "$ULOG")" '"path": "/forward/in"'
check_eq forward_host_header "$(upstream_header host)" "fwd.test"
check_eq forward_orig_host "$(upstream_header x-runcell-forwarded-host)" "api.test"
check_eq forward_orig_scheme "$(upstream_header x-runcell-forwarded-scheme)" "https"
check_eq forward_orig_port "$(upstream_header x-runcell-forwarded-port)" "443"
check_eq forward_orig_path "$(upstream_header x-runcell-forwarded-path)" "/fwd?a=1"
TOKEN=$(upstream_header x-runcell-forward-token)
check_eq forward_token_verifies "$(python3 - "$TOKEN" "$FWDKEY" <<'PY'
import base64, hashlib, hmac, json, sys, time
tok, key = sys.argv[1], sys.argv[2].encode()
h, c, s = tok.split(".")
pad = lambda x: x + "=" * (-len(x) % 4)
good = hmac.compare_digest(base64.urlsafe_b64decode(pad(s)),
                           hmac.new(key, (h + "." + c).encode(), hashlib.sha256).digest())
claims = json.loads(base64.urlsafe_b64decode(pad(c)))
ok = good and claims["aud"] == "https://fwd.test/forward/in" and claims["sid"] == "sesn_tls_test" \
     and claims["exp"] > time.time() and json.loads(base64.urlsafe_b64decode(pad(h)))["alg"] == "HS256"
print("ok" if ok else "bad %s" % claims)
PY
)" ok

# ---- the audit and the proxy's log ----
sleep 0.2
line=$(python3 - "$AUDIT" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("kind") == "https" and r.get("action") == "transform" and r.get("path") == "/v1/items":
        print(l.strip()); break
PY
)
check_contains audit_kind_https "$line" '"kind":"https"'
check_contains audit_injected_names "$line" '"injected":["authorization"]'
check_contains audit_rule_index "$line" '"rule":"api.test#0"'
check_contains audit_method_path "$line" '"method":"GET","path":"/v1/items"'
check_contains audit_tool_calls "$line" '"tool_calls":["toolu_tls_1","toolu_tls-2"]'
check_contains proxy_log_tool_calls "$(cat "$EG_T/main.err")" \
    '(rule api.test#0) (tool calls [toolu_tls_1,toolu_tls-2])'
check_contains audit_reflection "$(cat "$AUDIT")" '"end":"reflection cut"'
check_contains audit_forward "$(cat "$AUDIT")" '"action":"forward-url"'
check_absent audit_never_holds_value "$(cat "$AUDIT")" "INJECTED"
check_absent proxy_log_never_holds_value "$(cat "$EG_T/main.err" "$EG_T/main.out")" "INJECTED"
check_absent audit_never_holds_forward_key "$(cat "$AUDIT" "$EG_T/main.err")" "$FWDKEY"

# ---- without a CA nothing is intercepted ----
tls_proxy noca --forward-key "$EG_T/fwd.key" || t_done
check_eq no_ca_connect_refused "$(eg_connect_status "$EG_PORT" https://api.test/)" 403
check_contains no_ca_reason "$(ecurl "$EG_PORT" -p -v https://api.test/ 2>&1)" \
    "TLS interception is not enabled"

# ---- forwardURL without a key refuses to start ----
ERR=$("$EG_PROXY" --policy "$EG_T/policy.json" --listen 127.0.0.1:0 2>&1 >/dev/null)
check_contains forward_needs_key "$ERR" "no forward key is configured"

t_done

#!/usr/bin/env bash
# tests/integration/egress_policy.sh - the egress proxy's allow/deny decisions with real curl
# (issue 6): an allowed domain works through CONNECT (plain and TLS) and as plain http://;
# unlisted domains, IP literals, private, loopback, metadata and the host's own addresses are
# refused with 403, a reason header and an audit line; subnets.allow opens exactly what it
# names and subnets.deny wins; malformed and ambiguous requests get 4xx; the container has no
# network without the proxy; a deny-all policy refuses everything.
. "$(dirname "$0")/egress_lib.sh"

eg_require
eg_setup

cat >"$EG_T/policy.json" <<'EOF'
{"allow": ["plain.test", "tunnel.test", "*.wild.test", "meta.test", "priv.test", "privok.test",
           "loop.test", "self.test", "denied.test"],
 "subnets": {"allow": ["10.77.0.3/32"], "deny": ["203.0.113.3/32"]}}
EOF
eg_proxy main "$EG_T/policy.json" || t_done
P=$EG_PORT
AUDIT=$EG_T/main.audit

# ---- allowed ----
check_eq plain_http_allowed "$(ecurl "$P" http://plain.test/hello)" "plain-ok /hello"
check_eq plain_http_query "$(ecurl "$P" 'http://plain.test/q?a=1&b=%20')" "plain-ok /q?a=1&b=%20"
check_eq connect_plain_allowed "$(ecurl "$P" -p http://plain.test/tunnelled)" "plain-ok /tunnelled"
check_eq connect_tls_allowed \
    "$(ecurl "$P" --cacert "$EG_T/pki/ca.pem" https://tunnel.test/secure)" "tls-ok /secure"
check_eq wildcard_allowed "$(ecurl "$P" http://a.wild.test/w)" "plain-ok /w"
check_eq post_body_forwarded "$(ecurl "$P" -d 'x=1&y=2' http://plain.test/post)" "plain-ok /post"
check_contains post_body_reached_upstream "$(tail -n 1 "$EG_T/upstream.log")" '"body": "x=1&y=2"'
check_eq chunked_body_forwarded \
    "$(ecurl "$P" -H 'Transfer-Encoding: chunked' -d 'chunky-data' http://plain.test/chunk)" \
    "plain-ok /chunk"
check_contains chunked_body_reached_upstream "$(tail -n 1 "$EG_T/upstream.log")" \
    '"body": "chunky-data"'
check_eq subnets_allow_opens_private "$(ecurl "$P" http://privok.test/p)" "plain-ok /p"
check_eq subnets_allow_ip_literal "$(ecurl "$P" http://10.77.0.3/lit)" "plain-ok /lit"

# The upstream sees an origin-form request, our Host, and none of the proxy's own headers.
ecurl "$P" -H 'Proxy-Authorization: Basic c2VjcmV0' -H 'X-Keep: yes' http://plain.test/hdr >/dev/null
REQ=$(tail -n 1 "$EG_T/upstream.log")
check_contains upstream_origin_form "$REQ" '"path": "/hdr"'
check_contains upstream_host_header "$REQ" '["Host", "plain.test"]'
check_contains upstream_keeps_headers "$REQ" '["X-Keep", "yes"]'
check_absent upstream_no_proxy_auth "$REQ" 'Proxy-Authorization'
check_contains upstream_connection_close "$REQ" '["Connection", "close"]'

# ---- refused by name ----
check_eq unlisted_domain_403 "$(eg_status "$P" http://unlisted.test/)" 403
check_eq unlisted_domain_reason \
    "$(ecurl "$P" -i http://unlisted.test/ | eg_header x-runcell-deny-reason)" "domain not in policy"
check_eq unlisted_domain_connect_403 "$(eg_connect_status "$P" http://unlisted.test/)" 403
check_eq wildcard_not_apex "$(eg_status "$P" http://wild.test/)" 403
check_eq ip_literal_403 "$(eg_status "$P" http://203.0.113.2/)" 403
check_eq ip_literal_reason \
    "$(ecurl "$P" -i http://203.0.113.2/ | eg_header x-runcell-deny-reason)" \
    "IP address not in subnets.allow"
check_eq ip_literal_connect_403 "$(eg_connect_status "$P" http://203.0.113.2/)" 403
check_eq ipv6_literal_connect_403 "$(eg_connect_status "$P" 'http://[2001:db8::1]/')" 403
check_eq metadata_literal_403 "$(eg_status "$P" http://169.254.169.254/latest/meta-data/)" 403

# ---- refused after resolving (SSRF guard) ----
check_eq metadata_name_reason \
    "$(ecurl "$P" -i http://meta.test/latest/ | eg_header x-runcell-deny-reason)" \
    "SSRF guard: cloud metadata address"
check_eq metadata_connect_403 "$(eg_connect_status "$P" http://meta.test/)" 403
check_eq private_reason "$(ecurl "$P" -i http://priv.test/ | eg_header x-runcell-deny-reason)" \
    "SSRF guard: private address"
check_eq loopback_reason "$(ecurl "$P" -i http://loop.test/ | eg_header x-runcell-deny-reason)" \
    "SSRF guard: loopback address"
check_eq own_address_reason "$(ecurl "$P" -i http://self.test/ | eg_header x-runcell-deny-reason)" \
    "SSRF guard: one of the broker host's own addresses"
check_eq subnets_deny_wins "$(ecurl "$P" -i http://denied.test/ | eg_header x-runcell-deny-reason)" \
    "address in subnets.deny"
if grep -q '"path": "/latest/' "$EG_T/upstream.log"; then
    t_fail metadata_never_reached "the metadata address received a request"
else
    t_ok metadata_never_reached
fi

# ---- strict request parsing ----
raw() { in_ct bash -c "exec 3<>/dev/tcp/127.0.0.1/$P; printf '$1' >&3; head -n 1 <&3 | tr -d '\r'"; }
check_eq origin_form_400 "$(raw 'GET /relative HTTP/1.1\r\nHost: plain.test\r\n\r\n')" \
    "HTTP/1.1 400 Bad Request"
check_eq dot_segment_400 "$(raw 'GET http://plain.test/a/../b HTTP/1.1\r\nHost: plain.test\r\n\r\n')" \
    "HTTP/1.1 400 Bad Request"
check_eq encoded_dot_400 "$(raw 'GET http://plain.test/a/%%2e%%2e/b HTTP/1.1\r\nHost: plain.test\r\n\r\n')" \
    "HTTP/1.1 400 Bad Request"
check_eq encoded_slash_400 "$(raw 'GET http://plain.test/a%%2fb HTTP/1.1\r\nHost: plain.test\r\n\r\n')" \
    "HTTP/1.1 400 Bad Request"
check_eq double_slash_400 "$(raw 'GET http://plain.test//b HTTP/1.1\r\nHost: plain.test\r\n\r\n')" \
    "HTTP/1.1 400 Bad Request"
check_eq host_mismatch_400 "$(raw 'GET http://plain.test/ HTTP/1.1\r\nHost: unlisted.test\r\n\r\n')" \
    "HTTP/1.1 400 Bad Request"
check_eq trace_405 "$(raw 'TRACE http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\n\r\n')" \
    "HTTP/1.1 405 Method Not Allowed"
check_eq https_absolute_400 "$(raw 'GET https://plain.test/ HTTP/1.1\r\nHost: plain.test\r\n\r\n')" \
    "HTTP/1.1 400 Bad Request"
check_eq bare_lf_400 "$(raw 'GET http://plain.test/ HTTP/1.1\nHost: plain.test\n\n')" \
    "HTTP/1.1 400 Bad Request"
check_eq smuggling_cl_te_400 \
    "$(raw 'POST http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n')" \
    "HTTP/1.1 400 Bad Request"
check_eq userinfo_400 "$(raw 'GET http://user@plain.test/ HTTP/1.1\r\nHost: plain.test\r\n\r\n')" \
    "HTTP/1.1 400 Bad Request"
check_eq numeric_host_400 "$(raw 'GET http://2130706433/ HTTP/1.1\r\nHost: 2130706433\r\n\r\n')" \
    "HTTP/1.1 400 Bad Request"
# raw_reason REQUEST: the deny reason the proxy gave (x-runcell-deny-reason).
raw_reason() {
    in_ct bash -c "exec 3<>/dev/tcp/127.0.0.1/$P; printf '$1' >&3; tr -d '\r' <&3" |
        sed -n 's/^x-runcell-deny-reason: //Ip' | head -n 1
}
check_eq no_host_http11_400 "$(raw_reason 'GET http://plain.test/ HTTP/1.1\r\n\r\n')" \
    "an HTTP/1.1 request needs a Host header"
check_eq no_host_http10_ok "$(raw 'GET http://plain.test/ HTTP/1.0\r\n\r\n')" \
    "HTTP/1.1 200 OK"
# A second request pipelined on the same connection is never forwarded.
before=$(wc -l <"$EG_T/upstream.log")
raw 'GET http://plain.test/one HTTP/1.1\r\nHost: plain.test\r\n\r\nGET http://plain.test/two HTTP/1.1\r\nHost: plain.test\r\n\r\n' >/dev/null
sleep 0.2
after=$(wc -l <"$EG_T/upstream.log")
check_eq pipelined_second_dropped \
    "$((after - before)):$(tail -n 1 "$EG_T/upstream.log" | grep -c '"/one"')" "1:1"

# ---- no network without the proxy ----
if in_ct curl -s --max-time 3 --noproxy '*' http://203.0.113.2/ >/dev/null 2>&1; then
    t_fail direct_connection_fails "reached the upstream without the proxy"
else
    t_ok direct_connection_fails
fi
if in_ct timeout 5 getent ahosts plain.test >/dev/null 2>&1; then
    t_fail dns_lookup_fails "a name resolved inside the container"
else
    t_ok dns_lookup_fails
fi

# ---- audit lines ----
sleep 0.2
check_eq audit_allow_decision "$(eg_audit "$AUDIT" plain.test decision)" '"allow"'
check_eq audit_session_id "$(eg_audit "$AUDIT" plain.test session_id)" '"sesn_egress_test"'
check_eq audit_meta_decision "$(eg_audit "$AUDIT" meta.test decision)" '"deny"'
check_eq audit_meta_reason "$(eg_audit "$AUDIT" meta.test reason)" \
    '"SSRF guard: cloud metadata address"'
check_eq audit_meta_addr "$(eg_audit "$AUDIT" meta.test addr)" '"169.254.169.254"'
check_eq audit_tunnel_kind "$(eg_audit "$AUDIT" tunnel.test kind)" '"connect"'
check_eq audit_tunnel_action "$(eg_audit "$AUDIT" tunnel.test action)" '"tunnel"'
line=$(eg_audit "$AUDIT" a.wild.test -)
check_contains audit_rule_pattern "$line" '"rule": "*.wild.test"'
check_contains audit_method_path "$line" '"method": "GET", "path": "/w"'
check_contains audit_status "$line" '"status": 200'
if python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["bytes_up"]>0 and r["bytes_down"]>0 and r["duration_ms"]>=0 else 1)' "$line"; then
    t_ok audit_bytes_and_duration
else
    t_fail audit_bytes_and_duration "$line"
fi
check_contains audit_path_without_query "$(cat "$AUDIT")" '"path":"/q",'
check_absent audit_no_query_values "$(cat "$AUDIT")" 'b=%20'

# ---- deny-all ----
echo '"deny-all"' >"$EG_T/deny.json"
eg_proxy deny "$EG_T/deny.json" || t_done
check_eq deny_all_plain "$(ecurl "$EG_PORT" -i http://plain.test/ | eg_header x-runcell-deny-reason)" \
    "policy is deny-all"
check_eq deny_all_connect "$(eg_connect_status "$EG_PORT" http://plain.test/)" 403

t_done

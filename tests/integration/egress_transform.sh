#!/usr/bin/env bash
# tests/integration/egress_transform.sh - credential brokering through the egress proxy (issue 6):
# the agent calls http://api.test/..., the proxy dials https://api.test/ with verified TLS and
# injects the policy's header, overwriting the placeholder the client sent; the client, the
# audit log and the proxy's own log never see the value. Requests outside the rule's scope get
# the policy's response rule; CONNECT to a domain with rules, upgrades, a certificate that does
# not match, and an untrusted upstream are refused. Invalid policies stop the proxy at start.
. "$(dirname "$0")/egress_lib.sh"

eg_require
eg_setup

SECRET='sk-ant-oat01-INJECTED-test-secret-0123456789'
cat >"$EG_T/policy.json" <<EOF
{"allow": {
  "api.test": [
    {"match": {"path": {"startsWith": "/v1/sessions/sesn_1/"},
               "headers": [{"key": {"exact": "Authorization"},
                            "value": {"exact": "Bearer _brokered_"}}]},
     "transform": [{"headers": {"Authorization": "Bearer $SECRET"}}]},
    {"match": {"path": {"exact": "/v1/public"}, "method": ["GET"]}, "transform": []},
    {"response": {"statusCode": 403, "contentType": "text/plain",
                  "body": "outside session scope\n", "headers": {"x-policy": "scope"}}}
  ],
  "mismatch.test": [{"transform": []}],
  "plain.test": []
}}
EOF
eg_proxy main "$EG_T/policy.json" --ca-file "$EG_T/pki/ca.pem" || t_done
P=$EG_PORT
AUDIT=$EG_T/main.audit
ULOG=$EG_T/upstream.log

upstream_header() { # NAME: the values the upstream saw for NAME in its last request
    tail -n 1 "$ULOG" | python3 -c 'import json,sys; n=sys.argv[1].lower(); print("|".join(v for k,v in json.load(sys.stdin)["headers"] if k.lower()==n))' "$1"
}

# ---- injection ----
OUT=$(ecurl "$P" -v -i -H 'Authorization: Bearer _brokered_' \
    http://api.test/v1/sessions/sesn_1/events?limit=5 2>&1)
check_contains transform_reaches_https_upstream "$OUT" "tls-ok /v1/sessions/sesn_1/events?limit=5"
check_eq transform_header_injected "$(upstream_header authorization)" "Bearer $SECRET"
check_absent client_never_sees_value "$OUT" "INJECTED"
check_eq upstream_saw_host "$(upstream_header host)" "api.test"
ecurl "$P" -H 'Authorization: Bearer _brokered_' -H 'authorization: Bearer other' \
    http://api.test/v1/sessions/sesn_1/x >/dev/null
check_eq transform_overwrites_every_copy "$(upstream_header authorization)" "Bearer $SECRET"
check_eq transform_post_body "$(ecurl "$P" -H 'Authorization: Bearer _brokered_' \
    -d '{"events":[]}' http://api.test/v1/sessions/sesn_1/events)" "tls-ok /v1/sessions/sesn_1/events"
check_contains transform_post_body_arrived "$(tail -n 1 "$ULOG")" '"body": "{\"events\":[]}"'

# ---- outside the rule's scope: the policy's response rule, upstream untouched ----
before=$(wc -l <"$ULOG")
OUT=$(ecurl "$P" -i http://api.test/v1/sessions/sesn_1/events)
check_contains no_placeholder_gets_response_rule "$OUT" "HTTP/1.1 403"
check_contains response_rule_body "$OUT" "outside session scope"
check_eq response_rule_header "$(eg_header x-policy <<<"$OUT")" "scope"
check_eq wrong_placeholder_case "$(eg_status "$P" -H 'Authorization: bearer _brokered_' \
    http://api.test/v1/sessions/sesn_1/events)" 403
check_eq other_session_refused "$(eg_status "$P" -H 'Authorization: Bearer _brokered_' \
    http://api.test/v1/sessions/sesn_2/events)" 403
check_eq prefix_not_a_segment_match "$(eg_status "$P" -H 'Authorization: Bearer _brokered_' \
    http://api.test/v1/sessions/sesn_1x/events)" 403
check_eq method_not_in_rule "$(eg_status "$P" -X DELETE http://api.test/v1/public)" 403
check_eq upstream_untouched_when_refused "$(wc -l <"$ULOG")" "$before"
check_eq empty_transform_forwards "$(ecurl "$P" -H 'Authorization: Bearer mine' \
    http://api.test/v1/public)" "tls-ok /v1/public"
check_eq empty_transform_keeps_client_header "$(upstream_header authorization)" "Bearer mine"

# ---- refused shapes ----
check_eq connect_to_rules_domain_403 "$(eg_connect_status "$P" https://api.test/)" 403
check_contains connect_to_rules_domain_reason "$(ecurl "$P" -p -v https://api.test/ 2>&1)" \
    "domain has request rules"
check_eq upgrade_refused "$(eg_status "$P" -H 'Authorization: Bearer _brokered_' \
    -H 'Connection: Upgrade' -H 'Upgrade: websocket' http://api.test/v1/sessions/sesn_1/ws)" 403
check_eq tls_name_mismatch_502 \
    "$(ecurl "$P" -i http://mismatch.test/ | eg_header x-runcell-deny-reason)" \
    "upstream TLS: certificate does not match the host name"
check_eq plain_domain_stays_plain "$(ecurl "$P" http://plain.test/x)" "plain-ok /x"

# ---- the audit and the proxy's own log ----
sleep 0.2
line=$(python3 - "$AUDIT" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("action") == "transform":
        print(l.strip()); break
PY
)
check_contains audit_transform_rule "$line" '"rule":"api.test#0"'
check_contains audit_injected_names "$line" '"injected":["authorization"]'
check_absent audit_never_holds_value "$(cat "$AUDIT")" "INJECTED"
check_absent proxy_log_never_holds_value "$(cat "$EG_T/main.err" "$EG_T/main.out")" "INJECTED"
check_contains audit_response_rule "$(cat "$AUDIT")" '"decision":"response"'
check_contains audit_response_rule_index "$(cat "$AUDIT")" '"rule":"api.test#2"'

# ---- an upstream the proxy does not trust ----
eg_proxy untrusted "$EG_T/policy.json" || t_done
check_eq untrusted_upstream_502 "$(ecurl "$EG_PORT" -i -H 'Authorization: Bearer _brokered_' \
    http://api.test/v1/sessions/sesn_1/events | eg_header x-runcell-deny-reason)" \
    "upstream TLS: certificate verification failed"
check_absent untrusted_got_no_secret "$(tail -n 1 "$ULOG")" "INJECTED"

# ---- policies the proxy refuses to start with ----
bad_policy() { # NAME JSON WANT
    printf '%s' "$2" >"$EG_T/$1.json"
    local err
    err=$("$EG_PROXY" --policy "$EG_T/$1.json" --listen 127.0.0.1:0 2>&1 >/dev/null)
    check_contains "$1" "$err" "$3"
}
bad_policy refuses_catch_all_with_injection \
    '{"allow":{"*":[],"x.test":[{"transform":[{"headers":{"a":"secret-value"}}]}]}}' \
    'catch-all cannot be combined with header injection'
bad_policy refuses_plain_forward_url '{"allow":{"x.test":[{"forwardURL":"http://p.test/"}]}}' \
    '$.allow["x.test"][0].forwardURL: a forward URL must start with https://'
bad_policy refuses_forward_url_without_key \
    '{"allow":{"x.test":[{"forwardURL":"https://p.test/"}]}}' 'no forward key is configured'
bad_policy refuses_unknown_member '{"allow":["x.test"],"subnet":{}}' 'unknown member "subnet"'
bad_policy refusal_hides_value \
    '{"allow":{"x.test":[{"transform":[{"headers":{"a b":"sk-ant-hidden-0000"}}]}]}}' \
    'not a valid header name'
check_absent refusal_never_prints_value \
    "$("$EG_PROXY" --policy "$EG_T/refusal_hides_value.json" 2>&1)" "sk-ant-hidden"

t_done

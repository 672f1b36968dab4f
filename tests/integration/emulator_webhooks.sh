#!/usr/bin/env bash
# tests/integration/emulator_webhooks.sh - runcell-emulator's webhook delivery (protocol.md 18.2,
# 18.5, 18.7, 18.9): a signed session.status_run_started envelope on every transition to running,
# Standard Webhooks signature checked independently (node:crypto), retries on non-2xx with a
# stable webhook-id, drop after 3 attempts, the webhook_duplicates fault, and a 3xx disabling
# the endpoint. A small node HTTP server is the receiver; its answers are scripted per request.
. "$(dirname "$0")/emulator_lib.sh"

command -v node >/dev/null 2>&1 || {
    t_skip all "node not installed (the webhook receiver is a node script)"
    exit 0
}

cat >"$EM_DIR/recv.js" <<'EOF'
// Receiver: logs each delivery as a JSON line; answers with the next status queued in
// $DIR/statuses (one per line, consumed), else 200.
const http = require('http'), fs = require('fs'), dir = process.argv[2];
http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    let status = 200;
    try {
      const lines = fs.readFileSync(dir + '/statuses', 'utf8').split('\n').filter(Boolean);
      if (lines.length) { status = +lines.shift(); fs.writeFileSync(dir + '/statuses', lines.join('\n') + '\n'); }
    } catch (e) {}
    fs.appendFileSync(dir + '/deliveries', JSON.stringify({
      id: req.headers['webhook-id'], ts: req.headers['webhook-timestamp'],
      sig: req.headers['webhook-signature'], ct: req.headers['content-type'],
      method: req.method, body, status, at: Date.now() }) + '\n');
    res.writeHead(status, status >= 300 && status < 400 ? { location: 'http://127.0.0.1:1/' } : {});
    res.end('ok');
  });
}).listen(0, '127.0.0.1', function () { fs.writeFileSync(dir + '/port', String(this.address().port)); });
EOF
cat >"$EM_DIR/verify.js" <<'EOF'
// verify.js KEY < delivery-json-line: exit 0 when the signature is valid Standard Webhooks.
const crypto = require('crypto');
const d = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const key = Buffer.from(process.argv[2].replace(/^whsec_/, ''), 'base64');
const mac = crypto.createHmac('sha256', key).update(`${d.id}.${d.ts}.${d.body}`).digest('base64');
const ok = d.sig.split(' ').some((s) => s === 'v1,' + mac);
process.exit(ok && Math.abs(Date.now() / 1000 - +d.ts) < 30 ? 0 : 1);
EOF
node "$EM_DIR/recv.js" "$EM_DIR" &
BG_PIDS+=($!)
for _ in $(seq 100); do [ -s "$EM_DIR/port" ] && break; sleep 0.05; done
PORT=$(cat "$EM_DIR/port")
: >"$EM_DIR/deliveries"

em_start --webhook-url "http://127.0.0.1:$PORT/webhook" --webhook-backoff-ms 200,300

deliveries() { wc -l <"$EM_DIR/deliveries"; }
wait_deliveries() {
    local end=$((SECONDS + ${2:-5}))
    while [ $SECONDS -le $end ]; do
        [ "$(deliveries)" -ge "$1" ] && return 0
        sleep 0.05
    done
    return 1
}
line() { sed -n "${1}p" "$EM_DIR/deliveries"; }

mk_env ENV hooks
mk_agent AGENT
mk_session SID "$AGENT" "$ENV"

# ---- one transition to running, one signed delivery ----
api POST "/v1/sessions/$SID/events" '{"events":[{"type":"user.message","content":[{"type":"text","text":"hello"}]}]}'
check delivered_on_run_start wait_deliveries 1
d=$(line 1)
check delivery_is_post_json test "$(jq -r '.method+" "+.ct' <<<"$d")" = "POST application/json"
check envelope_shape test "$(jq -r '.body|fromjson|[.type,.data.type,.data.id,(.id|startswith("whe_")),(.created_at!=null),(.data.organization_id|length>0),(.data.workspace_id|length>0)]|@csv' <<<"$d")" = "\"event\",\"session.status_run_started\",\"$SID\",true,true,true,true"
check webhook_id_is_envelope_id test "$(jq -r '.id' <<<"$d")" = "$(jq -r '.body|fromjson|.id' <<<"$d")"
check signature_valid bash -c "node '$EM_DIR/verify.js' '$WH_KEY' <<<'$d'"
tampered=$(jq -c '.body |= sub("hello|session"; "tampered")' <<<"$d")
check tampered_body_fails_signature bash -c "! node '$EM_DIR/verify.js' '$WH_KEY' <<<'$tampered'"

# ---- every transition to running (18.6.2): the default agent's call and its result ----
: >"$EM_DIR/deliveries"
mk_env E2 hooks2
mk_key ek2 "$E2"
mk_session S2 "$AGENT" "$E2"
api POST "/v1/sessions/$S2/events" '{"events":[{"type":"user.message","content":[{"type":"text","text":"run echo hi"}]}]}'
wait_deliveries 1
sleep 0.2
api GET "/v1/sessions/$S2/events?types%5B%5D=agent.tool_use"
CALL=$(jb '.data[0].id')
req ek2 POST "/v1/sessions/$S2/events" "{\"events\":[{\"type\":\"user.tool_result\",\"tool_use_id\":\"$CALL\",\"is_error\":false,\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}"
check run_started_again_after_results wait_deliveries 2
check distinct_ids_per_transition test "$(jq -r .id "$EM_DIR/deliveries" | sort -u | wc -l)" = 2

# ---- retries: 500, 500, then 200; webhook-id stable ----
: >"$EM_DIR/deliveries"
printf '500\n500\n' >"$EM_DIR/statuses"
mk_session S3 "$AGENT" "$ENV" '"initial_events":[{"type":"user.message","content":"x"}]'
check retried_until_2xx wait_deliveries 3 5
check retry_statuses test "$(jq -r .status "$EM_DIR/deliveries" | paste -sd, -)" = "500,500,200"
check retry_same_webhook_id test "$(jq -r .id "$EM_DIR/deliveries" | sort -u | wc -l)" = 1
gap=$(($(jq -r .at <<<"$(line 2)") - $(jq -r .at <<<"$(line 1)")))
check retry_backoff_applied test "$gap" -ge 150
check retry_signature_valid bash -c "node '$EM_DIR/verify.js' '$WH_KEY' <<<'$(line 3)'"

# ---- three failures: dropped ----
: >"$EM_DIR/deliveries"
printf '503\n503\n503\n' >"$EM_DIR/statuses"
admin GET /stats
failed_before=$(jb .webhooks.failed)
mk_session S4 "$AGENT" "$ENV" '"initial_events":[{"type":"user.message","content":"x"}]'
wait_deliveries 3 5
sleep 0.8
check at_most_3_attempts test "$(deliveries)" = 3
admin GET /stats
check stats_count_failure test "$(jb .webhooks.failed)" = $((failed_before + 1))
check stats_response_codes test "$(jb '[.webhooks.responses["500"],.webhooks.responses["503"]]|@csv')" = 2,3

# ---- webhook_duplicates ----
: >"$EM_DIR/deliveries"
admin POST /faults '{"webhook_duplicates":2}'
mk_session S5 "$AGENT" "$ENV" '"initial_events":[{"type":"user.message","content":"x"}]'
check duplicates_delivered wait_deliveries 2
sleep 0.2
check duplicates_same_id test "$(deliveries) $(jq -r .id "$EM_DIR/deliveries" | sort -u | wc -l)" = "2 1"
admin POST /faults '{}'

# ---- a 3xx disables the endpoint; redirects are not followed ----
: >"$EM_DIR/deliveries"
printf '302\n' >"$EM_DIR/statuses"
mk_session S6 "$AGENT" "$ENV" '"initial_events":[{"type":"user.message","content":"x"}]'
wait_deliveries 1
mk_session S7 "$AGENT" "$ENV" '"initial_events":[{"type":"user.message","content":"x"}]'
sleep 0.8
check redirect_not_followed_no_retry test "$(deliveries)" = 1
admin GET /stats
check endpoint_disabled test "$(jb .webhooks.disabled)" = true
check webhook_secret_not_logged bash -c "! grep -qF '${WH_KEY#whsec_}' '$EM_DIR/log'"
t_done

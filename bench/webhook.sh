#!/usr/bin/env bash
# bench/webhook.sh - the webhook path through nginx and runcell-fcgi, with wrk: requests/s and
# latency for deliveries with a wrong signature (401), for valid deliveries that find no work
# (verify + dedupe + one empty poll of the emulator: 200 "drained"), and for deliveries that
# claim one item (poll, ack, hand-off to the launcher, poll again). Anchor: the same nginx
# answering a static 200 (`location = /static { return 200 ...; }`), in the same run.
#
# World: runcell-emulator (no webhook URL: nothing but this benchmark delivers), nginx (1 worker,
# as nobody) -> runcell-fcgi (as nobody, 4 threads) -> the launcher's TEST DOUBLE
# (tests/tools/fake_launcher, answering `accepted`, no container: claims are measured, not
# container starts; bench/cold_start.sh measures those). Valid deliveries carry a distinct
# webhook-id each (signed beforehand in python3, HMAC-SHA256 as Standard Webhooks and
# runcell-webhook do), so none is answered as a duplicate.
#
# Runs: wrk -t1 -c4 for throughput and wrk -t1 -c1 for latency (no queueing), each for 5 s
# (BENCH_QUICK: 3 s) per kind. Claiming deliveries cannot be repeated by wrk (each needs a queued
# item), so they are timed one by one with curl after queueing one session each (n = 100,
# BENCH_QUICK 30), next to curl of the static location, alternating.
#
# Profile: during the 4-connection runs, `perf stat -e task-clock` on runcell-fcgi, the nginx
# worker and the emulator gives the CPU each spends per request.
#
# Target (DESIGN.md section 5): webhook response (verify + empty drain) p50 <= 1 ms.
#
# Environment: BUILD, BENCH_OUT, BENCH_SCALE (duration and counts x scale), BENCH_KEEP
# (bench/lib.sh); BENCH_QUICK=1.
set -u
BN_NAME=webhook
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=bench/chain_lib.sh
. bench/chain_lib.sh

FAKE_LAUNCHER=${FAKE_LAUNCHER:-$BUILD/tests/tools/fake_launcher}
if [ -n "${BENCH_QUICK:-}" ]; then DUR=$((3 * BENCH_SCALE)) NCLAIM=$((30 * BENCH_SCALE)); else DUR=$((5 * BENCH_SCALE)) NCLAIM=$((100 * BENCH_SCALE)); fi
NSIGNED=$((40000 * DUR))
FAKE_PID=

skip_all() {
    bn_skip "webhook path" "$1"
    bn_table
    exit 0
}

# A session.status_run_started envelope for a session id (runcell-fcgi drains its environment).
envelope_body() {
    printf '{"type":"event","id":"whe_bench","created_at":"2026-05-01T12:00:00Z","data":{"type":"session.status_run_started","id":"%s","organization_id":"org","workspace_id":"ws"}}' "$1"
}

# sign_many FILE COUNT PREFIX: FILE = the body line, then COUNT "ID TS SIG" lines. The signing
# key goes to python through its environment, not argv.
sign_many() {
    envelope_body sesn_bench >"$1"
    echo >>"$1"
    ANTHROPIC_WEBHOOK_SIGNING_KEY=$WH_KEY python3 - "$1" "$2" "$3" <<'EOF'
import base64, hashlib, hmac, os, sys, time
path, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
key = os.environ["ANTHROPIC_WEBHOOK_SIGNING_KEY"]
key = base64.b64decode(key[len("whsec_"):] if key.startswith("whsec_") else key)
with open(path) as f:
    body = f.readline().rstrip("\n")
ts = str(int(time.time()))
with open(path, "a") as f:
    for i in range(count):
        wid = "%s%d" % (prefix, i)
        mac = hmac.new(key, ("%s.%s.%s" % (wid, ts, body)).encode(), hashlib.sha256).digest()
        f.write("%s %s v1,%s\n" % (wid, ts, base64.b64encode(mac).decode()))
EOF
}

# wrk_run NAME CONNS URL MODE [FILE]: WRK_<field> from its RESULT line (read by the callers).
# shellcheck disable=SC2034
wrk_run() {
    local name=$1 c=$2 url=$3
    shift 3
    wrk -t1 -c"$c" -d"${DUR}s" --latency -s bench/webhook_wrk.lua "$url" -- "$@" \
        >"$BN_DIR/wrk.$name.out" 2>&1
    read -r _ WRK_N WRK_S WRK_P50 WRK_P95 _ WRK_ERR WRK_WRAP WRK_ST < <(grep '^RESULT' "$BN_DIR/wrk.$name.out")
    WRK_RPS=$(awk -v n="${WRK_N:-0}" -v s="${WRK_S:-0}" 'BEGIN { if (s > 0) printf "%.0f\n", n / s; else print "-" }')
    bn_log "wrk $name: ${WRK_RPS:-?} req/s, p50 ${WRK_P50:-?} ms, statuses${WRK_ST:+ $WRK_ST}, errors ${WRK_ERR:-?}, wrapped ${WRK_WRAP:-?}"
}

# cpu_during NAME SECONDS: task-clock (ms) of runcell-fcgi, the nginx worker and the emulator over
# the next SECONDS (perf stat, in the background); read back with cpu_per_req.
cpu_during() {
    local who pid
    command -v perf >/dev/null 2>&1 || return 0
    for who in fcgi nginx emulator; do
        case $who in
        fcgi) pid=$FCGI_PID ;;
        nginx) pid=$(pgrep -P "$NGINX_PID" | head -n 1) ;;
        emulator) pid=$EM_PID ;;
        esac
        [ -n "$pid" ] || continue
        perf stat -e task-clock -x, -p "$pid" -o "$BN_DIR/perf.$1.$who" -- sleep "$2" >/dev/null 2>&1 &
        CPU_PIDS+=($!)
    done
}
CPU_PIDS=()
# cpu_wait: until the perf stat runs have written their counts.
cpu_wait() {
    local p
    for p in "${CPU_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    CPU_PIDS=()
}
# cpu_per_req NAME REQUESTS: "fcgi X, nginx Y, emulator Z" in microseconds of CPU per request.
cpu_per_req() {
    local who ms out=
    for who in fcgi nginx emulator; do
        ms=$(awk -F, '$3 == "task-clock" { print $1 }' "$BN_DIR/perf.$1.$who" 2>/dev/null)
        case $ms in '' | *[!0-9.]*) continue ;; esac
        out+="${out:+, }$who $(awk -v m="$ms" -v n="$2" 'BEGIN { if (n > 0) printf "%.0f", m * 1000 / n }') us"
    done
    echo "${out:--}"
}

# signed_delivery FILE LINE: curl of the pre-signed delivery on LINE of FILE (each line once);
# prints "time_total_ms status".
signed_delivery() {
    local id ts sig
    read -r id ts sig < <(sed -n "${2}p" "$1")
    curl -sS -m 30 -o "$BN_DIR/claim.answer" -w '%{time_total} %{http_code}\n' \
        -H 'content-type: application/json' -H "webhook-id: $id" -H "webhook-timestamp: $ts" \
        -H "webhook-signature: $sig" --data-binary "@$BN_DIR/claim.body" "$NGX/webhook" |
        awk '{ printf "%.3f %s\n", $1 * 1000, $2 }'
}

queue_one() {
    api POST /v1/sessions "$(jq -cn --arg a "$AGENT" --arg e "$ENV" '{agent: $a, environment_id: $e}')"
    [ "$ST" = 200 ]
}

measure_claims() {
    local i r r2 st line=1
    envelope_body sesn_bench >"$BN_DIR/claim.body"
    for ((i = 0; i < NCLAIM + 2; i++)); do
        queue_one || { bn_log "session create failed: $ST"; return 1; }
        line=$((line + 1))
        read -r r st < <(signed_delivery "$BN_DIR/claim.signed" "$line")
        if [ "$st" != 200 ] || [ "$(jq -r .handed_off "$BN_DIR/claim.answer" 2>/dev/null)" != 1 ]; then
            bn_log "claiming delivery: status $st, answer $(head -c 200 "$BN_DIR/claim.answer")"
            return 1
        fi
        r2=$(curl -sS -o /dev/null -w '%{time_total}\n' "$NGX/static" | awk '{ printf "%.3f\n", $1 * 1000 }')
        [ "$i" -lt 2 ] && continue
        echo "$r" >>"$BN_DIR/claim.ms"
        echo "$r2" >>"$BN_DIR/static_curl.ms"
    done
    # Same curl, deliveries that find nothing, for comparison with the claims.
    for ((i = 0; i < NCLAIM; i++)); do
        line=$((line + 1))
        read -r r st < <(signed_delivery "$BN_DIR/claim.signed" "$line")
        [ "$st" = 200 ] && echo "$r" >>"$BN_DIR/nowork_curl.ms"
    done
}

row_wrk() { # FIGURE RUNCELL ANCHOR UNIT TARGET MET
    bn_row "$1" "$(bn_unit "$2" "$4")" "$(bn_unit "$3" "$4") (nginx static 200)" "$(bn_ratio "$2" "$3")" "$5" "$6"
}

# ---- main -------------------------------------------------------------------------------------

why=$(bc_why_not)
[ -z "$why" ] || skip_all "$why"
command -v wrk >/dev/null || skip_all "wrk not installed"
[ -x "$FAKE_LAUNCHER" ] || skip_all "$FAKE_LAUNCHER not built"
port=$(free_port)
em_start >&2
mk_env ENV bench-webhook
mk_key ek "$ENV"
api POST /v1/agents '{"name":"bench-webhook","model":"claude-sonnet-4-6","tools":[{"type":"agent_toolset_20260401"}]}'
AGENT=$(jb .id)
fcgi_env "$ENV"
rm -f "$L_SOCK"
"${AS_USER[@]}" "$FAKE_LAUNCHER" --socket "$L_SOCK" --capacity 1000000 >"$F_DIR/fake_launcher.out" 2>&1 &
FAKE_PID=$!
bn_track "$FAKE_PID"
wait_for 5 test -S "$L_SOCK" || skip_all "fake launcher did not start: $(tail -n 3 "$F_DIR/fake_launcher.out")"
BC_ACCESS_LOG=off
fcgi_start >&2
nginx_start "$port"
bn_log "signing $NSIGNED deliveries"
sign_many "$BN_DIR/signed" "$NSIGNED" "msg_wrk_"
sign_many "$BN_DIR/claim.signed" "$((3 * NCLAIM + 10))" "msg_curl_"

status=0
for c in 4 1; do
    [ "$c" = 4 ] && cpu_during static "$DUR"
    wrk_run "static.c$c" "$c" "$NGX/static" static
    eval "ST_RPS_$c=\$WRK_RPS ST_P50_$c=\$WRK_P50 ST_P95_$c=\$WRK_P95"
    [ "$c" = 4 ] && { cpu_wait; ST_CPU=$(cpu_per_req static "$WRK_N"); }
    [ "$c" = 4 ] && cpu_during bad "$DUR"
    wrk_run "bad.c$c" "$c" "$NGX/webhook" bad "$BN_DIR/signed"
    eval "BAD_RPS_$c=\$WRK_RPS BAD_P50_$c=\$WRK_P50 BAD_P95_$c=\$WRK_P95 BAD_ST_$c=\$WRK_ST"
    [ "$c" = 4 ] && { cpu_wait; BAD_CPU=$(cpu_per_req bad "$WRK_N"); }
    [ "$c" = 4 ] && cpu_during nowork "$DUR"
    wrk_run "nowork.c$c" "$c" "$NGX/webhook" signed "$BN_DIR/signed"
    eval "NW_RPS_$c=\$WRK_RPS NW_P50_$c=\$WRK_P50 NW_P95_$c=\$WRK_P95 NW_ST_$c=\$WRK_ST NW_WRAP_$c=\$WRK_WRAP"
    [ "$c" = 4 ] && { cpu_wait; NW_CPU=$(cpu_per_req nowork "$WRK_N"); }
    # Later runs need ids never sent: re-sign with another prefix.
    sign_many "$BN_DIR/signed" "$NSIGNED" "msg_wrk${c}_"
done
bn_log "claiming deliveries: $NCLAIM, one at a time (curl)"
measure_claims || status=1

# shellcheck disable=SC2154 # set by eval above
{
    row_wrk "webhook, wrong signature (401): requests/s, 4 connections" "$BAD_RPS_4" "$ST_RPS_4" req/s - -
    row_wrk "webhook, wrong signature: latency p50 / p95, 1 connection" "$BAD_P50_1 / $BAD_P95_1" \
        "$ST_P50_1 / $ST_P95_1" ms - -
    row_wrk "webhook, valid, no work (verify + empty drain): requests/s, 4 connections" "$NW_RPS_4" "$ST_RPS_4" req/s - -
    bn_row "webhook, valid, no work: latency p50, 1 connection" "$(bn_unit "$NW_P50_1" ms)" \
        "$(bn_unit "$ST_P50_1" ms) (nginx static 200)" "$(bn_ratio "$NW_P50_1" "$ST_P50_1")" "p50 <= 1 ms" \
        "$(bn_yesno bn_le "$NW_P50_1" 1)"
    row_wrk "webhook, valid, no work: latency p95, 1 connection" "$NW_P95_1" "$ST_P95_1" ms - -
    bn_row "  CPU per request (perf stat task-clock, 4 connections): wrong signature" "$BAD_CPU" "$ST_CPU (static)" - - -
    bn_row "  CPU per request: valid, no work" "$NW_CPU" "$ST_CPU (static)" - - -
    row_wrk "webhook, valid, no work: latency p50 / p95, 4 connections" "$NW_P50_4 / $NW_P95_4" \
        "$ST_P50_4 / $ST_P95_4" ms - -
    cl=$(bn_stats "$BN_DIR/claim.ms" 2>/dev/null || echo "0 - - -")
    sc=$(bn_stats "$BN_DIR/static_curl.ms" 2>/dev/null || echo "0 - - -")
    nc=$(bn_stats "$BN_DIR/nowork_curl.ms" 2>/dev/null || echo "0 - - -")
    bn_row "webhook, claims 1 item (poll, ack, hand-off, poll): curl p50 (n=$(bn_field "$cl" 1))" \
        "$(bn_unit "$(bn_field "$cl" 2)" ms)" "$(bn_unit "$(bn_field "$sc" 2)" ms) (static 200, curl)" \
        "$(bn_ratio "$(bn_field "$cl" 2)" "$(bn_field "$sc" 2)")" - -
    bn_row "webhook, claims 1 item: curl p95" "$(bn_unit "$(bn_field "$cl" 3)" ms)" \
        "$(bn_unit "$(bn_field "$sc" 3)" ms) (static, curl)" "$(bn_ratio "$(bn_field "$cl" 3)" "$(bn_field "$sc" 3)")" - -
    bn_row "webhook, valid, no work: curl p50 (same client as the claims)" "$(bn_unit "$(bn_field "$nc" 2)" ms)" \
        "$(bn_unit "$(bn_field "$sc" 2)" ms) (static, curl)" "$(bn_ratio "$(bn_field "$nc" 2)" "$(bn_field "$sc" 2)")" - -
}
for c in 4 1; do
    v="NW_WRAP_$c"
    [ "${!v:-0}" = 0 ] || bn_row "note: valid deliveries ran out at $c connections (some answered as duplicates)" - - - - -
done
bn_log "statuses: bad $BAD_ST_4, no work $NW_ST_4"
bn_table
exit $status

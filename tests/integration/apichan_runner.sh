#!/usr/bin/env bash
# tests/integration/apichan_runner.sh [SCENARIO...] - the real runcell-runner plays scenarios
# against runcell-emulator with no credential at all: it talks only to the broker's API channel
# (RUNCELL_API_SOCKET), which holds the work item's token. For every work item the session
# queues, the harness claims it like the control plane (poll + ack with the environment key),
# starts a channel with the item's secret (environment only), then a runner without any
# ANTHROPIC_WORK_SECRET / ANTHROPIC_ENVIRONMENT_KEY. Checks per scenario: the verdict passes,
# the runner exits cleanly (3 = lease lost, expected in the 412 scenario), the channel refused
# nothing the runner asked for (no "deny" audit line: the path scope fits the real client), every
# request of the runner reached the emulator as the session token, and the token appears in no
# runner log.
. "$(dirname "$0")/runner_lib.sh"

APICHAN=${APICHAN:-$BUILD/tests/tools/apichan}
rl_require
if [ ! -x "$APICHAN" ]; then
    t_skip all "$APICHAN not built"
    exit 0
fi
rl_start --scenarios tests/scenarios
MANIFEST=$RL_DIR/tools.json
rl_write_manifest "$MANIFEST"
CH_PID=

ch_stop() {
    [ -n "$CH_PID" ] && kill "$CH_PID" 2>/dev/null && wait "$CH_PID" 2>/dev/null
    CH_PID=
}
trap 'ch_stop; rl_cleanup' EXIT

# ch_start DIR: a channel for the claimed item (RL_ENV/RL_WID/RL_SID) at DIR/api.sock.
ch_start() {
    local dir=$1
    mkdir -p "$dir"
    rm -f "$dir/api.sock"
    (
        read -r ANTHROPIC_WORK_SECRET <"$RL_DIR/secret"
        export ANTHROPIC_WORK_SECRET
        exec "$APICHAN" --socket "$dir/api.sock" --allowed-uid "$(id -u)" --base-url "$RL_B" \
            --environment-id "$RL_ENV" --work-id "$RL_WID" --session-id "$RL_SID" \
            --audit-file "$dir/audit"
    ) >"$dir/channel.out" 2>>"$dir/channel.log" &
    CH_PID=$!
    for _ in $(seq 100); do
        grep -q '^ready' "$dir/channel.out" 2>/dev/null && return 0
        kill -0 "$CH_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# runner_start WORKDIR LOG SOCK: the runner in container mode, no credential in its environment.
runner_start() {
    mkdir -p "$1"
    (
        unset ANTHROPIC_WORK_SECRET ANTHROPIC_ENVIRONMENT_KEY ANTHROPIC_BASE_URL
        export ANTHROPIC_ENVIRONMENT_ID=$RL_ENV ANTHROPIC_WORK_ID=$RL_WID \
            ANTHROPIC_SESSION_ID=$RL_SID RUNCELL_API_SOCKET=$3 RUNCELL_WORKDIR=$1 \
            RUNCELL_MAX_IDLE_MS=${RL_MAX_IDLE_MS:-2000} RUNCELL_TOOLS_MANIFEST=$MANIFEST
        exec "$RL_RUNNER"
    ) >"$2" 2>&1 &
    RL_RUNNER_PID=$!
}

play() {
    local file=$1 dir=$2 deadline n=0 tokens=()
    deadline=$((SECONDS + $(rl_scenario_timeout "$file")))
    RL_RUNS=
    RL_VERDICT=running
    while [ $SECONDS -lt $deadline ]; do
        if [ -z "$RL_RUNNER_PID" ] && rl_claim; then
            n=$((n + 1))
            tokens+=("$(tr '_-' '/+' <"$RL_DIR/secret" | awk '{ while (length($0) % 4) $0 = $0 "="; print }' |
                base64 -d 2>/dev/null | jq -r .sessions_token)")
            if ! ch_start "$dir/ch.$n"; then
                t_fail "$(basename "$file" .json).channel_start" "$(cat "$dir/ch.$n/channel.log")"
                return
            fi
            runner_start "$dir/workdir" "$dir/runner.$n.log" "$dir/ch.$n/api.sock"
        fi
        rl_verdict
        [ "$RL_VERDICT" = passed ] || [ "$RL_VERDICT" = failed ] && break
        if [ -n "$RL_RUNNER_PID" ] && ! kill -0 "$RL_RUNNER_PID" 2>/dev/null; then
            rl_runner_wait 1
            RL_RUNS="$RL_RUNS $RL_RUNNER_RC"
            ch_stop
        fi
        sleep 0.2
    done
    if [ -n "$RL_RUNNER_PID" ]; then
        kill -TERM "$RL_RUNNER_PID" 2>/dev/null
        rl_runner_wait 35
        RL_RUNS="$RL_RUNS $RL_RUNNER_RC"
    fi
    ch_stop
    printf '%s\n' "${tokens[@]}" >"$dir/tokens"
}

run_one() {
    local name=$1 file=tests/scenarios/$1.json dir=$RL_DIR/$1 seq0
    if ! rl_setup "$name" "$file"; then
        t_fail "$name" "setup failed (HTTP $RL_ST): $(head -c 200 "$RL_DIR/body")"
        return
    fi
    rl_req api GET "/_emulator/v1/requests?since=999999999"
    seq0=$(rl_jb .last_seq)
    mkdir -p "$dir"
    play "$file" "$dir"
    if [ "$RL_VERDICT" = passed ]; then
        t_ok "$name"
    else
        t_fail "$name" "verdict $RL_VERDICT (session $RL_SID, runs:$RL_RUNS)"
        tail -n 5 "$dir"/runner.*.log 2>/dev/null | sed 's/^/#     /'
    fi
    case " $RL_RUNS " in
    *" 1 "* | *" 2 "* | *" 124 "*) t_fail "$name.runner_exit" "runner exit statuses:$RL_RUNS" ;;
    *) t_ok "$name.runner_exit" ;;
    esac
    if cat "$dir"/ch.*/audit 2>/dev/null | grep -q '"decision":"deny"'; then
        t_fail "$name.nothing_refused" "$(cat "$dir"/ch.*/audit | grep '"decision":"deny"' | head -n 3)"
    else
        t_ok "$name.nothing_refused"
    fi
    rl_req api GET "/_emulator/v1/requests?since=$seq0"
    local bad total
    total=$(jq '[.data[] | select(.header_values["user-agent"] // "" | startswith("runcell"))] | length' "$RL_DIR/body")
    # Injected faults (429, 5xx) answer before authentication and log no credential.
    bad=$(jq '[.data[] | select(.header_values["user-agent"] // "" | startswith("runcell"))
               | select(.credential != "session_token" and .status != 429 and .status < 500)]
              | length' "$RL_DIR/body")
    if [ "$total" -gt 0 ] && [ "$bad" = 0 ]; then
        t_ok "$name.upstream_session_token"
    else
        t_fail "$name.upstream_session_token" "$total runner requests, $bad not as the session token"
    fi
    local leaked=0 tok
    while IFS= read -r tok; do
        [ -n "$tok" ] && [ "$tok" != null ] && grep -qF -- "$tok" "$dir"/runner.*.log && leaked=1
    done <"$dir/tokens"
    if [ $leaked = 0 ]; then t_ok "$name.token_not_in_runner_log"; else t_fail "$name.token_not_in_runner_log"; fi
}

if [ $# -gt 0 ]; then
    names=("$@")
else
    names=(bash-echo two-turns-quick permission-ask-allow fault-heartbeat-412)
fi
for name in "${names[@]}"; do
    if [ -f "tests/scenarios/$name.json" ]; then
        run_one "$name"
    else
        t_skip "$name" "no such scenario"
    fi
done
t_done

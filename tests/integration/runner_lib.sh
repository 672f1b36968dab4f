# tests/integration/runner_lib.sh - helpers for the runner_*.sh integration tests: a private
# runcell-emulator, the control plane's part done with curl (poll and ack with the environment
# key), and runcell-runner started per claimed item with ANTHROPIC_WORK_SECRET, exactly as a
# launcher would hand an item over (protocol 14.7). Credentials reach curl through header files
# and the runner through its environment (exported in a subshell), never through argv.
#
# Sourced, not run: tests/run.sh also executes every tests/integration/*.sh, so running this
# file directly only reports itself as skipped (a program with no result line counts as failed).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "ok - runner_lib # SKIP helpers sourced by runner_*.sh, not a test"
    exit 0
fi

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. tests/lib.sh

BUILD=${BUILD:-build}
RL_EMU=${EMULATOR:-$BUILD/runcell-emulator}
RL_RUNNER=${RUNNER:-$BUILD/runcell-runner}
RL_BETA=managed-agents-2026-04-01
RL_DIR=$(mktemp -d /tmp/rc-runner-test.XXXXXX)
RL_EMU_PID=
RL_RUNNER_PID=

rl_cleanup() {
    [ -n "$RL_RUNNER_PID" ] && kill -9 "$RL_RUNNER_PID" 2>/dev/null
    [ -n "$RL_EMU_PID" ] && kill "$RL_EMU_PID" 2>/dev/null && wait "$RL_EMU_PID" 2>/dev/null
    if [ -n "${RL_KEEP:-}" ]; then echo "# logs kept in $RL_DIR" >&2; else rm -rf "$RL_DIR"; fi
}
trap rl_cleanup EXIT

rl_require() {
    local tool bin
    for tool in curl jq; do
        command -v "$tool" >/dev/null 2>&1 || {
            t_skip all "$tool not installed"
            exit 0
        }
    done
    for bin in "$RL_EMU" "$RL_RUNNER"; do
        [ -x "$bin" ] || {
            t_skip all "$bin not built"
            exit 0
        }
    done
}

# rl_start [EMULATOR-ARGS...]: start the emulator; sets RL_B (base URL) and the api credential.
rl_start() {
    rl_require
    "$RL_EMU" --listen 127.0.0.1:0 "$@" >"$RL_DIR/emu.out" 2>"$RL_DIR/emu.log" &
    RL_EMU_PID=$!
    for _ in $(seq 200); do
        grep -q '^ANTHROPIC_API_KEY=' "$RL_DIR/emu.out" 2>/dev/null && break
        kill -0 "$RL_EMU_PID" 2>/dev/null || break
        sleep 0.05
    done
    RL_B=$(sed -n 's/^ANTHROPIC_BASE_URL=//p' "$RL_DIR/emu.out" | tr -d "'\"")
    local key
    key=$(sed -n 's/^ANTHROPIC_API_KEY=//p' "$RL_DIR/emu.out" | tr -d "'\"")
    if [ -z "$RL_B" ] || [ -z "$key" ]; then
        t_fail emulator_start "emulator did not start: $(tail -n 5 "$RL_DIR/emu.log")"
        exit 1
    fi
    RL_B=${RL_B%/}
    rl_cred api "x-api-key: $key"
}

# rl_cred NAME HEADER-LINE (printf is a builtin: the value never reaches an argv).
rl_cred() {
    (umask 077 && printf '%s\n' "$2" >"$RL_DIR/cred.$1")
}

# rl_req CRED METHOD PATH [BODY]: RL_ST = status, body in $RL_DIR/body.
rl_req() {
    local cred=$1 method=$2 path=$3 body=${4-}
    local args=(-sS -m 20 -o "$RL_DIR/body" -w '%{http_code}' -X "$method" -H "@$RL_DIR/cred.$cred"
        -H "anthropic-beta: $RL_BETA" -H "anthropic-version: 2023-06-01")
    [ -n "$body" ] && args+=(-H "content-type: application/json" --data-binary "$body")
    RL_ST=$(curl "${args[@]}" "$RL_B$path" 2>"$RL_DIR/curl.err") || RL_ST=000
}
rl_jb() { jq -r "$1" "$RL_DIR/body" 2>/dev/null; }

# rl_setup NAME [SCENARIO-FILE]: environment + key + faults + agent + session playing NAME.
# Sets RL_ENV, RL_SID; the environment key is in the credential file "envkey".
rl_setup() {
    local name=$1 file=${2:-tests/scenarios/$1.json} faults tools agent
    faults=${file%.json}.faults.json
    rl_req api POST /v1/environments "{\"name\":\"runner-$name\",\"config\":{\"type\":\"self_hosted\"}}"
    RL_ENV=$(rl_jb .id)
    rl_req api POST "/_emulator/v1/environments/$RL_ENV/keys" '{}'
    rl_cred envkey "Authorization: Bearer $(rl_jb .key)"
    if [ -f "$faults" ]; then
        rl_req api POST /_emulator/v1/faults "$(cat "$faults")"
    else
        rl_req api POST /_emulator/v1/faults '{}'
    fi
    tools=$(jq -c '.agent.tools' "$file")
    rl_req api POST /v1/agents "$(jq -cn --arg n "runner-$name" --argjson t "$tools" \
        '{name: $n, model: "claude-sonnet-4-6", tools: $t}')"
    agent=$(rl_jb .id)
    rl_req api POST /v1/sessions "$(jq -cn --arg a "$agent" --arg e "$RL_ENV" --arg s "$name" \
        '{agent: $a, environment_id: $e, metadata: {scenario: $s}}')"
    RL_SID=$(rl_jb .id)
    [ -n "$RL_ENV" ] && [ "$RL_ENV" != null ] && [ -n "$RL_SID" ] && [ "$RL_SID" != null ]
}

# rl_claim: poll once (non-blocking, like the webhook drain) and ack. Sets RL_WID and writes
# the raw secret to $RL_DIR/secret (mode 600). Returns 1 when there is no work.
rl_claim() {
    rl_req envkey GET "/v1/environments/$RL_ENV/work/poll?reclaim_older_than_ms=2000"
    [ "$RL_ST" = 200 ] || return 1
    [ "$(rl_jb .data.type)" = session ] || return 1
    RL_WID=$(rl_jb .id)
    (umask 077 && rl_jb .secret >"$RL_DIR/secret")
    rl_req envkey POST "/v1/environments/$RL_ENV/work/$RL_WID/ack"
    [ "$RL_ST" = 200 ]
}

# rl_runner_start WORKDIR LOG [MANIFEST]: start runcell-runner for the claimed item in the
# background (RL_RUNNER_PID). RL_MAX_IDLE_MS (default 2000) is the idle window.
rl_runner_start() {
    local workdir=$1 log=$2 manifest=${3-}
    mkdir -p "$workdir"
    (
        export ANTHROPIC_BASE_URL=$RL_B ANTHROPIC_ENVIRONMENT_ID=$RL_ENV \
            ANTHROPIC_WORK_ID=$RL_WID ANTHROPIC_SESSION_ID=$RL_SID \
            RUNCELL_WORKDIR=$workdir RUNCELL_MAX_IDLE_MS=${RL_MAX_IDLE_MS:-2000}
        [ -n "$manifest" ] && export RUNCELL_TOOLS_MANIFEST=$manifest
        read -r ANTHROPIC_WORK_SECRET <"$RL_DIR/secret"
        export ANTHROPIC_WORK_SECRET
        exec "$RL_RUNNER"
    ) >"$log" 2>&1 &
    RL_RUNNER_PID=$!
}

# rl_runner_wait [SECONDS]: wait for the runner to exit; RL_RUNNER_RC = its status (124 when it
# did not exit in time and was killed).
rl_runner_wait() {
    local end=$((SECONDS + ${1:-40}))
    while kill -0 "$RL_RUNNER_PID" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.1; done
    if kill -0 "$RL_RUNNER_PID" 2>/dev/null; then
        kill -9 "$RL_RUNNER_PID" 2>/dev/null
        wait "$RL_RUNNER_PID" 2>/dev/null
        RL_RUNNER_RC=124
    else
        wait "$RL_RUNNER_PID"
        RL_RUNNER_RC=$?
    fi
    RL_RUNNER_PID=
}

# rl_verdict: the session's verdict state (running/passed/failed) in RL_VERDICT, body kept in
# $RL_DIR/verdict.json.
rl_verdict() {
    rl_req api GET "/_emulator/v1/sessions/$RL_SID/verdict"
    RL_VERDICT=$(rl_jb .state)
    cp "$RL_DIR/body" "$RL_DIR/verdict.json" 2>/dev/null
}

# Seconds a scenario may take: a base plus every wait it scripts.
rl_scenario_timeout() {
    local extra
    extra=$(jq '[.turns[] | (.pause_after_ms // 0), (.steps // [] | .[] |
                 (.sleep_ms // 0), (if .expect.no_result then (.expect.wait_ms // 2000) else 0 end))]
                | add / 1000 | ceil' "$1" 2>/dev/null) || extra=0
    echo $((${RL_BASE_TIMEOUT:-45} + extra))
}

# rl_play FILE DIR [MANIFEST]: serve the session until its verdict is final, claiming every
# work item it queues (a lost lease or a later turn queues a new one) with a fresh runner each
# time, the workdir kept. Sets RL_VERDICT and RL_RUNS (runner exit statuses, space-separated).
rl_play() {
    local file=$1 dir=$2 manifest=${3-} deadline n=0
    deadline=$((SECONDS + $(rl_scenario_timeout "$file")))
    RL_RUNS=
    RL_VERDICT=running
    mkdir -p "$dir"
    while [ $SECONDS -lt $deadline ]; do
        if [ -z "$RL_RUNNER_PID" ] && rl_claim; then
            n=$((n + 1))
            rl_runner_start "$dir/workdir" "$dir/runner.$n.log" "$manifest"
        fi
        rl_verdict
        [ "$RL_VERDICT" = passed ] || [ "$RL_VERDICT" = failed ] && break
        if [ -n "$RL_RUNNER_PID" ] && ! kill -0 "$RL_RUNNER_PID" 2>/dev/null; then
            rl_runner_wait 1
            RL_RUNS="$RL_RUNS $RL_RUNNER_RC"
        fi
        sleep 0.2
    done
    if [ -n "$RL_RUNNER_PID" ]; then
        kill -TERM "$RL_RUNNER_PID" 2>/dev/null
        rl_runner_wait 35
        RL_RUNS="$RL_RUNS $RL_RUNNER_RC"
    fi
    cp "$RL_DIR/verdict.json" "$dir/verdict.json" 2>/dev/null
}

# The custom tool the scenarios call, as a manifest entry: the same texts as the conformance
# worker's run_tests (tests/conformance/custom-tool.mjs) where a command can produce them.
rl_write_manifest() {
    cat >"$1" <<'EOF'
{
  "version": 1,
  "tools": [
    {
      "name": "run_tests",
      "description": "Run the project's tests",
      "input_schema": {"type": "object", "properties": {"filter": {"type": "string"}}},
      "shell": true,
      "program": "/bin/sh",
      "script": "f=${1:-all}; case \"$f\" in fail) echo \"1 failed: test_fail (filter: $f)\"; exit 1;; crash) echo \"Error: test runner crashed (filter: $f)\"; exit 2;; slow) sleep 1;; esac; echo \"3 passed, 0 failed (filter: $f)\"",
      "argv": [{"input": "filter", "optional": true}],
      "timeout_ms": 60000,
      "max_output_bytes": 102400
    }
  ]
}
EOF
}

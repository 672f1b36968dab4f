#!/usr/bin/env bash
# tests/conformance/parity.sh [SCENARIO|FILE...] - result-by-result parity of runcell-runner with the
# OFFICIAL SDK worker (@anthropic-ai/sdk 1.10.0 EnvironmentWorker, the conformance set-up of
# run.sh). For every scenario in tests/scenarios (or the named ones), on one private
# runcell-emulator per scenario (fault sidecars are global to an emulator), with the scenario's
# faults set for both:
#   - the SDK worker polls its own fresh environment and serves one session playing it;
#   - runcell-runner serves another session in another environment, claimed and restarted per
#     work item by the runner tests' harness (tests/integration/runner_lib.sh, rl_play), with the
#     same custom-tool manifest as tests/integration/runner_scenarios.sh.
# Then the events of both sessions are listed and reduced to the ordered tool calls: (call index,
# tool name, result blocks, is_error) for every agent.tool_use / agent.custom_tool_use. Texts are
# normalised (each worker's working directory -> <WORKDIR>, the bash sentinel -> <SENTINEL>,
# ISO timestamps -> <TIME>) and compared. A difference that is not in the allow-list
# (tests/conformance/parity-allow.json: scenario, call index and/or tool name, reason) fails the
# scenario with a readable diff. One TAP line per scenario ("ok - parity.<name>"), plus
# "parity.allow_list_documented": every allow-list entry is a row of the table in docs/RUNNER.md
# (print the rows with --doc-table).
#
# Scenarios run PARITY_JOBS at a time (default 4). Logs and both sessions' events stay in
# $BUILD/parity-check/<name>/ (sdk/, runner/, calls.sdk.json, calls.runner.json, diff.txt: every
# difference, the allowed ones marked).
#
# Environment: BUILD, EMULATOR, RUNNER, CONFORMANCE_DEPS (see lib.sh and runner_lib.sh),
# PARITY_JOBS, PARITY_ALLOW (default tests/conformance/parity-allow.json), RL_MAX_IDLE_MS
# (runner idle window, default 2000), MAX_IDLE_MS (SDK worker idle window, default 2000).
set -u
cd "$(dirname "$0")/../.." || exit 1
export T_SUITE=parity
ALLOW=${PARITY_ALLOW:-tests/conformance/parity-allow.json}

# The allow-list as markdown table rows, the form docs/RUNNER.md holds.
doc_rows() {
    jq -r '.[] | "| `\(.scenario)` | \(if has("call") then (.call | tostring) else "all" end) | `\(.tool // "any")` | \(.reason) |"' "$ALLOW"
}
if [ "${1-}" = --doc-table ]; then
    echo '| Scenario | Call | Tool | Why the runner differs |'
    echo '|---|---|---|---|'
    doc_rows
    exit 0
fi

. tests/conformance/lib.sh
. tests/integration/runner_lib.sh

POUT=$(realpath -m "$BUILD/parity-check")
JOBS=${PARITY_JOBS:-4}
PIDS=()

# shellcheck disable=SC2317 # called from the EXIT trap
main_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rl_cleanup
}

# ---- one scenario, in its own subshell -----------------------------------------------------------

# fetch_events SID FILE: the session's whole history (every page) as one JSON array.
fetch_events() {
    local sid=$1 file=$2 page=
    echo '[]' >"$file"
    while :; do
        api GET "/v1/sessions/$sid/events?limit=1000${page:+&page=$page}" || return 1
        jq -s '.[0] + (.[1].data // [])' "$file" "$OUT/resp" >"$file.tmp" && mv "$file.tmp" "$file"
        page=$(jq -r '.next_page // empty' "$OUT/resp")
        [ -n "$page" ] || return 0
    done
}

# calls EVENTS WORKDIR: the ordered tool calls with their normalised results.
calls() {
    local wd=$1 real
    real=$(realpath -m "$wd")
    jq --arg wd "$wd" --arg real "$real" '
        def norm: split($wd) | join("<WORKDIR>") | split($real) | join("<WORKDIR>")
            | gsub("__ANT_CMD_[0-9A-Za-z_-]+_DONE__"; "<SENTINEL>")
            | gsub("[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:?[0-9]{2})?"; "<TIME>");
        def block: if .type == "text" then {type, text: (.text | norm)}
            elif .type == "image" then {type, media_type: .source.media_type, data: .source.data}
            else . end;
        . as $ev
        | [$ev[] | select(.type == "user.tool_result" or .type == "user.custom_tool_result")] as $res
        | [$ev[] | select(.type == "agent.tool_use" or .type == "agent.custom_tool_use")]
        | to_entries
        | map(.value as $c | {call: .key, kind: $c.type, tool: $c.name, input: $c.input,
              results: [$res[] | select((.tool_use_id // .custom_tool_use_id) == $c.id)
                        | {is_error: (.is_error // false), content: [(.content // [])[] | block]}]})' "$2"
}

# compare SDK-CALLS RUNNER-CALLS NAME: one line per call that differs (JSON), allowed or not.
compare() {
    jq -c -n --slurpfile s "$1" --slurpfile r "$2" --slurpfile allow "$ALLOW" --arg name "$3" '
        ($s[0]) as $s | ($r[0]) as $r
        | [range(0; [($s | length), ($r | length)] | max)] | .[]
        | . as $i | {call: $i, sdk: $s[$i], runner: $r[$i]}
        | select((.sdk | {tool, results}) != (.runner | {tool, results}))
        | .tool = (.sdk.tool // .runner.tool)
        | . as $d
        | .allowed = ([$allow[0][] | select(.scenario == $name
                        and ((has("call") | not) or .call == $d.call)
                        and ((has("tool") | not) or .tool == $d.tool))] | first)'
}

# describe DIFFS [all]: the readable form of the unexpected differences (or of all, the allowed
# ones marked), as "#" lines.
describe() {
    jq -r --arg all "${2-}" '
        def shown: if . == null then "(no call)"
            elif (.results | length) == 0 then "(no result)"
            else [.results[] | "is_error=\(.is_error) " + ([.content[]
                  | if .type == "text" then (.text | if length > 400 then .[:400] + "..." else . end | tojson)
                    elif .type == "image" then "[image \(.media_type), \(.data | length) base64 chars]"
                    else tojson end] | join(" + "))] | join(" | then ") end;
        select(.allowed == null or $all != "")
        | "#   call \(.call) `\(.tool)` input \(.sdk.input // .runner.input | tojson)"
            + (if .allowed then " (allowed: \(.allowed.reason))" else "" end),
          "#     sdk:    \(.sdk | shown)",
          "#     runner: \(.runner | shown)"' "$1"
}

# wait_verdict SID SECONDS: the SDK session's verdict state once final (or the last one seen).
wait_verdict() {
    local sid=$1 end=$((SECONDS + $2)) state=running
    while [ $SECONDS -lt $end ]; do
        if [ -n "$worker_pid" ] && ! kill -0 "$worker_pid" 2>/dev/null; then break; fi
        if api GET "/_emulator/v1/sessions/$sid/verdict"; then
            state=$(json_field .state) || state=unknown
            [ "$state" = passed ] || [ "$state" = failed ] && break
        fi
        sleep 0.3
    done
    echo "$state"
}

# setup_sdk NAME FILE: environment, key, agent and session for the SDK worker (SDK_SID), with the
# worker started on it. The runner's side is rl_setup's, which also sets the faults for both.
setup_sdk() {
    local name=$1 file=$2 env_id env_key agent_id
    api POST /v1/environments "{\"name\":\"parity-sdk-$name\",\"config\":{\"type\":\"self_hosted\"}}" &&
        env_id=$(json_field .id) &&
        api POST "/_emulator/v1/environments/$env_id/keys" '{}' && env_key=$(json_field .key) ||
        return 1
    start_worker "$OUT/sdk" "$env_id" "$env_key"
    api POST /v1/agents "$(jq -cn --arg n "parity-sdk-$name" --argjson t "$(jq -c .agent.tools "$file")" \
        '{name: $n, model: "claude-sonnet-4-6", tools: $t}')" && agent_id=$(json_field .id) &&
        api POST /v1/sessions "$(jq -cn --arg a "$agent_id" --arg e "$env_id" --arg s "$name" \
            '{agent: $a, environment_id: $e, metadata: {scenario: $s}}')" && SDK_SID=$(json_field .id)
}

# shellcheck disable=SC2317 # called from the subshell's EXIT trap
scenario_cleanup() {
    stop_worker
    if [ -n "$RL_RUNNER_PID" ]; then # SIGTERM first: the runner kills its bash's process group
        kill -TERM "$RL_RUNNER_PID" 2>/dev/null
        rl_runner_wait 5
    fi
    stop_emulator
}

# play FILE NAME: both workers on one emulator, then the comparison; TAP lines on stdout.
play() {
    local file=$1 name=$2 sdk_state diffs want
    OUT=$POUT/$name
    RL_DIR=$OUT/rl
    RL_RUNNER_PID=
    trap scenario_cleanup EXIT
    trap 'exit 143' TERM
    mkdir -p "$OUT/sdk" "$OUT/runner" "$RL_DIR"
    start_emulator "$(dirname "$file")" || {
        t_fail "$name" "runcell-emulator did not start: $(tail -n 3 "$OUT/emulator.log" 2>/dev/null)"
        return
    }
    write_headers
    RL_B=$BASE_URL
    rl_cred api "x-api-key: $API_KEY"
    if ! rl_setup "$name" "$file"; then
        t_fail "$name" "runner session setup failed (HTTP $RL_ST): $(head -c 200 "$RL_DIR/body")"
        return
    fi
    if ! setup_sdk "$name" "$file"; then
        t_fail "$name" "SDK session setup failed: ${API_ERROR:-no id}"
        return
    fi
    rl_play "$file" "$OUT/runner" "$MANIFEST"
    sdk_state=$(wait_verdict "$SDK_SID" "$(rl_scenario_timeout "$file")")
    stop_worker
    api POST /_emulator/v1/faults '{}'
    if ! fetch_events "$SDK_SID" "$OUT/sdk/events.json" || ! fetch_events "$RL_SID" "$OUT/runner/events.json"; then
        t_fail "$name" "listing the events failed: $API_ERROR"
        return
    fi
    if ! calls "$OUT/sdk/workdir" "$OUT/sdk/events.json" >"$OUT/calls.sdk.json" ||
        ! calls "$OUT/runner/workdir" "$OUT/runner/events.json" >"$OUT/calls.runner.json" ||
        ! compare "$OUT/calls.sdk.json" "$OUT/calls.runner.json" "$name" >"$OUT/diffs.json"; then
        t_fail "$name" "could not reduce the events (see $OUT)"
        return
    fi
    diffs=$(describe "$OUT/diffs.json")
    describe "$OUT/diffs.json" all >"$OUT/diff.txt"
    want=$(played_calls "$file")
    if [ -n "$diffs" ]; then
        t_fail "$name" "$(jq length "$OUT/calls.sdk.json") SDK calls, $(jq length "$OUT/calls.runner.json") runner calls; differences not in $ALLOW (verdicts: sdk $sdk_state, runner $RL_VERDICT; logs in $OUT):"
        printf '%s\n' "$diffs"
    elif [ "$(jq length "$OUT/calls.sdk.json")" -ne "$want" ]; then
        t_fail "$name" "the scenario has $want tool calls, the sessions only $(jq length "$OUT/calls.sdk.json"): nothing to compare beyond (verdicts: sdk $sdk_state, runner $RL_VERDICT)"
    else
        t_ok "$name # $want calls, $(jq -s length "$OUT/diffs.json") allowed differences"
    fi
    stale_notes "$name" "$OUT/diffs.json"
}

# played_calls FILE: the tool calls a complete play of the scenario emits (up to a terminate),
# so a comparison of two equally truncated sessions does not pass.
played_calls() {
    jq '[.turns[] | .steps // [] | .[]] | (map(has("terminate")) | index(true)) as $t
        | (if $t == null then . else .[:$t] end) | map(select(has("tool") or has("custom_tool"))) | length' "$1"
}

# stale_notes NAME DIFFS: a "#" note for each allow-list entry of NAME that matched nothing.
stale_notes() {
    jq -r -n --arg name "$1" --slurpfile allow "$ALLOW" --slurpfile d "$2" '
        $allow[0][] | select(.scenario == $name) | . as $a
        | select([$d[] | .allowed | select(. == $a)] | length == 0)
        | "#   note: allow-list entry \($a.scenario) call \($a.call // "all") (\($a.tool // "any")) matched no difference"'
}

# ---- main ---------------------------------------------------------------------------------------

for tool in curl jq realpath; do
    command -v "$tool" >/dev/null 2>&1 || skip_all "$tool not installed"
done
[ -x "$EMULATOR" ] || skip_all "emulator not built ($EMULATOR; run make)"
[ -x "$RL_RUNNER" ] || skip_all "runner not built ($RL_RUNNER; run make)"
jq -e 'type == "array" and all(.[]; (.scenario | type) == "string" and (.reason | type) == "string"
        and (has("call") or has("tool")))' "$ALLOW" >/dev/null 2>&1 ||
    {
        t_fail allow_list "$ALLOW is not an array of {scenario, call and/or tool, reason}"
        t_done
    }
OUT=$POUT
mkdir -p "$OUT"
install_deps
trap main_cleanup EXIT
trap 'exit 130' INT TERM

missing=$(doc_rows | while IFS= read -r row; do grep -qxF -- "$row" docs/RUNNER.md || echo "$row"; done)
if [ -z "$missing" ]; then
    t_ok allow_list_documented
else
    t_fail allow_list_documented "allow-list rows missing from docs/RUNNER.md (print them with $0 --doc-table):"
    printf '%s\n' "$missing" | sed 's/^/#     /'
fi

MANIFEST=$POUT/tools.json
rl_write_manifest "$MANIFEST"
files=()
if [ $# -gt 0 ]; then
    for n in "$@"; do
        case "$n" in
        */* | *.json) files+=("$n") ;; # a scenario file elsewhere (its directory is loaded)
        *) files+=("tests/scenarios/$n.json") ;;
        esac
    done
else
    for f in tests/scenarios/*.json; do
        case "$f" in *.faults.json) continue ;; esac
        files+=("$f")
    done
fi

# Longest scenarios (most scripted waiting) first, so the parallel run ends sooner.
by_length() {
    local f
    for f in "$@"; do
        printf '%s %s\n' "$(jq '[.turns[] | (.pause_after_ms // 0), (.steps // [] | .[] | (.sleep_ms // 0),
            (if .expect.no_result then (.expect.wait_ms // 2000) else 0 end))] | add' "$f" 2>/dev/null || echo 0)" "$f"
    done | sort -rn -s -k1,1 | cut -d' ' -f2-
}

name_of() { jq -er .name "$1" 2>/dev/null || basename "$1" .json; }

mapfile -t started < <(by_length "${files[@]}")
for f in "${started[@]}"; do
    name=$(name_of "$f")
    rm -rf "${POUT:?}/$name"
    mkdir -p "$POUT/$name"
    if [ ! -f "$f" ]; then
        printf 'not ok - parity.%s\n#   no such scenario file: %s\n' "$name" "$f" >"$POUT/$name/tap"
        continue
    fi
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    (play "$f" "$name") >"$POUT/$name/tap" 2>"$POUT/$name/stderr" &
    PIDS+=($!)
done
for p in "${PIDS[@]}"; do wait "$p"; done
PIDS=()
for f in "${files[@]}"; do
    name=$(name_of "$f")
    if [ -s "$POUT/$name/tap" ]; then
        cat "$POUT/$name/tap"
    else
        echo "not ok - parity.$name"
        echo "#   the scenario reported nothing; stderr: $(tail -n 3 "$POUT/$name/stderr" 2>/dev/null)"
    fi
    grep -q '^not ok' "$POUT/$name/tap" 2>/dev/null && T_FAILED=1
done
t_done

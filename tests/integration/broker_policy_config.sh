#!/usr/bin/env bash
# tests/integration/broker_policy_config.sh - the operator's egress policies are validated before
# any session runs (issue 6): `runcell-launcher --check-config` parses RUNCELL_POLICY_FILE and
# every file of RUNCELL_POLICY_DIR (and its agents/) and names the file and the JSON path of the
# first error; the daemon runs the same check at start and refuses to start. No root needed for
# --check-config; the start-up refusal needs root (the daemon checks its uid first).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

BUILD=${BUILD:-build}
LAUNCHER=$BUILD/runcell-launcher
if [ ! -x "$LAUNCHER" ]; then
    t_skip all "$LAUNCHER not built"
    exit 0
fi
T=$(mktemp -d /tmp/rc-polcfg.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir -m 0700 "$T/policies" "$T/policies/agents"
printf '%s\n' '{"allow": ["github.com"]}' >"$T/default.json"
printf '%s\n' '{"allow": ["registry.npmjs.org"]}' >"$T/policies/npm.json"
printf '%s\n' '"deny-all"' >"$T/policies/none.json"
printf '%s\n' '{"allow": {"api.example.com": []}}' >"$T/policies/agents/agent_011abc.json"

# check_config [VAR=VALUE...]: run --check-config with only these variables; sets OUT and RC.
check_config() {
    OUT=$(env -i PATH="$PATH" RUNCELL_STATE_DIR="$T/state" RUNCELL_RUN_DIR="$T/run" "$@" \
        "$LAUNCHER" --check-config 2>&1)
    RC=$?
}
expect() { # expect NAME RC SUBSTRING
    if [ "$RC" = "$2" ] && grep -qF -- "$3" <<<"$OUT"; then
        t_ok "$1"
    else
        t_fail "$1" "exit $RC, want $2 with '$3': $OUT"
    fi
}

check_config RUNCELL_POLICY_FILE="$T/default.json" RUNCELL_POLICY_DIR="$T/policies"
expect all_valid 0 "configuration ok: 4 egress policies checked"
check_config
expect nothing_configured 0 "configuration ok: 0 egress policies checked"
check_config RUNCELL_POLICY_FILE="$T/default.json"
expect default_only 0 "configuration ok: 1 egress policy checked"

# a bad file in the dir: the file and the JSON path
printf '%s\n' '{"allow": {"x.test": [{"match": {"path": {"exact": "nope"}}, "transform": []}]}}' \
    >"$T/policies/bad.json"
check_config RUNCELL_POLICY_FILE="$T/default.json" RUNCELL_POLICY_DIR="$T/policies"
expect bad_named_policy 2 "$T/policies/bad.json: policy: \$.allow[\"x.test\"][0].match.path.exact"
rm "$T/policies/bad.json"

printf '%s\n' '{"allow": ["a.test"], "subnet": {}}' >"$T/policies/agents/agent_02.json"
check_config RUNCELL_POLICY_DIR="$T/policies"
expect bad_agent_policy 2 "$T/policies/agents/agent_02.json: policy: \$: unknown member \"subnet\""
rm "$T/policies/agents/agent_02.json"

printf '%s\n' '{"allow": ["*"], "allow": []}' >"$T/bad-default.json"
check_config RUNCELL_POLICY_FILE="$T/bad-default.json"
expect bad_default_policy 2 "$T/bad-default.json: policy: not valid JSON"

printf '%s\n' '{"allow": {"x.test": [{"forwardURL": "http://y.test"}]}}' >"$T/fwd.json"
check_config RUNCELL_POLICY_FILE="$T/fwd.json"
expect forward_url_refused 2 'a forward URL must start with https://'

# a forwardURL policy needs the token key, and the key must be a private file of 32+ bytes
printf '%s\n' '{"allow": {"x.test": [{"forwardURL": "https://audit.example/in"}]}}' >"$T/fwd-ok.json"
check_config RUNCELL_POLICY_FILE="$T/fwd-ok.json"
expect forward_needs_key 2 "$T/fwd-ok.json has forwardURL rules: set RUNCELL_FORWARD_KEY_FILE"
head -c 48 /dev/urandom >"$T/fwd.key"
chmod 0600 "$T/fwd.key"
check_config RUNCELL_POLICY_FILE="$T/fwd-ok.json" RUNCELL_FORWARD_KEY_FILE="$T/fwd.key"
expect forward_with_key 0 "configuration ok: 1 egress policy checked"
chmod 0644 "$T/fwd.key"
check_config RUNCELL_POLICY_FILE="$T/fwd-ok.json" RUNCELL_FORWARD_KEY_FILE="$T/fwd.key"
expect forward_key_mode 2 "RUNCELL_FORWARD_KEY_FILE"
check_config RUNCELL_FORWARD_KEY_FILE=relative.key
expect forward_key_relative 2 "RUNCELL_FORWARD_KEY_FILE must be an absolute path"

# names the selection could never use are refused, not skipped
printf '%s\n' '"deny-all"' >"$T/policies/npm.json.bak"
check_config RUNCELL_POLICY_DIR="$T/policies"
expect stray_file 2 "npm.json.bak: not a policy file name"
rm "$T/policies/npm.json.bak"
printf '%s\n' '"deny-all"' >"$T/policies/.editor-swap"
check_config RUNCELL_POLICY_DIR="$T/policies"
expect hidden_file_ignored 0 "configuration ok: 3 egress policies checked"

chmod 0777 "$T/policies"
check_config RUNCELL_POLICY_DIR="$T/policies"
expect writable_dir 2 "writable by group or others"
chmod 0700 "$T/policies"

check_config RUNCELL_POLICY_DIR="$T/nowhere"
expect missing_dir 2 "RUNCELL_POLICY_DIR $T/nowhere"
check_config RUNCELL_POLICY_DIR="relative/dir"
expect relative_dir 2 "RUNCELL_POLICY_DIR must be an absolute path"
check_config RUNCELL_POLICY_FILE="$T/none.json"
expect missing_default 2 "policy: cannot open $T/none.json"

# a header value is never echoed by the check
printf '%s\n' '{"allow": {"x.test": [{"transform": [{"headers": {"Authorization": "Bearer sk-ant-SECRETVALUE\u0001"}}]}]}}' \
    >"$T/secret.json"
check_config RUNCELL_POLICY_FILE="$T/secret.json"
if [ "$RC" = 2 ] && ! grep -q SECRETVALUE <<<"$OUT"; then
    t_ok no_value_in_error
else
    t_fail no_value_in_error "exit $RC: $OUT"
fi

# The daemon refuses to start on a bad policy, before it touches anything.
if [ "$(id -u)" = 0 ]; then
    OUT=$(env -i PATH="$PATH" RUNCELL_STATE_DIR="$T/state" RUNCELL_RUN_DIR="$T/run" \
        RUNCELL_SNAPSHOT=sha256:0000000000000000000000000000000000000000000000000000000000000000 \
        RUNCELL_POLICY_FILE="$T/fwd.json" timeout 20 "$LAUNCHER" 2>&1)
    RC=$?
    expect daemon_refuses_bad_policy 2 "egress policy: $T/fwd.json: policy:"
    if [ ! -e "$T/run" ] && [ ! -e "$T/state" ]; then
        t_ok daemon_touched_nothing
    else
        t_fail daemon_touched_nothing "$(ls "$T")"
    fi
else
    t_skip daemon_refuses_bad_policy "needs root"
fi
t_done

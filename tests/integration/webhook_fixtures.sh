#!/usr/bin/env bash
# tests/integration/webhook_fixtures.sh - the webhook fixtures of tests/fixtures/webhooks/ (issue
# 9, "Webhook fixtures in the curl style"): one file per case, each naming the request to build
# and the answer and side effects to expect (format: tests/fixtures/webhooks/README.md). Every
# case runs through a real nginx and runcell-fcgi (as nobody) against the emulator, with the fake
# launcher taking hand-offs, and starts from an empty queue: its own session, deleted afterwards.
# One TAP line per case, named after the file, with every failed expectation as a diagnostic.
# shellcheck source=tests/integration/fcgi_lib.sh
. "$(dirname "$0")/fcgi_lib.sh"

FIXTURES=${WEBHOOK_FIXTURES:-tests/fixtures/webhooks}

# case_values FILE KEY: every value of KEY in FILE, one per line.
case_values() {
    sed -n "s/^$2:[[:space:]]*//p" "$1"
}
case_value() { case_values "$1" "$2" | head -n 1; }

# build_body SPEC OUT: the request body of a case.
build_body() {
    local spec=$1 out=$2
    case "$spec" in
    "envelope "*) envelope "$CASE_ID" "${spec#envelope }" "${SID:-sesn_none}" >"$out" ;;
    "raw "*) printf '%s' "${spec#raw }" >"$out" ;;
    "fill "*) head -c "${spec#fill }" /dev/zero | tr '\0' a >"$out" ;;
    none) : >"$out" ;;
    *) return 1 ;;
    esac
}

# header_args CASE-FILE BODY: the curl arguments for the signature headers and extra headers
# (REQ_ARGS).
header_args() {
    local file=$1 body=$2 now sig bad ts_spec id_spec sig_spec ts h
    now=$(date +%s)
    ts_spec=$(case_value "$file" timestamp)
    id_spec=$(case_value "$file" id)
    sig_spec=$(case_value "$file" signature)
    case "${ts_spec:-now}" in
    now | omit | dup) ts=$now ;;
    now-*) ts=$((now - ${ts_spec#now-})) ;;
    now+*) ts=$((now + ${ts_spec#now+})) ;;
    *) return 1 ;;
    esac
    sig=$(sign "$CASE_ID" "$ts" <"$body" 2>/dev/null) # empty for bodies over its cap
    bad="v1,$(head -c 32 /dev/urandom | base64)"
    REQ_ARGS=()
    case "${id_spec:-fresh}" in
    fresh | long) REQ_ARGS+=(-H "webhook-id: $CASE_ID") ;;
    dup) REQ_ARGS+=(-H "webhook-id: $CASE_ID" -H "webhook-id: $CASE_ID") ;;
    omit) ;;
    *) return 1 ;;
    esac
    case "${ts_spec:-now}" in
    omit) ;;
    dup) REQ_ARGS+=(-H "webhook-timestamp: $ts" -H "webhook-timestamp: $ts") ;;
    *) REQ_ARGS+=(-H "webhook-timestamp: $ts") ;;
    esac
    case "${sig_spec:-valid}" in
    valid) REQ_ARGS+=(-H "webhook-signature: $sig") ;;
    random) REQ_ARGS+=(-H "webhook-signature: $bad") ;;
    omit) ;;
    multi) REQ_ARGS+=(-H "webhook-signature: $bad $sig") ;;
    joined) REQ_ARGS+=(-H "webhook-signature: $sig, $sig") ;;
    dup) REQ_ARGS+=(-H "webhook-signature: $sig" -H "Webhook-Signature: $sig") ;;
    dup-bad-first) REQ_ARGS+=(-H "webhook-signature: $bad" -H "webhook-signature: $sig") ;;
    *) return 1 ;;
    esac
    while IFS= read -r h; do
        [ -n "$h" ] && REQ_ARGS+=(-H "$h")
    done < <(case_values "$file" header)
    return 0
}

# check_expectations FILE HANDOFFS-BEFORE MARK: every expect.* of the case; prints each miss.
check_expectations() {
    local file=$1 before=$2 mark=$3 want line expr val got name
    want=$(case_value "$file" expect.status)
    [ "$WST" = "$want" ] || echo "status $WST, want $want: $(head -c 200 "$ANS")"
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        expr=${line%% = *} val=${line#* = }
        got=$(answer "$expr")
        [ "$got" = "$val" ] || echo "$expr = '$got', want '$val'"
    done < <(case_values "$file" expect.json)
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        name=${line%%:*} val=${line#*: }
        got=$(ahdr "$name")
        [ "$got" = "$val" ] || echo "header $name = '$got', want '$val'"
    done < <(case_values "$file" expect.header)
    want=$(case_value "$file" expect.item)
    if [ -n "$want" ]; then
        got=$(item_state "$SID")
        [ "$got" = "$want" ] || echo "work item $got, want $want"
    fi
    want=$(case_value "$file" expect.handoffs)
    if [ -n "$want" ]; then
        got=$(($(launches) - before))
        [ "$got" = "$want" ] || echo "$got hand-offs, want $want"
    fi
    want=$(case_value "$file" expect.polls)
    if [ -n "$want" ]; then
        got=$(polls_since "$mark")
        [ "$got" = "$want" ] || echo "$got polls, want $want"
    fi
}

# run_case FILE: one fixture, one TAP line.
run_case() {
    local file=$1 name before mark body spec method path repeat misses i
    name=$(basename "$file" .case)
    CASE_ID=whe_fx_${name//[^a-zA-Z0-9]/_}_$RANDOM
    [ "$(case_value "$file" id)" = long ] && CASE_ID=whe_$(printf 'x%.0s' $(seq 130))
    SID=
    if [ "$(case_value "$file" session)" != none ]; then
        mk_session SID "$AGENT" "$ENV"
    fi
    body=$F_DIR/fixture.body
    spec=$(case_value "$file" body)
    if [ -z "$(case_value "$file" expect.status)" ] ||
        ! build_body "${spec:-envelope session.status_run_started}" "$body" ||
        ! header_args "$file" "$body"; then
        t_fail "$name" "malformed fixture (see tests/fixtures/webhooks/README.md)"
        return
    fi
    method=$(case_value "$file" method)
    path=$(case_value "$file" path)
    repeat=$(case_value "$file" repeat)
    before=$(launches)
    mark=$(req_mark)
    for i in $(seq "${repeat:-1}"); do
        if [ "$spec" = none ]; then
            http -X "${method:-POST}" "${REQ_ARGS[@]}" "$NGX${path:-/webhook}"
        else
            http -X "${method:-POST}" -H 'content-type: application/json' "${REQ_ARGS[@]}" \
                --data-binary "@$body" "$NGX${path:-/webhook}"
        fi
    done
    : "$i"
    misses=$(check_expectations "$file" "$before" "$mark")
    if [ -z "$misses" ]; then
        t_ok "$name"
    else
        t_fail "$name" "$(case_value "$file" description)"
        printf '%s\n' "$misses" | sed 's/^/#   /'
    fi
    # An empty queue for the next case: deleting the session stops its items.
    [ -n "$SID" ] && api DELETE "/v1/sessions/$SID"
}

fcgi_setup
n=0
for f in "$FIXTURES"/*.case; do
    [ -f "$f" ] || continue
    run_case "$f"
    n=$((n + 1))
done
t_check fixtures_found test "$n" -ge 20
fcgi_hygiene hygiene
fcgi_stop sigterm
t_done

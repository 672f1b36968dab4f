#!/usr/bin/env bash
# tests/integration/broker_tls_clients.sh - TLS interception with REAL clients inside a session
# container (issue 11), through the whole chain as root: emulator -> nginx -> runcell-fcgi ->
# runcell-launcher -> shim (broker with a per-session CA) -> runc container.
#
# broker_tls_container.sh proves the container side with a static OpenSSL probe; this one runs
# the clients agents actually use, unmodified, with nothing but the environment the launcher
# gives the agent's tools (HTTPS_PROXY, SSL_CERT_FILE, CURL_CA_BUNDLE; no -k, no --cacert):
#   curl        the host's /usr/bin/curl plus any library it needs that the snapshot lacks (ldd)
#   Python      the host's Debian /usr/bin/python3 (python3.X) with the stdlib files that
#               urllib.request, ssl, http.client and json import (found by importing them on the
#               host), all of encodings/, their lib-dynload modules and libraries: urllib.request
#               .urlopen with its default context (ssl.create_default_context -> SSL_CERT_FILE).
#               Skipped ("no Debian python3") when the host has no /usr/bin/python3.
#   Node        skipped: fetch() through a proxy needs NODE_USE_ENV_PROXY, which only Node 24+ has.
# The snapshot's "system" bundle is the test world's root CA (the one the upstream's certificate
# chains to), so a domain without rules verifies end to end against its real certificate.
#
# Policy (one session, runcell_policy=inject): api.test has rules - /v1/ and /echo get the
# credential injected, /open passes without one, anything else gets a 403 response rule;
# tunnel.test has none. The upstream answers /echo... by reflecting the request's headers.
# Checked per client: TLS to the rule domain verifies with the tool environment; the upstream saw
# exactly the injected credential; the reflecting /echo is cut (the echoed body never arrives,
# the broker logs the cut; the upstream sends its head before the body, so the client gets the
# head's first lines and an early close, which curl and urllib take for an empty 200) and the
# credential is nowhere in what the client saw; /open reaches the upstream without a credential;
# the rule domain's certificate is the session CA's (a client trusting only the world's root
# fails) and the no-rule domain's is the upstream's own (a client trusting only the session CA
# fails, the default trust succeeds).
# shellcheck source=tests/integration/launcher_lib.sh
. "$(dirname "$0")/launcher_lib.sh"
# shellcheck source=tests/integration/egress_lib.sh
. tests/integration/egress_lib.sh # launcher_lib.sh went to the repository root

BC_VH=rcbc$$h BC_VU=rcbc$$u
# Debian's python3 (/usr/bin/python3 -> python3.X) and its stdlib /usr/lib/python3.X
PY_BIN=$(readlink -f /usr/bin/python3 2>/dev/null)
PY_LIB=/usr/lib/${PY_BIN##*/}
# shellcheck disable=SC2317 # called from the EXIT trap
bc_cleanup() {
    ip link del "$BC_VH" 2>/dev/null
    eg_cleanup
    lt_cleanup
}
trap bc_cleanup EXIT
trap 'exit 143' TERM INT

lt_require
eg_require
if ! command -v nsenter >/dev/null || [ ! -x /usr/bin/curl ] || ! command -v ldd >/dev/null; then
    t_skip all "no nsenter, /usr/bin/curl or ldd"
    exit 0
fi
HAVE_PY=1
[[ "$PY_BIN" == /usr/bin/python3.* ]] && [ -x "$PY_BIN" ] && [ -d "$PY_LIB/lib-dynload" ] || HAVE_PY=

# ---- the world ------------------------------------------------------------------------------

# The HTTPS upstream (api.test, tunnel.test): logs every request as a JSON line; a path starting
# with /echo gets the request's headers back as its body (a reflection the broker must cut).
bc_upstream() {
    cat >"$EG_T/upstream.py" <<'PY'
import http.server, json, socketserver, ssl, sys, threading
log_path, cert, key, ready = sys.argv[1:5]
lock = threading.Lock()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        rec = {"method": self.command, "path": self.path,
               "headers": [[k, v] for k, v in self.headers.items()]}
        with lock, open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.path.startswith("/echo"):
            out = ("ECHOED " + json.dumps(rec["headers"]) + "\n").encode()
        else:
            out = ("tls-ok " + self.path + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(out)

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

tls = S(("0.0.0.0", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
open(ready, "w").write("ok\n")
tls.serve_forever()
PY
    : >"$EG_T/upstream.log"
    ip netns exec "$EG_UP" python3 "$EG_T/upstream.py" "$EG_T/upstream.log" \
        "$EG_T/pki/server.pem" "$EG_T/pki/server.key" "$EG_T/upstream.ready" \
        2>"$EG_T/upstream.err" &
    EG_PIDS+=($!)
    eg_wait_file "$EG_T/upstream.ready"
}

bc_world() {
    EG_T=$(mktemp -d /tmp/rc-broker-tls-clients.XXXXXX)
    chmod 0755 "$EG_T"
    ip netns add "$EG_UP" && in_up ip link set lo up &&
        ip link add "$BC_VH" type veth peer name "$BC_VU" netns "$EG_UP" &&
        ip addr add 203.0.113.1/24 dev "$BC_VH" && ip link set "$BC_VH" up &&
        in_up ip addr add 203.0.113.2/24 dev "$BC_VU" &&
        in_up ip addr add 203.0.113.3/24 dev "$BC_VU" &&
        in_up ip link set "$BC_VU" up || return 1
    in_up ip route add default dev "$BC_VU" || return 1
    eg_certs && bc_upstream && eg_hosts
}

INJECTED=rc-tls-clients-INJECTED-cred-5c2e84
bc_policies() {
    mkdir -m 0700 "$EG_T/policies"
    printf '%s\n' '{"allow": ["tunnel.test"]}' >"$EG_T/default.json"
    cat >"$EG_T/policies/inject.json" <<EOF
{"allow": {
  "api.test": [
    {"match": {"path": {"startsWith": "/v1/"}}, "transform": [{"headers": {"x-api-key": "$INJECTED"}}]},
    {"match": {"path": {"startsWith": "/echo"}}, "transform": [{"headers": {"x-api-key": "$INJECTED"}}]},
    {"match": {"path": {"startsWith": "/open"}}, "transform": []},
    {"response": {"statusCode": 403, "contentType": "text/plain", "body": "outside the rules\n"}}],
  "tunnel.test": []}}
EOF
    chmod 0600 "$EG_T/default.json" "$EG_T/policies/inject.json"
}

# The probe the bash tool runs inside the container (as the agent uid, the tool environment).
# key=value lines; a client's whole output (body, errors) goes into its value.
bc_probe_script() {
    cat >"$1" <<'PROBE'
#!/bin/bash
# tlsclients.sh - run inside the session container (tests/integration/broker_tls_clients.sh)
kv() { printf '%s=%s\n' "$1" "$(printf '%s' "$2" | tr '\n\r' '  ')"; }
kv uid "$(id -u)"
kv env_HTTPS_PROXY "${HTTPS_PROXY-<unset>}"
kv env_SSL_CERT_FILE "${SSL_CERT_FILE-<unset>}"
kv env_CURL_CA_BUNDLE "${CURL_CA_BUNDLE-<unset>}"
# curl: "<http code> <verify result> rc=<exit>" then the body or curl's error
c() { local o; o=$(timeout 30 curl -sS --max-time 20 -w '\n%{http_code} %{ssl_verify_result}' "$@" 2>&1); echo "$o rc=$?"; }
kv curl_version "$(curl --version | head -n 1)"
kv curl_inject "$(c https://api.test/v1/data/curl)"
kv curl_echo "$(c -i https://api.test/echo/curl)"
kv curl_open "$(c https://api.test/open/curl)"
kv curl_outside "$(c https://api.test/elsewhere/curl)"
kv curl_tunnel "$(c https://tunnel.test/t/curl)"
kv curl_inject_issuer "$(timeout 30 curl -sS -v -o /dev/null --max-time 20 https://api.test/v1/issuer/curl 2>&1 | grep -i 'issuer:')"
kv curl_tunnel_issuer "$(timeout 30 curl -sS -v -o /dev/null --max-time 20 https://tunnel.test/t/issuer/curl 2>&1 | grep -i 'issuer:')"
# trusting only the world's root, the rule domain fails (its certificate is the session CA's);
# trusting only the session CA, the no-rule domain fails (its certificate is the upstream's own)
kv curl_inject_worldroot_only "$(c --cacert /etc/ssl/world-root.pem https://api.test/v1/worldroot/curl)"
kv curl_tunnel_sessionca_only "$(c --cacert /run/runcell-ca/ca.pem https://tunnel.test/t/sessionca/curl)"
if command -v python3 >/dev/null; then
    kv py_run 1
    python3 - <<'PY' 2>&1
import ssl, sys, urllib.error, urllib.request
def get(url, cafile=None):
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=20, context=ctx) as r:
            return "status=%d body=%s" % (r.status, r.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as e:
        return "status=%d body=%s" % (e.code, e.read().decode("utf-8", "replace"))
    except Exception as e:
        r = getattr(e, "reason", e)
        return "error=%s: %s" % (type(r).__name__, r)
def kv(k, v):
    print("%s=%s" % (k, " ".join(str(v).splitlines())), flush=True)
kv("py_version", sys.version.split()[0] + " " + ssl.OPENSSL_VERSION)
kv("py_inject", get("https://api.test/v1/data/py"))
kv("py_echo", get("https://api.test/echo/py"))
kv("py_open", get("https://api.test/open/py"))
kv("py_outside", get("https://api.test/elsewhere/py"))
kv("py_tunnel", get("https://tunnel.test/t/py"))
kv("py_inject_worldroot_only", get("https://api.test/v1/worldroot/py", "/etc/ssl/world-root.pem"))
kv("py_tunnel_sessionca_only", get("https://tunnel.test/t/sessionca/py", "/run/runcell-ca/ca.pem"))
PY
else
    kv py_run 0
fi
kv probe_end 1
PROBE
}

bc_scenario() {
    mkdir -p "$EG_T/scenarios"
    cat >"$EG_T/scenarios/tls-clients.json" <<'EOF'
{
  "name": "tls-clients",
  "description": "issue 11: real curl and Python urllib through the intercepting proxy, then wait for the host's checks",
  "agent": {"tools": [{"type": "agent_toolset_20260401",
                       "default_config": {"enabled": true, "permission_policy": {"type": "always_allow"}}}]},
  "turns": [
    {"user": "run the clients",
     "steps": [
       {"tool": "bash", "input": {"command": "bash /bin/tlsclients.sh >/workspace/clients.out 2>&1; echo probed"},
        "expect": {"is_error": false, "text": "probed", "wait_ms": 110000}},
       {"tool": "bash", "input": {"command": "for i in $(seq 500); do [ -e /workspace/release ] && break; sleep 0.2; done; echo released"},
        "expect": {"is_error": false, "text": "released", "wait_ms": 130000}},
       {"message": "done"}],
     "end": "end_turn"}]
}
EOF
}

# bc_add_file ROOT FILE: copy a host file (symlinks followed) to the same path under ROOT.
bc_add_file() {
    mkdir -p "$1$(dirname "$2")" && cp -L "$2" "$1$2"
}

# bc_add_libs ROOT SNAPSHOT-LIST BIN...: every library ldd resolves for BIN that the snapshot
# (its member list) does not hold yet.
bc_add_libs() {
    local root=$1 have=$2 bin line path
    shift 2
    for bin in "$@"; do
        while read -r line; do
            case "$line" in
            *"=> not found"*) echo "ldd: $bin: $line" >&2; return 1 ;;
            *"=> /"*) path=${line#*=> }; path=${path%% (*} ;;
            /*) path=${line%% (*} ;;
            *) continue ;;
            esac
            grep -qxF ".$path" "$have" || [ -e "$root$path" ] || bc_add_file "$root" "$path" || return 1
        done < <(ldd "$bin" 2>/dev/null)
    done
}

# The Python files urllib.request/ssl/http.client/json load on the host (run isolated, so no
# site-packages), plus all of encodings/, under ROOT.
bc_add_python() {
    local root=$1 f
    mkdir -p "$root/usr/bin"
    cp "$PY_BIN" "$root$PY_BIN" && ln -s "${PY_BIN##*/}" "$root/usr/bin/python3" || return 1
    LANG=C "$PY_BIN" -I -c 'import sys, socket, ssl, json, http.client, urllib.request, urllib.error
import encodings.idna, email.parser, base64, tempfile, urllib.response
"x.test".encode("idna")
for m in list(sys.modules.values()):
    f = getattr(m, "__file__", None)
    if f: print(f)' >"$EG_T/py-files" || return 1
    while read -r f; do
        case "$f" in "$PY_LIB"/*) bc_add_file "$root" "$f" || return 1 ;; esac
    done <"$EG_T/py-files"
    cp -r "$PY_LIB/encodings" "$root$PY_LIB/" && rm -rf "$root$PY_LIB/encodings/__pycache__" &&
        cp "$PY_LIB/os.py" "$root$PY_LIB/" # the landmark that sets sys.prefix
}

# The minimal snapshot plus the world's root as the system bundle (and again under a name of its
# own), an empty anchor dir, the probe, curl and Python with what they need.
bc_snapshot() {
    local x=$EG_T/extra f
    lt_snapshot minimal
    tar -tf "$LT_TAR" | sed 's|/$||' >"$EG_T/snapshot.list"
    mkdir -p "$x/bin" "$x/etc/ssl/certs" "$x/usr/local/share/ca-certificates" "$x/usr/bin"
    bc_probe_script "$x/bin/tlsclients.sh"
    cp "$EG_T/pki/ca.pem" "$x/etc/ssl/certs/ca-certificates.crt"
    cp "$EG_T/pki/ca.pem" "$x/etc/ssl/world-root.pem"
    cp /usr/bin/curl "$x/usr/bin/curl"
    bc_add_libs "$x" "$EG_T/snapshot.list" /usr/bin/curl || return 1
    if [ -n "$HAVE_PY" ]; then
        bc_add_python "$x" || return 1
        bc_add_libs "$x" "$EG_T/snapshot.list" "$PY_BIN" "$x$PY_LIB"/lib-dynload/*.so || return 1
    fi
    chmod -R u=rwX,go=rX "$x"
    # members the snapshot has already (/bin, /usr/bin, /lib/...) are not added again
    (cd "$x" && find . -mindepth 1 | sort) | while read -r f; do
        grep -qxF "$f" "$EG_T/snapshot.list" || echo "$f"
    done >"$EG_T/extra.list"
    tar --append -f "$LT_TAR" -C "$x" --numeric-owner --owner=0 --group=0 --no-recursion \
        -T "$EG_T/extra.list"
}

if ! bc_world; then t_fail setup "network namespace and upstream: $(cat "$EG_T/upstream.err" 2>/dev/null)"; t_done; fi
bc_policies
bc_scenario
bc_snapshot || { t_fail snapshot "could not extend the snapshot"; t_done; }
port=$(free_port)
em_start --scenarios "$EG_T/scenarios" --webhook-url "http://127.0.0.1:$port/webhook" \
    --webhook-backoff-ms 300,600
mk_env ENV launcher
mk_key ek "$ENV"
fcgi_env "$ENV"
lt_launcher_start RUNCELL_POLICY_FILE="$EG_T/default.json" RUNCELL_POLICY_DIR="$EG_T/policies" \
    RUNCELL_BROKER_HOSTS_FILE="$EG_T/hosts" RUNCELL_CA_FILE="$EG_T/pki/ca.pem"
fcgi_start
nginx_start "$port"

api POST /v1/agents "$(jq -cn '{name: "tls-clients", model: "claude-sonnet-4-6",
    tools: [{type: "agent_toolset_20260401", default_config: {enabled: true,
             permission_policy: {type: "always_allow"}}}]}')"
AGENT=$(jb .id)
api POST /v1/sessions "$(jq -cn --arg a "$AGENT" --arg e "$ENV" \
    '{agent: $a, environment_id: $e, metadata: {scenario: "tls-clients", runcell_policy: "inject"}}')"
SA=$(jb .id)
if [ -z "$SA" ] || [ "$SA" = null ]; then
    t_fail session "not created: $(head -c 200 "$EM_DIR/body")"
    t_done
fi
OUT=$LT_STATE/workspaces/$SA/data/clients.out
if ! wait_for 150 grep -qs '^probe_end=1' "$OUT"; then
    t_fail probe_ran "no probe output: $(tail -n 5 "$LT_LOG" | tr '\n' ' ')"
    t_done
fi
t_ok probe_ran
cp "$OUT" "$EG_T/clients.out"
OUT=$EG_T/clients.out
pv() { sed -n "s/^$1=//p" "$OUT" | head -n 1; }

# up_keys PATH: the x-api-key values the upstream saw for PATH, as a JSON array ("none" when the
# request never arrived).
up_keys() {
    jq -sc --arg p "$1" '[.[] | select(.path == $p)] | if length == 0 then "none"
        else [.[].headers[] | select(.[0] | ascii_downcase == "x-api-key") | .[1]] end' \
        "$EG_T/upstream.log" 2>/dev/null
}

check_eq env.agent_uid "$(pv uid)" 1000
check_eq env.curl_ca_bundle "$(pv env_CURL_CA_BUNDLE)" /run/runcell-ca/ca-bundle.pem
check_eq env.ssl_cert_file "$(pv env_SSL_CERT_FILE)" /run/runcell-ca/ca-bundle.pem
check_contains env.https_proxy "$(pv env_HTTPS_PROXY)" "127.0.0.1"
check_absent nothing_seen.credential "$(cat "$OUT")" "$INJECTED"

# ---- curl -------------------------------------------------------------------------------------
check_contains curl.runs "$(pv curl_version)" "curl "
check_contains curl.inject_verified "$(pv curl_inject)" "tls-ok /v1/data/curl  200 0 rc=0"
check_eq curl.inject_upstream_credential "$(up_keys /v1/data/curl)" "[\"$INJECTED\"]"
check_eq curl.echo_reached_upstream_with_credential "$(up_keys /echo/curl)" "[\"$INJECTED\"]"
o=$(pv curl_echo)
check_absent curl.echo_reflection_cut "$o" "ECHOED"
check_absent curl.echo_no_credential "$o" "$INJECTED"
# The cut is visible to the client: a 502 before any byte, or a body shorter than the complete
# head announced (curl exit 18), never an empty 200 with exit 0.
echo "# curl on the reflecting /echo: $o"
if [[ "$o" == *" 502 0 rc=0" || "$o" == *"rc=18" ]]; then t_ok curl.echo_cut_is_an_error; else t_fail curl.echo_cut_is_an_error "$o"; fi
check_contains curl.open_verified "$(pv curl_open)" "tls-ok /open/curl  200 0 rc=0"
check_eq curl.open_no_credential "$(up_keys /open/curl)" "[]"
check_contains curl.outside_response_rule "$(pv curl_outside)" "outside the rules  403 0 rc=0"
check_eq curl.outside_not_sent "$(up_keys /elsewhere/curl)" '"none"'
check_contains curl.tunnel_verified "$(pv curl_tunnel)" "tls-ok /t/curl  200 0 rc=0"
check_eq curl.tunnel_no_credential "$(up_keys /t/curl)" "[]"
check_contains curl.tunnel_upstream_cert "$(pv curl_tunnel_issuer)" "CN=runcell egress test CA"
o=$(pv curl_inject_issuer)
if [ -n "$o" ] && [[ "$o" != *"runcell egress test CA"* ]]; then t_ok curl.inject_session_ca_cert; else t_fail curl.inject_session_ca_cert "issuer: $o"; fi
check_contains curl.inject_worldroot_only_fails "$(pv curl_inject_worldroot_only)" "rc=60"
check_eq curl.inject_worldroot_only_not_sent "$(up_keys /v1/worldroot/curl)" '"none"'
check_contains curl.tunnel_sessionca_only_fails "$(pv curl_tunnel_sessionca_only)" "rc=60"

# ---- which tool call made the request (issue 11) --------------------------------------------
# The runner reports the running call to the broker's channel; the egress audit line of the
# injection names it: the bash call that ran the probe, and only it.
api GET "/v1/sessions/$SA/events?limit=1000"
probe_call=$(jq -r '[.data[] | select(.type == "agent.tool_use" and
    ((.input.command // "") | contains("tlsclients.sh")))][0].id // empty' "$EM_DIR/body")
egress_line=$(jq -c 'select(.path == "/v1/data/curl")' \
    "$LT_STATE/sessions/$SA/egress-audit.jsonl" 2>/dev/null | head -n 1)
if [ -n "$probe_call" ]; then t_ok call_id.probe_call_found; else t_fail call_id.probe_call_found "$(head -c 300 "$EM_DIR/body")"; fi
check_contains call_id.injection_audited "$egress_line" '"injected":["x-api-key"]'
check_contains call_id.audit_names_the_call "$egress_line" "\"tool_calls\":[\"$probe_call\"]"
check_contains call_id.log_names_the_call "$(grep -F 'GET api.test/v1/data/curl: injecting' "$LT_LOG")" \
    "(tool calls [$probe_call])"

# ---- Python urllib ---------------------------------------------------------------------------
if [ -z "$HAVE_PY" ]; then
    t_skip python "skipped: no Debian python3 (/usr/bin/python3 -> python3.X with /usr/lib/python3.X)"
elif [ "$(pv py_run)" != 1 ] || [ -z "$(pv py_version)" ]; then
    t_fail python.runs "python3 did not run in the container: $(grep -v '^curl' "$OUT" | head -c 600)"
else
    t_ok python.runs
    check_eq python.inject_verified "$(pv py_inject)" "status=200 body=tls-ok /v1/data/py"
    check_eq python.inject_upstream_credential "$(up_keys /v1/data/py)" "[\"$INJECTED\"]"
    check_eq python.echo_reached_upstream_with_credential "$(up_keys /echo/py)" "[\"$INJECTED\"]"
    o=$(pv py_echo)
    check_absent python.echo_reflection_cut "$o" "ECHOED"
    check_absent python.echo_no_credential "$o" "$INJECTED"
    echo "# python on the reflecting /echo: $o"
    if [[ "$o" == "status=502"* || "$o" == "error="* ]]; then
        t_ok python.echo_cut_is_an_error
    else
        t_fail python.echo_cut_is_an_error "$o"
    fi
    check_eq python.open_verified "$(pv py_open)" "status=200 body=tls-ok /open/py"
    check_eq python.open_no_credential "$(up_keys /open/py)" "[]"
    check_eq python.outside_response_rule "$(pv py_outside)" "status=403 body=outside the rules"
    check_eq python.tunnel_verified "$(pv py_tunnel)" "status=200 body=tls-ok /t/py"
    check_eq python.tunnel_no_credential "$(up_keys /t/py)" "[]"
    check_contains python.inject_worldroot_only_fails "$(pv py_inject_worldroot_only)" "CERTIFICATE_VERIFY_FAILED"
    check_contains python.tunnel_sessionca_only_fails "$(pv py_tunnel_sessionca_only)" "CERTIFICATE_VERIFY_FAILED"
fi

# ---- Node ------------------------------------------------------------------------------------
node_major=$(node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p')
if [ -z "$node_major" ]; then
    t_skip node "skipped: no node on this host"
elif [ "$node_major" -lt 24 ]; then
    t_skip node "skipped: Node v$node_major has no NODE_USE_ENV_PROXY (fetch() through HTTPS_PROXY needs Node 24+)"
else
    t_skip node "skipped: Node v$node_major could run fetch() with NODE_USE_ENV_PROXY, but copying Node into the test snapshot is not wired up yet"
fi

# ---- the broker's side of the cuts -----------------------------------------------------------
want=1
[ -n "$HAVE_PY" ] && want=2
check_eq broker.reflection_cuts_logged \
    "$(grep -c 'response reflected an injected credential from api.test (rule api.test#1)' "$LT_LOG")" "$want"

# ---- the end ---------------------------------------------------------------------------------
touch "$LT_STATE/workspaces/$SA/data/release"
v=$(wait_verdict "$SA" 60)
if [ "$v" = passed ]; then t_ok verdict; else t_fail verdict "$v"; fi
check end.ca_dir_removed wait_for 30 test ! -e "$LT_STATE/tls/$SA"
if left=$(wait_clean 60); then t_ok nothing_left; else t_fail nothing_left "$left"; fi
check host_logs.no_injected_value bash -c "! grep -rqsF '$INJECTED' '$LT_LOG' '$LT_STATE/sessions' '$LT_STATE/workspaces'"
# on a failure, what the clients saw (checked above to hold no credential)
[ "$T_FAILED" = 1 ] && ! grep -qF "$INJECTED" "$OUT" && sed 's/^/#   probe: /' "$OUT"
t_done

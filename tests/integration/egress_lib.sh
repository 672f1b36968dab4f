# tests/integration/egress_lib.sh - the world the egress_*.sh tests run in (issue 6): three
# network namespaces and real clients, never an outside address.
#
#   <p>-ct  "container": only lo; the proxy's listener is bound here at 127.0.0.1:3128
#   <p>-br  "broker host": runs egress_proxy; veth to <p>-up with 203.0.113.1/24
#   <p>-up  "the internet": 203.0.113.2 and .3 (TEST-NET-3), 10.77.0.2 and .3 (private),
#           169.254.169.254 (metadata); a Python server answers HTTP on :80 and HTTPS on :443
#           (certificate for api.test, tunnel.test, *.wild.test from a test CA) and logs every
#           request it receives as a JSON line
#
# Names resolve only through the proxy's hosts file (RUNCELL_BROKER_HOSTS_FILE), so no test ever
# uses DNS. Sourced, not run: run directly it only reports itself as skipped.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "ok - egress_lib.sourced_helper # SKIP helper sourced by egress_*.sh"
    exit 0
fi

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. tests/lib.sh

BUILD=${BUILD:-build}
EG_PROXY=$(pwd)/$BUILD/tests/tools/egress_proxy
EG_P=rcb$$
EG_CT=$EG_P-ct EG_BR=$EG_P-br EG_UP=$EG_P-up
EG_T=
EG_PIDS=()

# Skip the whole suite (one SKIP line) unless everything it needs is here.
eg_require() {
    local why=
    if [ "$(id -u)" != 0 ]; then why="needs root (network namespaces)"
    elif [ ! -x "$EG_PROXY" ]; then why="$EG_PROXY not built"
    elif ! command -v ip >/dev/null; then why="iproute2 not installed"
    elif ! command -v curl >/dev/null; then why="curl not installed"
    elif ! command -v openssl >/dev/null; then why="openssl not installed"
    elif ! command -v python3 >/dev/null; then why="python3 not installed"
    elif ! ip netns add "$EG_P-probe" 2>/dev/null; then why="cannot create network namespaces here"
    fi
    ip netns del "$EG_P-probe" 2>/dev/null
    if [ -n "$why" ]; then
        t_skip all "$why"
        exit 0
    fi
}

eg_cleanup() {
    local p
    for p in "${EG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${EG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del "$EG_CT" 2>/dev/null
    ip netns del "$EG_BR" 2>/dev/null
    ip netns del "$EG_UP" 2>/dev/null
    [ -n "$EG_T" ] && rm -rf "$EG_T"
}
trap eg_cleanup EXIT

in_ct() { ip netns exec "$EG_CT" "$@"; }
in_br() { ip netns exec "$EG_BR" "$@"; }
in_up() { ip netns exec "$EG_UP" "$@"; }

eg_netns() {
    local vb=${EG_P}b vu=${EG_P}u
    ip netns add "$EG_CT" && ip netns add "$EG_BR" && ip netns add "$EG_UP" || return 1
    in_ct ip link set lo up && in_br ip link set lo up && in_up ip link set lo up || return 1
    ip link add "$vb" netns "$EG_BR" type veth peer name "$vu" netns "$EG_UP" || return 1
    in_br ip addr add 203.0.113.1/24 dev "$vb" &&
        in_br ip link set "$vb" up &&
        in_br ip route add 10.77.0.0/24 dev "$vb" &&
        in_br ip route add 169.254.169.254/32 dev "$vb" || return 1
    in_up ip addr add 203.0.113.2/24 dev "$vu" &&
        in_up ip addr add 203.0.113.3/24 dev "$vu" &&
        in_up ip addr add 10.77.0.2/24 dev "$vu" &&
        in_up ip addr add 10.77.0.3/24 dev "$vu" &&
        in_up ip addr add 169.254.169.254/16 dev "$vu" &&
        in_up ip link set "$vu" up || return 1
}

# A test CA and a server certificate for the upstream's HTTPS port.
eg_certs() {
    local d=$EG_T/pki
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=runcell egress test CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
        >/dev/null 2>&1 || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=api.test" \
        -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1 || return 1
    printf 'subjectAltName=DNS:api.test,DNS:tunnel.test,DNS:*.wild.test\nextendedKeyUsage=serverAuth\n' \
        >"$d/ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/ext" -out "$d/server.pem" >/dev/null 2>&1 || return 1
}

# The upstream: HTTP on :80, HTTPS on :443; logs {port, method, path, headers, body} per request.
eg_upstream() {
    cat >"$EG_T/upstream.py" <<'PY'
import http.server, json, socketserver, ssl, sys, threading
log_path, cert, key, ready = sys.argv[1:5]
lock = threading.Lock()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n) if n else b""
    def handle_any(self):
        data = self.body()
        port = self.server.server_address[1]
        rec = {"port": port, "method": self.command, "path": self.path,
               "headers": [[k, v] for k, v in self.headers.items()],
               "body": data.decode("utf-8", "replace")}
        with lock, open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        text = ("tls-ok " if port == 443 else "plain-ok ") + self.path + "\n"
        out = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_DELETE = handle_any

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

plain = S(("0.0.0.0", 80), H)
tls = S(("0.0.0.0", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=plain.serve_forever, daemon=True).start()
open(ready, "w").write("ok\n")
tls.serve_forever()
PY
    : >"$EG_T/upstream.log"
    # not through in_up: a backgrounded function would leave $! pointing at a subshell
    ip netns exec "$EG_UP" python3 "$EG_T/upstream.py" "$EG_T/upstream.log" \
        "$EG_T/pki/server.pem" "$EG_T/pki/server.key" "$EG_T/upstream.ready" \
        2>"$EG_T/upstream.err" &
    EG_PIDS+=($!)
    eg_wait_file "$EG_T/upstream.ready"
}

eg_wait_file() {
    local i
    for i in $(seq 1 100); do
        [ -s "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

# eg_hosts: the proxy's name map.
eg_hosts() {
    cat >"$EG_T/hosts" <<'HOSTS'
# egress test names -> the upstream namespace's addresses
203.0.113.2 plain.test api.test tunnel.test mismatch.test a.wild.test wild.test unlisted.test
203.0.113.3 denied.test
10.77.0.2 priv.test
10.77.0.3 privok.test
169.254.169.254 meta.test
127.0.0.1 loop.test
203.0.113.1 self.test
HOSTS
}

# eg_proxy NAME POLICY_FILE [extra egress_proxy args...]: start a proxy in the broker namespace
# with its listener on 127.0.0.1:<port> inside the container namespace; sets EG_PORT.
eg_proxy() {
    local name=$1 policy=$2 port=${EG_NEXT_PORT:-3128}
    shift 2
    EG_NEXT_PORT=$((port + 1))
    rm -f "$EG_T/$name.ready"
    ip netns exec "$EG_BR" env RUNCELL_BROKER_HOSTS_FILE="$EG_T/hosts" "$EG_PROXY" \
        --policy "$policy" --listen "127.0.0.1:$port" --netns "$EG_CT" \
        --audit "$EG_T/$name.audit" --session-id "sesn_egress_test" \
        --ready-file "$EG_T/$name.ready" "$@" >"$EG_T/$name.out" 2>"$EG_T/$name.err" &
    EG_PIDS+=($!)
    if ! eg_wait_file "$EG_T/$name.ready"; then
        t_fail "${name}_start" "$(cat "$EG_T/$name.err")"
        return 1
    fi
    EG_PORT=$port
}

# eg_setup: namespaces, certificates, upstream, hosts file (fails the suite if any step fails).
eg_setup() {
    EG_T=$(mktemp -d /tmp/rc-egress-test.XXXXXX)
    if ! eg_netns; then t_fail setup "network namespaces"; t_done; fi
    if ! eg_certs; then t_fail setup "test certificates"; t_done; fi
    if ! eg_upstream; then t_fail setup "upstream server: $(cat "$EG_T/upstream.err")"; t_done; fi
    eg_hosts
}

# ecurl PORT ARGS...: curl inside the container namespace through the proxy at PORT.
ecurl() {
    local port=$1
    shift
    in_ct curl -sS --max-time 10 -x "http://127.0.0.1:$port" "$@"
}

# eg_status PORT ARGS...: the HTTP status curl saw.
eg_status() {
    local port=$1
    shift
    in_ct curl -s -o /dev/null --max-time 10 -w '%{http_code}' -x "http://127.0.0.1:$port" "$@"
}

# eg_connect_status PORT URL: the proxy's answer to curl's CONNECT (-p) for URL.
eg_connect_status() {
    in_ct curl -s -o /dev/null --max-time 10 -w '%{http_connect}' -p -x "http://127.0.0.1:$1" "$2"
}

eg_header() { tr -d '\r' | sed -n "s/^$1: //Ip" | head -n 1; }

check_eq() {
    if [ "$2" = "$3" ]; then t_ok "$1"; else t_fail "$1" "got '$2', want '$3'"; fi
}

check_contains() {
    if grep -qF -- "$3" <<<"$2"; then t_ok "$1"; else t_fail "$1" "'$3' not in: $(head -c 400 <<<"$2")"; fi
}

check_absent() {
    if grep -qF -- "$3" <<<"$2"; then t_fail "$1" "'$3' found"; else t_ok "$1"; fi
}

# The audit line (JSON) of the last request for host, via python (jq may be missing).
eg_audit() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
path, host, field = sys.argv[1:4]
last = None
for line in open(path):
    rec = json.loads(line)
    if rec.get("host") == host:
        last = rec
print("" if last is None else json.dumps(last.get(field)) if field != "-" else json.dumps(last))
PY
}

#!/usr/bin/env bash
# tests/integration/webhook_npm.sh - cross-checks runcell-webhook against the standardwebhooks npm
# package (the library behind the SDK's webhooks.unwrap(), protocol.md 18.3): signatures made by
# either side verify on the other and are byte-identical; tampered or stale deliveries are
# refused by both. Needs node and .deps/node/node_modules/standardwebhooks (scripts/install-deps.sh);
# skips otherwise.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/lib.sh"
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
CLI=$BUILD/runcell-webhook
PKG=$ROOT/.deps/node/node_modules/standardwebhooks
CASES=20

if ! command -v node >/dev/null 2>&1; then
    t_skip setup "node not found"
    t_done
fi
if [ ! -f "$PKG/package.json" ]; then
    t_skip setup "standardwebhooks not installed under .deps/node (scripts/install-deps.sh)"
    t_done
fi
if [ ! -x "$CLI" ]; then
    t_fail setup "$CLI not built (make BUILD=$BUILD)"
    t_done
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Node side: `gen DIR N` writes N random cases (key, id, ts, body, sig signed by the package);
# `verify DIR N SIGEXT [TSEXT] [BODYEXT]` verifies each case with the package at the real clock
# and prints "<i> ok" or "<i> <error message>".
cat >"$tmp/helper.js" <<'EOF'
const fs = require('fs');
const crypto = require('crypto');
const { Webhook } = require(process.env.PKG);
const [cmd, dir, n, sigExt, tsExt = 'ts', bodyExt = 'body'] = process.argv.slice(2);
const rd = (i, ext) => fs.readFileSync(`${dir}/${i}.${ext}`);
const pieces = ['a', 'é', '€', '😀', '\u2028', ' ', '"', '\\', 'z', '0', '\t'];
function randomText(len) {
  let s = '';
  for (let k = 0; k < len; k++) s += pieces[crypto.randomInt(pieces.length)];
  return s;
}
if (cmd === 'gen') {
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < Number(n); i++) {
    const keyLen = i === 0 ? 32 : 16 + crypto.randomInt(49);
    const key = 'whsec_' + crypto.randomBytes(keyLen).toString('base64');
    const id = 'msg_' + crypto.randomBytes(12).toString('base64url');
    const ts = now - crypto.randomInt(120);
    const body = i === 1 ? '' : JSON.stringify({
      type: 'event', id, created_at: new Date().toISOString(),
      data: { type: 'session.status_run_started', id: 'sesn_' + i, note: randomText(crypto.randomInt(200)) },
    });
    const sig = new Webhook(key).sign(id, new Date(ts * 1000), body);
    fs.writeFileSync(`${dir}/${i}.key`, key);
    fs.writeFileSync(`${dir}/${i}.id`, id);
    fs.writeFileSync(`${dir}/${i}.ts`, String(ts));
    fs.writeFileSync(`${dir}/${i}.body`, body);
    fs.writeFileSync(`${dir}/${i}.sig`, sig);
  }
} else if (cmd === 'verify') {
  for (let i = 0; i < Number(n); i++) {
    try {
      new Webhook(rd(i, 'key').toString()).verify(rd(i, bodyExt), {
        'webhook-id': rd(i, 'id').toString(),
        'webhook-timestamp': rd(i, tsExt).toString(),
        'webhook-signature': rd(i, sigExt).toString(),
      }, { jsonParse: false });
      console.log(`${i} ok`);
    } catch (e) {
      console.log(`${i} ${e.message}`);
    }
  }
} else if (cmd === 'vector') {
  const wh = new Webhook('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
  console.log(wh.sign('msg_p5jXN8AQM9LWM0D4loKWxJek', new Date(1614265330 * 1000), '{"test": 2432232314}'));
}
EOF
node_helper() { PKG=$PKG node "$tmp/helper.js" "$@"; }

# cli_verify I SIGEXT [TSEXT] [BODYEXT]: our verifier on case I; exit status of the CLI.
cli_verify() {
    local i=$1 sig=$2 ts=${3:-ts} body=${4:-body}
    ANTHROPIC_WEBHOOK_SIGNING_KEY=$(cat "$tmp/$i.key") "$CLI" verify --id "$(cat "$tmp/$i.id")" \
        --timestamp "$(cat "$tmp/$i.$ts")" --signature "$(cat "$tmp/$i.$sig")" \
        <"$tmp/$i.$body" 2>>"$tmp/cli.log"
}

# expect_node SIGEXT TSEXT BODYEXT WANT: every case's node verdict is WANT ("ok" or a message).
expect_node() {
    local want=$4
    node_helper verify "$tmp" "$CASES" "$1" "$2" "$3" >"$tmp/node.out" 2>&1 || return 1
    [ "$(grep -cxE "[0-9]+ $want" "$tmp/node.out")" -eq "$CASES" ]
}

if [ "$(node_helper vector)" = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" ]; then
    t_ok npm_package_reproduces_test_vector
else
    t_fail npm_package_reproduces_test_vector "standardwebhooks disagrees with protocol.md 18.4"
fi

if ! node_helper gen "$tmp" "$CASES"; then
    t_fail setup "node could not generate cases"
    t_done
fi
now=$(date +%s)
bad=()
for ((i = 0; i < CASES; i++)); do
    # Ours: sign the same delivery; must equal the package's signature byte for byte.
    ANTHROPIC_WEBHOOK_SIGNING_KEY=$(cat "$tmp/$i.key") "$CLI" sign --id "$(cat "$tmp/$i.id")" \
        --timestamp "$(cat "$tmp/$i.ts")" <"$tmp/$i.body" >"$tmp/$i.oursig" 2>>"$tmp/cli.log" ||
        bad+=("sign#$i")
    printf '%s' "$(cat "$tmp/$i.oursig")" >"$tmp/$i.oursig"
    cmp -s "$tmp/$i.sig" "$tmp/$i.oursig" || bad+=("differs#$i")
    # Tampered copies: one body byte, one signature character; plus a multi-entry header and a
    # lenient timestamp header (" 0<ts>xyz" is parsed as <ts> by both).
    { cat "$tmp/$i.body"; printf ' '; } >"$tmp/$i.tbody"
    sig=$(cat "$tmp/$i.sig")
    c=${sig:10:1}
    [ "$c" = A ] && r=B || r=A
    printf '%s' "${sig:0:10}$r${sig:11}" >"$tmp/$i.tsig"
    printf 'v1,Ym9ndXM= v2,%s %s' "${sig#v1,}" "$sig" >"$tmp/$i.msig"
    printf ' 0%sxyz' "$(cat "$tmp/$i.ts")" >"$tmp/$i.lts"
    # Outside the window: signed by the package's algorithm (ours, proven identical above).
    for d in 400 -400; do
        ts=$((now - d))
        printf '%s' "$ts" >"$tmp/$i.ts$d"
        ANTHROPIC_WEBHOOK_SIGNING_KEY=$(cat "$tmp/$i.key") "$CLI" sign --id "$(cat "$tmp/$i.id")" \
            --timestamp "$ts" <"$tmp/$i.body" | tr -d '\n' >"$tmp/$i.sig$d"
    done
done
if [ ${#bad[@]} -eq 0 ]; then
    t_ok cli_signature_identical_to_npm
else
    t_fail cli_signature_identical_to_npm "cases: ${bad[*]}"
fi

# cli_expect NAME WANT_STATUS SIGEXT [TSEXT] [BODYEXT]: our verdict on every case.
cli_expect() {
    local name=$1 want=$2 fails=() i rc
    shift 2
    for ((i = 0; i < CASES; i++)); do
        cli_verify "$i" "$@"
        rc=$?
        [ $rc -eq "$want" ] || fails+=("#$i:$rc")
    done
    if [ ${#fails[@]} -eq 0 ]; then t_ok "$name"; else t_fail "$name" "exit status ${fails[*]}"; fi
}

# node_expect NAME WANT SIGEXT TSEXT BODYEXT: the package's verdict on every case.
node_expect() {
    if expect_node "$3" "$4" "$5" "$2"; then
        t_ok "$1"
    else
        t_fail "$1" "$(grep -vxE "[0-9]+ $2" "$tmp/node.out" | head -n 3 | tr '\n' ';')"
    fi
}

cli_expect npm_signatures_verified_by_cli 0 sig
node_expect cli_signatures_verified_by_npm ok oursig ts body
cli_expect tampered_body_rejected_by_cli 1 sig ts tbody
node_expect tampered_body_rejected_by_npm "No matching signature found" oursig ts tbody
cli_expect tampered_signature_rejected_by_cli 1 tsig
node_expect tampered_signature_rejected_by_npm "No matching signature found" tsig ts body
cli_expect multi_entry_header_accepted_by_cli 0 msig
node_expect multi_entry_header_accepted_by_npm ok msig ts body
cli_expect lenient_timestamp_accepted_by_cli 0 sig lts
node_expect lenient_timestamp_accepted_by_npm ok sig lts body
cli_expect stale_rejected_by_cli 1 sig400 ts400
node_expect stale_rejected_by_npm "Message timestamp too old" sig400 ts400 body
cli_expect future_rejected_by_cli 1 sig-400 ts-400
node_expect future_rejected_by_npm "Message timestamp too new" sig-400 ts-400 body

if grep -q whsec_ "$tmp/cli.log" 2>/dev/null; then
    t_fail cli_never_prints_key "a key appeared on stderr"
else
    t_ok cli_never_prints_key
fi
t_done

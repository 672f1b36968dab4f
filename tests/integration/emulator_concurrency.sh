#!/usr/bin/env bash
# tests/integration/emulator_concurrency.sh - runcell-emulator under load: hundreds of sessions
# with an open SSE stream each, every stream receiving its own session's events, plain requests
# staying fast meanwhile, and concurrent long-polls all waiting in parallel (one parked request
# never blocks another). A node client drives the load (one process, many sockets).
. "$(dirname "$0")/emulator_lib.sh"

command -v node >/dev/null 2>&1 || {
    t_skip all "node not installed (the load client is a node script)"
    exit 0
}
N=${EMU_LOAD_SESSIONS:-300}
em_start

mk_env ENV load
mk_key ek "$ENV"
mk_agent AGENT
EK=$(sed -n 's/^Authorization: Bearer //p' "$EM_DIR/cred.ek")

cat >"$EM_DIR/load.js" <<'EOF'
// Load client. Credentials come from the environment, not argv.
const http = require('http');
const [base, envId, agent, n] = [process.env.B, process.env.ENV, process.env.AGENT, +process.env.N];
const H = { 'x-api-key': process.env.API_KEY, 'anthropic-beta': 'managed-agents-2026-04-01',
            'anthropic-version': '2023-06-01', 'content-type': 'application/json' };
const agentOpt = new http.Agent({ keepAlive: true, maxSockets: 64 });
function call(method, path, body, headers = H) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const req = http.request(base + path, { method, headers, agent: agentOpt }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode, body: data, ms: Date.now() - t0 }));
    });
    req.on('error', reject);
    if (body) req.write(JSON.stringify(body));
    req.end();
  });
}
function openStream(sid) {
  return new Promise((resolve, reject) => {
    const st = { events: [], buf: '' };
    const req = http.get(base + `/v1/sessions/${sid}/events/stream`, { headers: H }, (res) => {
      st.status = res.statusCode;
      res.setEncoding('utf8');
      res.on('data', (c) => {
        st.buf += c;
        let i;
        while ((i = st.buf.indexOf('\n\n')) >= 0) {
          const frame = st.buf.slice(0, i);
          st.buf = st.buf.slice(i + 2);
          const ev = /^event: (.*)$/m.exec(frame);
          if (ev && ev[1] !== 'ping') st.events.push(ev[1]);
        }
      });
      resolve(st);
    });
    req.on('error', reject);
    st.req = req;
  });
}
const pct = (a, p) => a.slice().sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))];
(async () => {
  const out = {};
  const sids = [];
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, n - i) }, () =>
      call('POST', '/v1/sessions', { agent, environment_id: envId })));
    for (const r of batch) sids.push(JSON.parse(r.body).id);
  }
  out.sessions = sids.filter(Boolean).length;
  let t0 = Date.now();
  const streams = await Promise.all(sids.map(openStream));
  out.streams_open = streams.filter((s) => s.status === 200).length;
  out.open_ms = Date.now() - t0;
  // Plain requests while every stream is open.
  const lat = [];
  for (let i = 0; i < 100; i++) lat.push((await call('GET', `/v1/sessions/${sids[i % n]}`)).ms);
  out.get_p50_ms = pct(lat, 0.5);
  out.get_max_ms = Math.max(...lat);
  // One message per session; each stream must see its own events only.
  t0 = Date.now();
  await Promise.all(sids.map((sid) => call('POST', `/v1/sessions/${sid}/events`,
    { events: [{ type: 'user.message', content: [{ type: 'text', text: 'hello ' + sid }] }] })));
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline && !streams.every((s) => s.events.includes('session.status_idle')))
    await new Promise((r) => setTimeout(r, 50));
  out.fanout_ms = Date.now() - t0;
  out.streams_complete = streams.filter((s) => s.events.includes('user.message') &&
    s.events.includes('agent.message') && s.events.includes('session.status_idle')).length;
  out.streams_exact = streams.filter((s) => s.events.filter((e) => e === 'user.message').length === 1).length;
  const st = JSON.parse((await call('GET', '/_emulator/v1/stats')).body);
  out.stats_streams_open = st.streams_open;
  // Concurrent long-polls on an empty queue: all wait ~block_ms in parallel.
  const emptyEnv = JSON.parse((await call('POST', '/v1/environments', { name: 'empty' })).body).id;
  const key = JSON.parse((await call('POST', `/_emulator/v1/environments/${emptyEnv}/keys`)).body).key;
  const EH = { authorization: 'Bearer ' + key, 'anthropic-beta': 'managed-agents-2026-04-01' };
  const pollAgent = new http.Agent({ keepAlive: false, maxSockets: 1000 });
  t0 = Date.now();
  const polls = await Promise.all(Array.from({ length: 100 }, () => new Promise((resolve) => {
    http.get(base + `/v1/environments/${emptyEnv}/work/poll?block_ms=800`, { headers: EH, agent: pollAgent },
      (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
  })));
  out.polls_204 = polls.filter((s) => s === 204).length;
  out.polls_ms = Date.now() - t0;
  for (const s of streams) s.req.destroy();
  console.log(JSON.stringify(out));
  process.exit(0);
})().catch((e) => { console.error(String(e)); process.exit(1); });
EOF

ulimit -n 4096 2>/dev/null
B=$B ENV=$ENV AGENT=$AGENT N=$N API_KEY=$API_KEY EK=$EK timeout 50 node "$EM_DIR/load.js" >"$EM_DIR/load.out" 2>"$EM_DIR/load.err"
check load_client_ran test -s "$EM_DIR/load.out"
echo "# $(cat "$EM_DIR/load.out" "$EM_DIR/load.err")"
r() { jq -r "$1" "$EM_DIR/load.out" 2>/dev/null; }
check sessions_created test "$(r .sessions)" = "$N"
check all_streams_open test "$(r .streams_open)" = "$N"
check stats_count_streams test "$(r .stats_streams_open)" = "$N"
check requests_fast_with_streams_open test "$(r .get_p50_ms)" -lt 50
check every_stream_gets_its_turn test "$(r .streams_complete)" = "$N"
check no_cross_session_events test "$(r .streams_exact)" = "$N"
check fanout_under_10s test "$(r .fanout_ms)" -lt 10000
check parallel_long_polls test "$(r .polls_204)" = 100
check long_polls_not_serialized test "$(r .polls_ms)" -lt 3000
t_done

// dry-run.mjs - plays the tool steps of scenario files directly against the OFFICIAL SDK toolset
// (no server, no emulator) and checks each step's `expect`, so a scenario's expectations can be
// validated against the SDK's real tool output on their own. A failure here is a scenario bug;
// a failure only in run.sh (against the emulator) points at the emulator.
//
// Usage: SDK_DIR=.deps/conformance node dry-run.mjs tests/scenarios/*.json
// Prints one TAP line per scenario ("ok - dryrun.<name>"), with a "#" line per failing step
// (VERBOSE=1: a "#" line per step with its result).
//
// Routing follows the SDK's session runner (spec/protocol.md §11, §13.7): a call whose name the
// worker does not serve, a server-side `deny`, and an `ask` that is not confirmed with `allow`
// produce no result. Results are converted as the runner does (a string becomes one text block,
// empty text becomes "(no output)", a thrown non-ToolError becomes "Error: <message>").
// The expectation semantics mirror rc_sc_expect_check in emulator/scenario.c. `sleep_ms`,
// `message`, `terminate` and turn pauses are not timed; the scenario stops at `terminate`.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(path.join(path.resolve(process.env.SDK_DIR || '.'), 'package.json'));
const { betaAgentToolset20260401 } = require('@anthropic-ai/sdk/tools/agent-toolset/node');
const { ToolError } = require('@anthropic-ai/sdk/lib/tools/ToolError');
const { runTestsTool } = await import('./custom-tool.mjs');

function toContent(out) {
  if (typeof out === 'string') return [{ type: 'text', text: out || '(no output)' }];
  const blocks = out.map((b) => (b.type === 'text' ? { ...b, text: b.text || '(no output)' } : b));
  return blocks.length ? blocks : [{ type: 'text', text: '(no output)' }];
}

async function run(tool, input) {
  try {
    return { content: toContent(await tool.run(input, { signal: AbortSignal.timeout(120_000) })), isError: false };
  } catch (e) {
    const text = e instanceof ToolError ? e.content : `Error: ${e instanceof Error ? e.message : String(e)}`;
    return { content: toContent(text), isError: true };
  }
}

function judge(expect, result) {
  const fails = [];
  if (expect.no_result) {
    if (result) fails.push(`no_result: a result arrived (${JSON.stringify(textOf(result.content))})`);
    return fails;
  }
  if (!result) return ['no result arrived'];
  const text = textOf(result.content);
  const q = JSON.stringify(text.length > 160 ? text.slice(0, 160) + '...' : text);
  if ('is_error' in expect && expect.is_error !== result.isError)
    fails.push(`is_error: expected ${expect.is_error}, got ${result.isError} (text ${q})`);
  if ('text' in expect && expect.text !== text) fails.push(`text: expected ${JSON.stringify(expect.text)}, got ${q}`);
  if ('contains' in expect && !text.includes(expect.contains))
    fails.push(`contains ${JSON.stringify(expect.contains)}: not found in ${q}`);
  if ('not_contains' in expect && text.includes(expect.not_contains))
    fails.push(`not_contains ${JSON.stringify(expect.not_contains)}: found in ${q}`);
  if ('matches' in expect && !posixMatch(expect.matches, text))
    fails.push(`matches ${JSON.stringify(expect.matches)}: no match in ${q}`);
  if ('block_type' in expect && result.content[0]?.type !== expect.block_type)
    fails.push(`block_type: expected ${JSON.stringify(expect.block_type)}, got ${result.content[0]?.type}`);
  return fails;
}

function textOf(content) {
  return content.filter((b) => b.type === 'text').map((b) => b.text).join('');
}

// POSIX ERE and JavaScript agree on the constructs the scenarios use (anchors, classes, groups,
// alternation, bounds); '$' and '^' anchor the whole text, as regexec without REG_NEWLINE does.
function posixMatch(re, text) {
  return new RegExp(re).test(text);
}

async function playScenario(file) {
  const sc = JSON.parse(fs.readFileSync(file, 'utf8'));
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), `dryrun-${sc.name}-`));
  const tools = [...betaAgentToolset20260401({ workdir }), runTestsTool];
  const byName = new Map(tools.map((t) => [t.name, t]));
  const fails = [];
  try {
    outer: for (const [ti, turn] of sc.turns.entries()) {
      for (const [si, step] of (turn.steps || []).entries()) {
        if (step.terminate) break outer;
        const name = step.tool ?? step.custom_tool;
        if (name === undefined) continue;
        const tool = byName.get(name);
        const gated = step.permission === 'deny' || (step.permission === 'ask' && step.confirm !== 'allow');
        const result = tool && !gated ? await run(tool, step.input || {}) : undefined;
        if (process.env.VERBOSE) {
          const shown = result ? JSON.stringify({ is_error: result.isError, text: textOf(result.content) }) : 'no result';
          console.log(`#   ${sc.name} turn ${ti} step ${si} ${name}: ${shown}`);
        }
        for (const f of judge(step.expect || {}, result)) fails.push(`turn ${ti} step ${si} (${name}): ${f}`);
      }
    }
  } finally {
    for (const t of tools) await t.close?.();
    fs.rmSync(workdir, { recursive: true, force: true });
  }
  return { name: sc.name, fails };
}

let failed = 0;
for (const file of process.argv.slice(2)) {
  if (file.endsWith('.faults.json')) continue;
  const { name, fails } = await playScenario(file);
  if (fails.length) {
    failed++;
    console.log(`not ok - dryrun.${name}`);
    for (const f of fails) console.log(`#   ${f}`);
  } else {
    console.log(`ok - dryrun.${name}`);
  }
}
process.exit(failed ? 1 : 0);

// sdk-worker.mjs - runs the OFFICIAL @anthropic-ai/sdk EnvironmentWorker (poll mode) against a
// Managed Agents endpoint (the emulator, in tests/conformance/run.sh).
//
// The worker serves the default agent toolset (bash, read, write, edit, glob, grep) plus one
// custom tool, `run_tests` (custom-tool.mjs), which the scenarios call through `custom_tool`
// steps. Nothing here changes how the SDK behaves: the point is to check that the emulator speaks
// the protocol the way the SDK expects (spec/protocol.md §20).
//
// Configuration (environment):
//   SDK_DIR                      directory holding node_modules/@anthropic-ai/sdk (required)
//   ANTHROPIC_BASE_URL           the API base URL (required)
//   ANTHROPIC_ENVIRONMENT_ID     environment to poll (required)
//   ANTHROPIC_ENVIRONMENT_KEY    its environment key (required)
//   WORKDIR                      the tools' working directory (default: the current directory)
//   MAX_IDLE_MS                  idle window after a turn ends (default 2000)
//   SDK_LOG_LEVEL                SDK log level: debug, info, warn, error, off (default info)
// The process runs until SIGTERM/SIGINT; it exits 0 on a signal, 1 when the worker fails.
import { createRequire } from 'node:module';
import path from 'node:path';

function need(name) {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`sdk-worker: ${name} is not set\n`);
    process.exit(2);
  }
  return v;
}

// The SDK lives under .deps/, outside this file's directory tree, where ESM bare imports would
// not look; resolve it from SDK_DIR instead (the SDK ships CommonJS builds of every module).
const require = createRequire(path.join(path.resolve(need('SDK_DIR')), 'package.json'));
const { default: Anthropic } = require('@anthropic-ai/sdk');
const { betaAgentToolset20260401 } = require('@anthropic-ai/sdk/tools/agent-toolset/node');
const { runTestsTool } = await import('./custom-tool.mjs');

const baseURL = need('ANTHROPIC_BASE_URL');
const environmentId = need('ANTHROPIC_ENVIRONMENT_ID');
const environmentKey = need('ANTHROPIC_ENVIRONMENT_KEY');
const workdir = path.resolve(process.env.WORKDIR || process.cwd());
const maxIdleMs = Number(process.env.MAX_IDLE_MS || 2000);

const client = new Anthropic({
  // A placeholder: the worker's helpers send only the environment key or the sessions token.
  apiKey: 'sk-ant-placeholder-conformance',
  baseURL,
  logLevel: process.env.SDK_LOG_LEVEL || 'info',
});

const stop = new AbortController();
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => stop.abort(new Error(`received ${sig}`)));
}

const worker = client.beta.environments.work.worker({
  environmentId,
  environmentKey,
  workdir,
  maxIdleMs,
  tools: (ctx) => [...betaAgentToolset20260401(ctx), runTestsTool],
});

process.stderr.write(
  `sdk-worker: polling ${environmentId} at ${baseURL} (workdir ${workdir}, maxIdleMs ${maxIdleMs})\n`,
);
try {
  await worker.run(stop.signal);
  process.exit(0);
} catch (e) {
  if (stop.signal.aborted) process.exit(0);
  process.stderr.write(`sdk-worker: worker failed: ${e?.stack || e}\n`);
  process.exit(1);
}

// custom-tool.mjs - the one custom tool the conformance worker serves, `run_tests`, shared by
// sdk-worker.mjs and dry-run.mjs. Results are fixed so scenarios can check them:
//   {"filter": "fail"}  -> ToolError "1 failed: test_fail (filter: fail)"      (is_error: true)
//   {"filter": "crash"} -> a plain Error, which the SDK reports as "Error: <message>"
//   {"filter": "image"} -> one image block (a 1x1 PNG)
//   anything else       -> "3 passed, 0 failed (filter: <filter, or all>)"
// The SDK is resolved from SDK_DIR (see sdk-worker.mjs).
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(path.resolve(process.env.SDK_DIR || '.'), 'package.json'));
const { betaTool } = require('@anthropic-ai/sdk/helpers/beta/json-schema');
const { ToolError } = require('@anthropic-ai/sdk/lib/tools/ToolError');

const PNG_1X1 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

export const runTestsTool = betaTool({
  name: 'run_tests',
  description: "Run the project's tests",
  inputSchema: {
    type: 'object',
    properties: { filter: { type: 'string' } },
  },
  run: async ({ filter }) => {
    const f = filter ?? 'all';
    if (f === 'fail') throw new ToolError(`1 failed: test_fail (filter: ${f})`);
    if (f === 'crash') throw new Error(`test runner crashed (filter: ${f})`);
    if (f === 'image') {
      return [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG_1X1 } }];
    }
    return `3 passed, 0 failed (filter: ${f})`;
  },
});

/**
 * The client entry, `simple-ipc/client` (src/client.ts): what it exports, and that it (and the
 * CLI's client commands) start as cheaply as a plain `node:net` client. Each start is a process of
 * its own, to see what loading a module loads (`process.moduleLoadList`).
 */

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as client from '../src/client.js';
import * as api from '../src/index.js';
import type { TestContext } from 'node:test';
import { ROOT, runProcess, tempDir, test } from './helpers.js';

const CLIENT = new URL('../src/client.js', import.meta.url).href;
const INDEX = new URL('../src/index.js', import.meta.url).href;
const CLI_MAIN = new URL('../cli/main.js', import.meta.url).href;

/**
 * The built-in modules that running `code` (an ES module's body) loads in a new process after
 * what a plain client script loads (the script file itself, Node's loader for it, `node:net`):
 * `NativeModule NAME` entries only.
 */
async function builtinsLoadedBy(t: TestContext, code: string): Promise<string[]> {
  const dir = tempDir(t);
  const file = join(dir, 'script.mjs');
  const result = join(dir, 'loaded.json');
  writeFileSync(
    file,
    `
    await import('node:net');
    const before = new Set(process.moduleLoadList);
    ${code}
    const loaded = process.moduleLoadList.filter((name) => !before.has(name));
    process.getBuiltinModule('node:fs').writeFileSync(${JSON.stringify(result)}, JSON.stringify(loaded));`,
  );
  const run = await runProcess(process.execPath, [file]);
  assert.equal(run.code, 0, run.stderr);
  return (JSON.parse(readFileSync(result, 'utf8')) as string[])
    .filter((name) => name.startsWith('NativeModule '))
    .map((name) => name.slice('NativeModule '.length));
}

test('the client entry exports the client, its errors and the wire constants, as the main entry does', () => {
  assert.deepEqual(Object.keys(client).sort(), [
    'ActiveState',
    'CONNECT_RETRY_INTERVAL_MS',
    'CONNECT_TIMEOUT_MS',
    'Connection',
    'DELIM_PKT',
    'DiagnosticsChannel',
    'ErrorCode',
    'FLUSH_PKT',
    'LARGE_PACKET_DATA_MAX',
    'LARGE_PACKET_MAX',
    'RESPONSE_END_PKT',
    'SOCKET_PATH_MAX',
    'SimpleIpcError',
    'USES_NAMED_PIPES',
    'connect',
    'getActiveState',
    'isSimpleIpcError',
    'pipeNameFor',
    'sendCommand',
    'tryConnect',
  ]);
  const main = api as Record<string, unknown>;
  for (const [name, value] of Object.entries(client)) {
    assert.equal(value, main[name], `${name} is the main entry's own`);
  }
});

test('importing the client entry loads no built-in module that a plain node:net script does not', async (t) => {
  assert.deepEqual(await builtinsLoadedBy(t, `await import(${JSON.stringify(CLIENT)});`), []);
});

test('importing the main entry loads no child_process, worker_threads, cluster, crypto or os', async (t) => {
  const loaded = await builtinsLoadedBy(t, `await import(${JSON.stringify(INDEX)});`);
  const heavy = loaded.filter((name) =>
    /^(child_process|worker_threads|cluster|crypto|os|dgram|fs\/promises|util)$/.test(name),
  );
  assert.deepEqual(heavy, []);
});

test("the CLI's call and status load only the client: no server module, no more built-ins", async (t) => {
  // What cli/people.js imports, followed through (type-only imports are gone by then).
  const loaded = new Set<string>();
  const walk = (file: string): void => {
    if (loaded.has(file)) return;
    loaded.add(file);
    const text = readFileSync(join(ROOT, 'dist', file), 'utf8');
    for (const [, target] of text.matchAll(/(?:from|import)\s*\(?\s*'(\.\.?\/[\w/.-]+\.js)'/g)) {
      walk(join(file, '..', target!));
    }
  };
  walk('cli/people.js');
  const fromSrc = [...loaded].filter((file) => file.startsWith('src/')).sort();
  assert.equal(fromSrc.includes('src/index.js'), false, 'people.js imports the client entry');
  for (const file of fromSrc) {
    assert.equal(/server|daemon|cluster|worker|lifecycle|lock|ownership/.test(file), false, file);
  }

  const missing = join(tempDir(t), 'none');
  for (const argv of [
    ['status', missing],
    ['call', missing, 'ping'],
  ]) {
    const run = `const { runCli } = await import(${JSON.stringify(CLI_MAIN)});
      // Output is dropped (the answer is the list of modules), its callbacks still called.
      const drop = (_chunk, encoding, done) => {
        (typeof encoding === 'function' ? encoding : done)?.();
        return true;
      };
      process.stdout.write = process.stderr.write = drop;
      await runCli(${JSON.stringify(argv)});
      process.exitCode = 0;`;
    // Only the argument parser (util.parseArgs), which the CLI uses.
    const loaded = await builtinsLoadedBy(t, run);
    assert.deepEqual(
      loaded.filter((name) => !name.startsWith('internal/util/parse_args/')),
      [],
      argv[0],
    );
  }
});

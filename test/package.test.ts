/**
 * The package as a user gets it: a copy of the project without its build is packed with `npm
 * pack` (so `prepack` must build it), the tarball is installed with npm into a new project
 * outside the repository, and that project uses it from ESM, CommonJS, TypeScript (nodenext and
 * bundler resolution) and through its `simple-ipc` bin. publint and arethetypeswrong check the
 * packed files. Nothing here needs the network: the package has no dependencies.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT, runProcess, type RunResult, tempDir, UNDER_WINE } from './helpers.js';

const MODULES = join(ROOT, 'node_modules');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
// Installing, building and packing take some seconds each on a loaded 2-core machine.
const STEP_MS = 120_000;

/** Runs `command` in `cwd` and fails with its output if it exits with anything but 0. */
async function run(command: string, args: readonly string[], cwd: string): Promise<RunResult> {
  const result = await runProcess(command, args, {
    cwd,
    timeoutMs: STEP_MS,
    shell: process.platform === 'win32',
    env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false' },
  });
  assert.equal(
    result.code,
    0,
    `${command} ${args.join(' ')} exited ${result.code} ${result.signal ?? ''}\n${result.stdout.toString()}\n${result.stderr}`,
  );
  return result;
}

/** Runs a script with this same runtime in the consumer project; resolves with its result. */
function node(args: readonly string[], cwd: string): Promise<RunResult> {
  return runProcess(process.execPath, args, { cwd, timeoutMs: STEP_MS });
}

// Where everything happens: removed after the file, whatever happened.
const work = mkdtempSync(join(tmpdir(), 'sipc-package-'));
const app = join(work, 'app');
let tarball = '';

// Under Wine only Node's Windows executable is installed, no npm to pack and install with;
// packing is the same on every platform, and runs on Linux here and on Windows in the GitHub
// workflow.
const skipUnderWine = UNDER_WINE
  ? 'under Wine there is no Windows npm to pack and install with'
  : false;

before(
  async () => {
    if (skipUnderWine !== false) return;
    // A copy of the project as a clone has it: no build, no node_modules (linked for the build
    // tools only), no git metadata.
    const copy = join(work, 'project');
    const skip = new Set(['node_modules', 'dist', '.git'].map((name) => join(ROOT, name)));
    cpSync(ROOT, copy, {
      recursive: true,
      filter: (from) => !skip.has(from.replace(/[\\/]+$/, '')) && !from.endsWith('.tgz'),
    });
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'), 'junction');
    const packed = await run(NPM, ['pack', '--silent', '--pack-destination', work], copy);
    tarball = join(work, packed.stdout.toString().trim().split('\n').pop()!);

    mkdirSync(app);
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
    );
    await run(NPM, ['install', '--offline', '--no-audit', '--no-fund', tarball], app);
    // The TypeScript consumer needs Node's types, as any Node project has them.
    mkdirSync(join(app, 'node_modules', '@types'));
    symlinkSync(
      join(ROOT, 'node_modules', '@types', 'node'),
      join(app, 'node_modules', '@types', 'node'),
      'junction',
    );
  },
  { timeout: 4 * STEP_MS },
);
after(() => rmSync(work, { recursive: true, force: true }));

describe('the packed package', { timeout: 4 * STEP_MS, skip: skipUnderWine }, () => {
  test('holds the built library, its types, the CLI and nothing of the tests', () => {
    const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
    for (const file of [
      'package/dist/src/index.js',
      'package/dist/src/index.d.ts',
      'package/dist/cli/main.js',
      'package/bin/simple-ipc.js',
      'package/README.md',
      'package/LICENSE',
    ]) {
      assert.ok(listing.includes(file), `${file} is packed`);
    }
    assert.deepEqual(
      listing.filter((file) => /^package\/(dist\/)?(test|bench|examples)\//.test(file)),
      [],
      'no tests, benchmarks or examples',
    );
  });

  test('ESM: import works and a round trip runs', async (t) => {
    const dir = tempDir(t);
    const script = `
      import { startServer, sendCommand, SimpleIpcError } from 'simple-ipc';
      const path = ${JSON.stringify(join(dir, 's'))};
      const server = await startServer(path, async (request, reply) => { await reply('esm ' + request); });
      const answer = await sendCommand(path, 'ok');
      await server.stop();
      console.log(answer.toString(), typeof SimpleIpcError);`;
    const result = await node(['--input-type=module', '-e', script], app);
    assert.equal(result.stderr, '');
    assert.equal(result.stdout.toString(), 'esm ok function\n');
  });

  test('CommonJS: require() works where the runtime can load ES modules that way', async (t) => {
    const dir = tempDir(t);
    const script = `
      const { startServer, sendCommand } = require('simple-ipc');
      const path = ${JSON.stringify(join(dir, 's'))};
      (async () => {
        const server = await startServer(path, async (request, reply) => { await reply('cjs ' + request); });
        const answer = await sendCommand(path, 'ok');
        await server.stop();
        console.log(answer.toString());
      })();`;
    const result = await node(['--input-type=commonjs', '-e', script], app);
    const features = process.features as { require_module?: boolean };
    if (features.require_module === true) {
      assert.equal(result.stdout.toString(), 'cjs ok\n', result.stderr);
    } else {
      // An older runtime refuses with its own error, naming the fix; our code never runs.
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /ERR_REQUIRE_ESM|require\(\) of ES Module/);
      assert.doesNotMatch(result.stderr, /node_modules[\\/]simple-ipc[\\/]dist[^\n]*:\d+:\d+/);
    }
  });

  const consumer = `
import { type Server, startServer, sendCommand, SimpleIpcError, ActiveState } from 'simple-ipc';
const server: Server = await startServer('/tmp/never-started', async (request, reply) => {
  const text: string = request.toString();
  await reply(text);
});
const answer: Buffer = await sendCommand('/tmp/never-started', 'x', { timeout: 10 });
const state: 'listening' | 'not-listening' | 'invalid-path' | 'path-not-found' | 'other-error' =
  ActiveState.LISTENING;
const isError: boolean = new Error() instanceof SimpleIpcError;
// @ts-expect-error the types are real: a request handler is required
await startServer('/tmp/never-started');
export { server, answer, state, isError };
`;
  for (const resolution of ['nodenext', 'bundler'] as const) {
    test(`TypeScript (moduleResolution ${resolution}) type-checks against the shipped types`, async () => {
      const dir = join(app, `ts-${resolution}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'consumer.ts'), consumer);
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            module: resolution === 'nodenext' ? 'nodenext' : 'preserve',
            moduleResolution: resolution,
            target: 'ES2022',
            strict: true,
            noEmit: true,
            types: ['node'],
            typeRoots: [join(app, 'node_modules', '@types')],
          },
          files: ['consumer.ts'],
        }),
      );
      await run(
        process.execPath,
        [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir],
        app,
      );
    });
  }

  test('the bin runs: npx simple-ipc --version, then run-daemon, send and stop-daemon', async (t) => {
    const version = await run(NPM, ['exec', '--no', '--', 'simple-ipc', '--version'], app);
    const expected = JSON.parse(
      execFileSync(process.execPath, ['-p', 'JSON.stringify(require("./package.json").version)'], {
        cwd: ROOT,
        encoding: 'utf8',
      }),
    ) as string;
    assert.equal(version.stdout.toString(), `${expected}\n`);

    const path = join(tempDir(t), 'daemon');
    const bin = join(app, 'node_modules', 'simple-ipc', 'bin', 'simple-ipc.js');
    const daemon = runProcess(process.execPath, [bin, 'run-daemon', `--name=${path}`], {
      cwd: app,
      timeoutMs: STEP_MS,
    });
    const send = async (): Promise<RunResult> =>
      node([bin, 'send', `--name=${path}`, '--token=ping'], app);
    let answer = await send();
    for (let tries = 0; answer.code !== 0 && tries < 100; tries++) answer = await send();
    assert.equal(answer.stdout.toString(), 'pong\n', answer.stderr);
    assert.equal((await node([bin, 'stop-daemon', `--name=${path}`], app)).code, 0);
    assert.equal((await daemon).code, 0);
  });

  test('publint and arethetypeswrong find nothing wrong', async () => {
    const installed = join(app, 'node_modules', 'simple-ipc');
    const lint = await run(
      process.execPath,
      [join(MODULES, 'publint', 'src', 'cli.js'), 'run', '--strict', installed],
      app,
    );
    assert.match(lint.stdout.toString(), /All good/);
    // CommonJS code that requires this ES module package works on every Node version the
    // package supports (engines: require(esm) is on from 20.19 and 22.12), as the CommonJS test
    // above shows; that is the one rule arethetypeswrong still applies from before that.
    await run(
      process.execPath,
      [
        join(MODULES, '@arethetypeswrong', 'cli', 'dist', 'index.js'),
        tarball,
        '--ignore-rules',
        'cjs-resolves-to-esm',
      ],
      app,
    );
  });
});

/**
 * The package as a user gets it: the project is packed with `npm pack` from the build that
 * `npm test` has just made (`prepack` runs that same build, so packing again without scripts
 * gives the same files without compiling twice), the tarball is installed with npm into a new project
 * outside the repository, and that project uses it from ESM, CommonJS, TypeScript (nodenext and
 * bundler resolution) and through its `simple-ipc` bin. publint and arethetypeswrong check the
 * packed files. The documents a user gets with it (the README, docs/) link only to files it holds.
 * Nothing here needs the network: the package has no dependencies.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { posix } from 'node:path';
import { after, before, describe } from 'node:test';
import {
  ROOT,
  runProcess,
  type RunResult,
  tempDir,
  testWithDeadline,
  UNDER_WINE,
} from './helpers.js';

const MODULES = join(ROOT, 'node_modules');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
// Installing, building and packing take some seconds each on a loaded 2-core machine.
const STEP_MS = 120_000;
// Each test packs, installs or runs the package: a few steps.
const test = testWithDeadline(4 * STEP_MS);

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
/** The files of the tarball, without the leading `package/`. */
let packed = new Set<string>();
/** What `npm install` of the tarball wrote on stderr. */
let installStderr = '';

// Under Wine only Node's Windows executable is installed, no npm to pack and install with;
// packing is the same on every platform, and runs on Linux here and on Windows in the GitHub
// workflow.
const skipUnderWine = UNDER_WINE
  ? 'under Wine there is no Windows npm to pack and install with'
  : false;

before(
  async () => {
    if (skipUnderWine !== false) return;
    // The build npm test made (it starts from an empty dist/, so nothing stale is packed).
    if (!existsSync(join(ROOT, 'dist', 'src', 'index.js'))) {
      throw new Error('no build in dist/: run npm run build first');
    }
    const pack = await run(
      NPM,
      ['pack', '--silent', '--ignore-scripts', '--pack-destination', work],
      ROOT,
    );
    tarball = join(work, pack.stdout.toString().trim().split('\n').pop()!);
    packed = new Set(
      execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
        .split('\n')
        .filter((file) => file.startsWith('package/'))
        .map((file) => file.slice('package/'.length)),
    );

    mkdirSync(app);
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
    );
    const install = await run(
      NPM,
      ['install', '--offline', '--no-audit', '--no-fund', tarball],
      app,
    );
    installStderr = install.stderr;
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
    for (const file of [
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/client.js',
      'dist/src/client.d.ts',
      'dist/cli/main.js',
      'bin/simple-ipc.js',
      'README.md',
      'LICENSE',
    ]) {
      assert.ok(packed.has(file), `${file} is packed`);
    }
    // The documents and the example sources they link to are shipped; tests, benchmark code
    // and built examples are not.
    assert.deepEqual(
      [...packed].filter(
        (file) =>
          /^(dist\/)?test\//.test(file) ||
          /^dist\/(bench|examples)\//.test(file) ||
          (file.startsWith('bench/') && !file.endsWith('.svg')) ||
          (file.startsWith('examples/') && !/\.(ts|md)$/.test(file)),
      ),
      [],
      'no tests, benchmark code or built examples',
    );
  });

  test('package.json says where the project lives: repository, bugs, homepage', () => {
    // npm shows them on the package's page and `npm repo` / `npm bugs` open them.
    const manifest = JSON.parse(
      readFileSync(join(app, 'node_modules', 'simple-ipc', 'package.json'), 'utf8'),
    ) as {
      repository?: { type?: string; url?: string };
      bugs?: { url?: string };
      homepage?: string;
    };
    const home = 'https://github.com/simple-ipc/simple-ipc-node';
    assert.deepEqual(manifest.repository, { type: 'git', url: `git+${home}.git` });
    assert.deepEqual(manifest.bugs, { url: `${home}/issues` });
    assert.equal(manifest.homepage, `${home}#readme`);
  });

  test('packing leaves no tarball in the project, and git would ignore one', (t) => {
    // The package is packed into a temporary directory; one packed by hand must not be committed.
    const git = (args: string[]): string | undefined => {
      try {
        return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: 'pipe' });
      } catch {
        return undefined;
      }
    };
    if (git(['rev-parse', '--git-dir']) === undefined) {
      t.skip('not in a git checkout');
      return;
    }
    assert.equal(git(['ls-files', '--others', '--exclude-standard', '*.tgz']), '');
    assert.equal(
      git(['check-ignore', '--no-index', 'simple-ipc-0.1.0.tgz'])?.trim(),
      'simple-ipc-0.1.0.tgz',
      '*.tgz is in .gitignore',
    );
  });

  test('packing from a clone builds first: prepack is the build this file packs from', () => {
    // The tarball above was packed with --ignore-scripts from npm test's build; npm pack and
    // npm publish run prepack, which must be that same build.
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    assert.equal(manifest.scripts['prepack'], 'npm run build --silent');
    assert.match(
      manifest.scripts['build']!,
      /tsc -p tsconfig\.json && node scripts\/bundle-client\.mjs$/,
    );
    assert.ok(packed.has('dist/src/index.d.ts.map'), 'declaration maps are packed');
    assert.ok(packed.has('dist/src/client-core.js'), "the client's bundle is packed");
  });

  test('installing the tarball prints no npm warning', () => {
    // A `prepare` script in the published package.json makes npm 11 warn that the package "has
    // install scripts not yet covered by allowScripts" (and it could not run in an installed
    // copy anyway: it needs tsc and the tsconfig, neither shipped).
    assert.doesNotMatch(installStderr, /npm warn/i, installStderr);
  });

  test('every relative link of a shipped document resolves to a shipped file', () => {
    // The README is the package's front page, and all a user who installed the package has: it
    // sends readers to docs/security.md, docs/api.md and the rest, which link on in turn.
    const documents = [...packed].filter((file) => file.endsWith('.md'));
    assert.ok(documents.includes('docs/api.md'), 'docs/ is shipped');
    const broken: string[] = [];
    let links = 0;
    for (const document of documents) {
      const text = readFileSync(join(app, 'node_modules', 'simple-ipc', document), 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target!) || target!.startsWith('#')) continue;
        links++;
        const file = posix.normalize(
          posix.join(posix.dirname(document), target!.replace(/#.*$/, '')),
        );
        if (!packed.has(file)) broken.push(`${document} -> ${target}`);
      }
    }
    assert.ok(links > 10, 'the documents have relative links');
    assert.deepEqual(broken, [], 'links to files the package does not contain');
  });

  test("the CLI's help names only documents the package contains", async () => {
    // `simple-ipc serve --help` and `simple-ipc help socket-dir` send the reader to
    // docs/security.md.
    const bin = join(app, 'node_modules', 'simple-ipc', 'bin', 'simple-ipc.js');
    const texts = await Promise.all(
      [['--help'], ['help', 'serve'], ['help', 'socket-dir'], ['help', 'call']].map((args) =>
        node([bin, ...args], app),
      ),
    );
    const named = new Set(
      texts.flatMap((r) =>
        [...r.stdout.toString().matchAll(/\bdocs\/[\w.-]+\.md\b/g)].map((m) => m[0]),
      ),
    );
    assert.ok(named.has('docs/security.md'), 'the help names docs/security.md');
    const missing = [...named].filter((doc) => !packed.has(doc));
    assert.deepEqual(missing, [], 'documents named by the help but not in the package');
  });

  test('ESM: import works, of the package and of simple-ipc/client, and round trips run', async (t) => {
    const dir = tempDir(t);
    const script = `
      import { startServer, sendCommand, SimpleIpcError } from 'simple-ipc';
      import * as client from 'simple-ipc/client';
      const path = ${JSON.stringify(join(dir, 's'))};
      const server = await startServer(path, async (request, reply) => { await reply('esm ' + request); });
      const answer = await sendCommand(path, 'ok');
      const fromClient = await client.sendCommand(path, 'client');
      await server.stop();
      console.log(answer.toString(), fromClient.toString(), client.SimpleIpcError === SimpleIpcError);`;
    const result = await node(['--input-type=module', '-e', script], app);
    assert.equal(result.stderr, '');
    assert.equal(result.stdout.toString(), 'esm ok esm client true\n');
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
import { type Connection, connect, ErrorCode, LARGE_PACKET_MAX } from 'simple-ipc/client';
const server: Server = await startServer('/tmp/never-started', async (request, reply) => {
  const text: string = request.toString();
  await reply(text);
});
const answer: Buffer = await sendCommand('/tmp/never-started', 'x', { timeout: 10 });
const state: 'listening' | 'not-listening' | 'invalid-path' | 'path-not-found' | 'other-error' =
  ActiveState.LISTENING;
const isError: boolean = new Error() instanceof SimpleIpcError;
const connection: Connection = await connect('/tmp/never-started', { timeout: 10 });
const code: 'ERR_IPC_PATH_NOT_FOUND' = ErrorCode.PATH_NOT_FOUND;
const max: number = LARGE_PACKET_MAX;
// @ts-expect-error the client entry has no server
import('simple-ipc/client').then((m) => m.startServer);
// @ts-expect-error the types are real: a request handler is required
await startServer('/tmp/never-started');
export { server, answer, state, isError, connection, code, max };
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
            // The nodenext check is a user's with skipLibCheck off: our shipped .d.ts files are
            // type-checked in full there (and @types/node and TypeScript's own lib with them,
            // most of its 5 CPU-seconds). The bundler check is about resolution through the
            // exports map, which skipLibCheck does not skip (an entry it cannot resolve is an
            // error in consumer.ts); the .d.ts files it reaches are the same ones.
            skipLibCheck: resolution === 'bundler',
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
    // Both read the tarball itself (given a directory, publint would pack it again with npm).
    const lint = await run(
      process.execPath,
      [join(MODULES, 'publint', 'src', 'cli.js'), 'run', '--strict', tarball],
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

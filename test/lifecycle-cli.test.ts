/**
 * The socket lifecycle as a user meets it: real `run-daemon` processes from the CLI, killed,
 * raced, robbed, and stopped with `stop-daemon`; and, when Git's `test-tool` is there
 * (test/git-build.ts), the same paths shared with Git's own client and server.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { gitEnv, TEST_TOOL, TEST_TOOL_SKIP } from './git-build.js';
import { SOCKET_PATH_MAX } from '../src/address.js';
import {
  CLI,
  listeningBy,
  LOCK_FILE_ONLY,
  pathOfLength,
  PROCESS_SLOWNESS,
  runCli,
  runProcess,
  serverPath,
  startRaceTest,
  tempDir,
  testWithDeadline,
  unixOnly,
  until,
} from './helpers.js';

// Each test runs the CLI, often several servers at once.
const test = testWithDeadline(60_000);

/** A `run-daemon` process running in the background, killed when the test ends. */
interface Daemon {
  readonly child: ChildProcess;
  /** Resolves when it exits. */
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** What it wrote on stderr so far. */
  stderr(): string;
}

function spawnDaemon(
  t: TestContext,
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Daemon {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exit, stderr: () => stderr };
}

function runDaemon(t: TestContext, path: string): Daemon {
  return spawnDaemon(t, process.execPath, [CLI, 'run-daemon', `--name=${path}`]);
}

function running(daemon: Daemon): boolean {
  return daemon.child.exitCode === null && daemon.child.signalCode === null;
}

/** Waits until something listens at `path`; fails if the daemon exits first. */
function listening(path: string, daemon: Daemon): Promise<void> {
  return listeningBy(path, daemon.child, () => daemon.stderr());
}

/**
 * Waits until `dir` holds exactly `names`: a server listens a moment before it has removed its
 * lock and temporary directory.
 */
async function settled(dir: string, names: readonly string[]): Promise<void> {
  const want = [...names].sort().join('/');
  // On time-out, the assertion below shows what is there instead.
  await until(
    `${dir} to hold ${want}`,
    () => readdirSync(dir).sort().join('/') === want,
    5000,
    10,
  ).catch(() => {});
  assert.deepEqual(readdirSync(dir).sort(), [...names].sort());
}

/** Resolves with the exit, or undefined if it does not come within `ms`. */
function exitWithin(daemon: Daemon, ms: number): Promise<{ code: number | null } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms, undefined);
  });
  return Promise.race([daemon.exit, late]).finally(() => clearTimeout(timer));
}

/**
 * How soon a robbed server has exited: docs/lifecycle.md promises it stops "within about a
 * second" (file-system events make it milliseconds; a check every second bounds it when events
 * are lost), plus the time a process takes to exit on a loaded machine.
 */
const THEFT_NOTICED_MS = 1000 + 500 * PROCESS_SLOWNESS;

async function send(path: string, token: string): Promise<string> {
  const result = await runCli(['send', `--name=${path}`, `--token=${token}`]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.toString();
}

async function stop(path: string, daemon: Daemon): Promise<void> {
  const result = await runCli(['stop-daemon', `--name=${path}`]);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(await daemon.exit, { code: 0, signal: null });
}

/** `base/.../name`, padded with subdirectories to exactly `length` bytes. */
test(
  "a killed server's socket is replaced by the next one",
  { skip: unixOnly('dead socket files (a pipe vanishes with its last handle)') },
  async (t) => {
    const { dir, path } = serverPath(t);
    const first = runDaemon(t, path);
    await listening(path, first);
    await settled(dir, ['s']);
    const firstIno = lstatSync(path).ino;
    first.child.kill('SIGKILL');
    await first.exit;
    // The dead socket is still there; nothing answers.
    assert.ok(lstatSync(path).isSocket());
    const probe = await runCli(['is-active', `--name=${path}`]);
    assert.equal(probe.code, 1);
    assert.match(probe.stderr, /no server listening/);

    const second = runDaemon(t, path);
    await listening(path, second);
    assert.notEqual(lstatSync(path).ino, firstIno);
    assert.equal(lstatSync(path).mode & 0o777, 0o600);
    assert.equal(await send(path, 'ping'), 'pong\n');
    await stop(path, second);
    assert.deepEqual(readdirSync(dir), []);
  },
);

test(
  'a stale lock is broken: dead owner, or no owner and old',
  { skip: LOCK_FILE_ONLY },
  async (t) => {
    const { dir, path } = serverPath(t);
    const gone = await runProcess(process.execPath, ['-e', 'console.log(process.pid)']);
    writeFileSync(`${path}.lock`, gone.stdout);
    const daemon = runDaemon(t, path);
    await listening(path, daemon);
    await settled(dir, ['s']); // the lock is gone right after start-up
    assert.equal(await send(path, 'ping'), 'pong\n');
    await stop(path, daemon);

    // Git's own servers write no pid; such a lock counts as stale after a few seconds.
    writeFileSync(`${path}.lock`, '');
    const old = Date.now() / 1000 - 60;
    utimesSync(`${path}.lock`, old, old);
    const again = runDaemon(t, path);
    await listening(path, again);
    await settled(dir, ['s']);
    await stop(path, again);
    assert.deepEqual(readdirSync(dir), []);
  },
);

test('a fresh lock is respected, with a clear error', { skip: LOCK_FILE_ONLY }, async (t) => {
  const { dir, path } = serverPath(t);
  writeFileSync(`${path}.lock`, `${process.pid}\n`);
  const held = await runCli(['run-daemon', `--name=${path}`]);
  assert.equal(held.code, 1);
  assert.match(held.stderr, /^error: could not start server on: '.*': another server is starting/);
  assert.match(held.stderr, new RegExp(`lock file '.*s\\.lock' is held by process ${process.pid}`));
  // The owner runs (it is this process): what to do says so, and when removing it is right.
  assert.match(
    held.stderr,
    /which is running \(try again once it has started its server; if process \d+ is no server starting here, stop it or remove the lock file\)/,
  );
  assert.equal(readFileSync(`${path}.lock`, 'utf8'), `${process.pid}\n`);
  assert.deepEqual(readdirSync(dir), ['s.lock']);

  writeFileSync(`${path}.lock`, ''); // fresh, and no owner: a Git server starting
  const git = await runCli(['run-daemon', `--name=${path}`]);
  assert.equal(git.code, 1);
  assert.match(git.stderr, /lock file '.*' is held, naming no owner .*broken once it is 5 s old/);
  assert.deepEqual(readdirSync(dir), ['s.lock']);
});

startRaceTest(
  test,
  'servers started at once: exactly one serves, the others say "already in use" (or "starting")',
  4,
  async (t, path, round) => {
    const daemons = Array.from({ length: 4 }, () => runDaemon(t, path));
    // On time-out, the assertion below says how many still run.
    await until('all but one to exit', () => daemons.filter(running).length <= 1, 20_000, 20).catch(
      () => {},
    );
    const winners = daemons.filter(running);
    assert.equal(winners.length, 1, `round ${round}`);
    const winner = winners[0]!;
    for (const loser of daemons.filter((d) => d !== winner)) {
      assert.deepEqual(await loser.exit, { code: 1, signal: null });
      // Git's words when the winner already serves; the lock's when the loser's lock wait ran
      // out first (a loaded machine). Both are right.
      const stderr = loser.stderr();
      if (!/another server is starting here: the lock file/.test(stderr)) {
        assert.equal(stderr, `error: socket/pipe already in use: '${path}'\n`);
      }
    }
    await listening(path, winner);
    return { stop: () => stop(path, winner) };
  },
);

test(
  "a stolen socket is noticed within about a second, and the thief's is left",
  { skip: unixOnly('socket theft: a pipe has no file to replace') },
  async (t) => {
    const { dir, path } = serverPath(t);
    const daemon = runDaemon(t, path);
    await listening(path, daemon);

    // Another server, answering every request (ended by a flush) with `thief`.
    const thief = createServer((c) => {
      let request = '';
      c.on('error', () => {});
      c.on('data', (chunk: Buffer) => {
        request += chunk.toString('latin1');
        if (request.endsWith('0000')) c.end('0009thief0000');
      });
    });
    await new Promise<void>((resolve) => thief.listen(join(dir, 'thief'), resolve));
    t.after(() => new Promise((resolve) => thief.close(resolve)));
    renameSync(join(dir, 'thief'), path);
    const ino = lstatSync(path).ino;
    const exited = await exitWithin(daemon, THEFT_NOTICED_MS);
    assert.ok(exited !== undefined, 'the robbed server still runs');
    assert.equal(lstatSync(path).ino, ino);
    assert.equal(await send(path, 'anything'), 'thief\n');
    assert.deepEqual(readdirSync(dir), ['s']);
  },
);

test(
  'a removed socket is noticed too, and nothing is put back',
  { skip: unixOnly('socket theft: a pipe has no file to remove') },
  async (t) => {
    const { dir, path } = serverPath(t);
    const daemon = runDaemon(t, path);
    await listening(path, daemon);
    unlinkSync(path);
    assert.ok(
      (await exitWithin(daemon, THEFT_NOTICED_MS)) !== undefined,
      'the robbed server still runs',
    );
    assert.deepEqual(readdirSync(dir), []);
  },
);

test(
  'a regular file, a directory or a symbolic link at the path is left intact',
  { skip: unixOnly('files at the path (a pipe name never touches the file system)') },
  async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'file'), 'precious');
    mkdirSync(join(dir, 'dir'));
    symlinkSync(join(dir, 'file'), join(dir, 'link'));
    for (const [name, what] of [
      ['file', 'a regular file'],
      ['dir', 'a directory'],
      ['link', 'a symbolic link'],
    ] as const) {
      const result = await runCli(['run-daemon', `--name=${join(dir, name)}`]);
      assert.equal(result.code, 1, name);
      assert.equal(
        result.stderr,
        `error: could not start server on: '${join(dir, name)}': '${join(dir, name)}' is ${what} of yours, not a socket; it is left alone (remove it if nothing of yours needs it, or choose another path)\n`,
      );
    }
    assert.equal(readFileSync(join(dir, 'file'), 'utf8'), 'precious');
    assert.ok(lstatSync(join(dir, 'dir')).isDirectory());
    assert.equal(readlinkSync(join(dir, 'link')), join(dir, 'file'));
    assert.deepEqual(readdirSync(dir).sort(), ['dir', 'file', 'link']);
  },
);

test(
  'a 150-byte path is served at exactly that path, owner-only',
  { skip: unixOnly('socket-address length limits and modes') },
  async (t) => {
    const path = pathOfLength(tempDir(t), 150, 'long.sock');
    const parent = dirname(path);
    const daemon = runDaemon(t, path);
    await listening(path, daemon);
    const stats = lstatSync(path);
    assert.ok(stats.isSocket());
    assert.equal(stats.mode & 0o777, 0o600);
    await settled(parent, ['long.sock']);
    assert.equal(existsSync(path.slice(0, SOCKET_PATH_MAX)), false);
    assert.equal((await runCli(['is-active', `--name=${path}`])).code, 0);
    assert.equal(await send(path, 'ping'), 'pong\n');
    await stop(path, daemon);
    assert.deepEqual(readdirSync(parent), []);
  },
);

test(
  'the mode can be widened on purpose (serve --mode=660)',
  { skip: unixOnly('socket modes (a pipe gets a default DACL: docs/lifecycle.md)') },
  async (t) => {
    const { dir, path } = serverPath(t);
    const args = [CLI, 'serve', path, '--exec=cat', '--mode=660', '--quiet'];
    const server = spawnDaemon(t, process.execPath, args);
    await listening(path, server);
    assert.equal(lstatSync(path).mode & 0o777, 0o660);
    assert.equal(await send(path, 'shared'), 'shared\n');
    server.child.kill('SIGTERM');
    assert.deepEqual(await server.exit, { code: 0, signal: null });
    assert.deepEqual(readdirSync(dir), []);
  },
);

test('stop-daemon removes our own socket and nothing else', async (t) => {
  const { dir, path } = serverPath(t);
  writeFileSync(join(dir, 's.keep'), 'x');
  const daemon = runDaemon(t, path);
  await listening(path, daemon);
  await stop(path, daemon);
  assert.deepEqual(readdirSync(dir), ['s.keep']);
});

// Git's C test-tool as a peer, from SIMPLE_IPC_GIT_TEST_TOOL or the Git build beside the
// project (test/git-build.ts).
const GIT = TEST_TOOL;
const gitSkip = TEST_TOOL_SKIP;

async function git(args: readonly string[]): Promise<{ code: number | null; out: string }> {
  const result = await runProcess(GIT!, ['simple-ipc', ...args], { env: gitEnv() });
  return { code: result.code, out: result.stdout.toString() + result.stderr };
}

test("Git's client reaches our server at a 150-byte path", { skip: gitSkip }, async (t) => {
  const path = pathOfLength(tempDir(t), 150, 'ours.sock');
  const daemon = runDaemon(t, path);
  await listening(path, daemon);
  assert.deepEqual(await git(['send', `--name=${path}`, '--token=ping']), {
    code: 0,
    out: 'pong\n',
  });
  assert.deepEqual(await git(['sendbytes', `--name=${path}`, '--bytecount=70000', '--byte=Q']), {
    code: 0,
    out: 'sent:Q00070000 rcvd:Q00070000\n',
  });
  // Git's server refuses our live one, as ours refuses Git's.
  const refused = await git(['run-daemon', `--name=${path}`]);
  assert.equal(refused.code, 1);
  assert.match(refused.out, /socket\/pipe already in use/);
  assert.deepEqual(await git(['stop-daemon', `--name=${path}`]), { code: 0, out: '' });
  assert.deepEqual(await daemon.exit, { code: 0, signal: null });
  assert.deepEqual(readdirSync(dirname(path)), []);
});

test(
  "our client and server next to Git's server at a 150-byte path",
  {
    skip: gitSkip,
  },
  async (t) => {
    const path = pathOfLength(tempDir(t), 150, 'git.sock');
    const gitServer = spawnDaemon(
      t,
      GIT!,
      ['simple-ipc', 'run-daemon', `--name=${path}`],
      gitEnv(),
    );
    await listening(path, gitServer);
    const ino = lstatSync(path).ino;
    assert.equal(await send(path, 'ping'), 'pong\n');

    // Our server never replaces a live Git server.
    const refused = await runCli(['run-daemon', `--name=${path}`]);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, `error: socket/pipe already in use: '${path}'\n`);
    assert.equal(lstatSync(path).ino, ino);
    assert.equal(await send(path, 'ping'), 'pong\n');

    // A killed Git server's socket is replaced by ours.
    gitServer.child.kill('SIGKILL');
    await gitServer.exit;
    const ours = runDaemon(t, path);
    await listening(path, ours);
    assert.notEqual(lstatSync(path).ino, ino);
    assert.deepEqual(await git(['send', `--name=${path}`, '--token=ping']), {
      code: 0,
      out: 'pong\n',
    });
    await stop(path, ours);
    assert.deepEqual(readdirSync(dirname(path)), []);
    assert.equal(basename(path), 'git.sock');
  },
);

/**
 * The commands for people (`status`, `call`, `serve`, help, version), run as real processes.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import type { TestContext } from 'node:test';
import { helpFor, PROGRAM_HELP } from '../cli/help.js';
import { connect, getActiveState, startServer } from '../src/index.js';
import {
  CAT_COMMAND,
  CLI,
  delay,
  execCommand,
  killAndWait,
  PROCESS_SLOWNESS,
  ROOT,
  runCli,
  runProcess,
  socketGone,
  testWithDeadline,
  unixOnly,
  until,
  UPPER_COMMAND,
} from './helpers.js';

// Each test runs the CLI, often several times.
const test = testWithDeadline(60_000);

const WINDOWS = process.platform === 'win32';

const COUNT = execCommand(
  'wc -c',
  'let n = 0; process.stdin.on(`data`, (d) => (n += d.length)).on(`end`, () => console.log(n))',
);

/** Runs each command line at once; each must be a usage error (exit 129) matching `pattern`. */
async function usageErrors(lines: string[][], pattern: RegExp): Promise<void> {
  const results = await Promise.all(lines.map((args) => runCli(args)));
  results.forEach((r, i) => {
    assert.equal(r.code, 129, lines[i]!.join(' '));
    assert.match(r.stderr, pattern, lines[i]!.join(' '));
  });
}

// Processes started by the current test (tests in a file run one after another).
const children = new Set<ChildProcess>();

/** Counts `child` as the current test's: it is killed before the test's directory goes. */
function track(child: ChildProcess): void {
  children.add(child);
}

/**
 * A temp dir for one test. At the end the test's processes are killed and waited for first,
 * so that none of them still works in the directory while it is removed.
 */
function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sipc-people-'));
  t.after(async () => {
    const running = [...children];
    children.clear();
    try {
      await Promise.all(running.map(killAndWait));
    } finally {
      rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    }
  });
  return dir;
}

interface Serving {
  child: ChildProcess;
  exited: Promise<number | null>;
  stderr: () => string;
}

/** Runs `simple-ipc serve PATH ...args` and resolves once it listens. Killed after the test. */
async function serve(path: string, args: readonly string[]): Promise<Serving> {
  const child = spawn(process.execPath, [CLI, 'serve', path, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  track(child);
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  // The line comes once the signal handlers are in place too.
  await until('the server to listen', () => {
    if (gone) assert.fail(`serve exited early: ${stderr}`);
    return stderr.includes(`listening at '${path}'`);
  });
  assert.equal(await getActiveState(path), 'listening');
  return { child, exited, stderr: () => stderr };
}

test(
  'socket-dir prints a directory of ours with mode 0700, or says why it is not safe',
  {
    skip: unixOnly('directory owners and modes'),
  },
  async (t) => {
    const base = tempDir(t);
    const env = { ...process.env, TMPDIR: base, XDG_RUNTIME_DIR: '' };
    const r = await runCli(['socket-dir'], { env });
    assert.equal(r.code, 0, r.stderr);
    const dir = r.stdout.toString();
    assert.equal(dir, `${join(base, `simple-ipc-${process.geteuid!()}`)}\n`);
    assert.equal(lstatSync(dir.trim()).mode & 0o777, 0o700);
    chmodSync(dir.trim(), 0o777);
    const unsafe = await runCli(['socket-dir'], { env });
    assert.equal(unsafe.code, 1);
    assert.match(unsafe.stderr, /^error: the per-user socket directory .* has mode 0777, not 0700/);
    assert.equal(unsafe.stdout.length, 0);
    const usage = await runCli(['socket-dir', 'extra'], { env });
    assert.equal(usage.code, 129);
  },
);

test(
  'socket-dir never prints a relative directory for a relative XDG_RUNTIME_DIR',
  { skip: unixOnly('XDG_RUNTIME_DIR') },
  async (t) => {
    // The XDG Base Directory specification: "All paths set in these environment variables
    // must be absolute. If an implementation encounters a relative path in any of these
    // variables it should consider the path invalid and ignore it." A relative socket
    // directory names a different socket from every working directory: `serve` started in one
    // folder and `call` run in another never meet.
    const cwd = tempDir(t);
    mkdirSync(join(cwd, 'runtime'), { mode: 0o700 });
    const r = await runCli(['socket-dir'], {
      cwd,
      env: { ...process.env, XDG_RUNTIME_DIR: 'runtime' },
    });
    if (r.code === 0) {
      const dir = r.stdout.toString().trim();
      assert.ok(isAbsolute(dir), `socket-dir printed the relative path '${dir}'`);
    } else {
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /XDG_RUNTIME_DIR/);
    }
  },
);

test('--help, help COMMAND, --version, and no command at all', async () => {
  const program = await runCli(['--help']);
  assert.equal(program.code, 0);
  assert.match(program.stdout.toString(), /Commands:[\s\S]*serve PATH --exec[\s\S]*Examples:/);
  const bare = await runCli([]);
  assert.equal(bare.code, 129);
  assert.match(bare.stderr, /Usage: simple-ipc <command>/);

  const helps = await Promise.all(
    ['status --help', 'call --help', 'serve --help', 'serve -h', 'help call', 'socket-dir -h'].map(
      (line) => runCli(line.split(' ')),
    ),
  );
  for (const [i, command] of ['status', 'call', 'serve', 'serve', 'call', 'socket-dir'].entries()) {
    const r = helps[i]!;
    assert.equal(r.code, 0, command);
    assert.match(
      r.stdout.toString(),
      new RegExp(`^usage: simple-ipc ${command}\\b[\\s\\S]*Examples:`),
    );
  }
  assert.deepEqual(helps[4]!.stdout, helps[1]!.stdout, "'help call' is 'call --help'");
  const testTool = await runCli(['help', 'sendbytes']);
  assert.equal(testTool.code, 0);
  assert.match(testTool.stdout.toString(), /^usage: simple-ipc sendbytes[\s\S]*Example:/);
  const unknown = await runCli(['help', 'nope']);
  assert.equal(unknown.code, 129);
  assert.match(unknown.stderr, /^error: no help for 'nope'/);

  const version = await runCli(['--version']);
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(version.stdout.toString(), `${pkg.version}\n`);
  // The test-tool commands are still there.
  assert.equal((await runCli(['SUPPORTS_SIMPLE_IPC'])).code, 0);
});

test('every command that --help lists has a help, the help command too', async () => {
  // `simple-ipc --help` lists `help [COMMAND]  show the help of a command` among the commands
  // and ends "Run 'simple-ipc help COMMAND' for the options and examples of a command".
  const commands = PROGRAM_HELP.slice(
    PROGRAM_HELP.indexOf('\nCommands:\n'),
    PROGRAM_HELP.indexOf('\nOptions:\n'),
  );
  const listed = [...commands.matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]!);
  assert.ok(listed.includes('help') && listed.includes('serve') && listed.includes('multiple'));
  for (const command of listed) {
    assert.match(helpFor(command) ?? '', new RegExp(`^usage: simple-ipc ${command}\\b`), command);
  }
  const [help, long, short] = await Promise.all(
    [
      ['help', 'help'],
      ['help', '--help'],
      ['help', '-h'],
    ].map((args) => runCli(args)),
  );
  assert.equal(help!.code, 0, help!.stderr);
  assert.match(help!.stdout.toString(), /^usage: simple-ipc help \[COMMAND\]\n[\s\S]*Examples:/);
  assert.equal(help!.stderr, '');
  for (const r of [long!, short!]) {
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout, help!.stdout);
  }
});

test('status prints the active state; exit 0 only when listening', async (t) => {
  const dir = tempDir(t);
  // Git's rules: no socket file is not-listening, a file is invalid-path; with named pipes
  // both are path-not-found (no pipe of that name).
  const missing = await runCli(['status', join(dir, 'none')]);
  const none = WINDOWS ? 'path-not-found\n' : 'not-listening\n';
  assert.deepEqual([missing.code, missing.stdout.toString()], [1, none]);

  const file = join(dir, 'file');
  writeFileSync(file, 'x');
  const invalid = await runCli(['status', file]);
  const notSocket = WINDOWS ? 'path-not-found\n' : 'invalid-path\n';
  assert.deepEqual([invalid.code, invalid.stdout.toString()], [1, notSocket]);

  const path = join(dir, 's');
  const server = await startServer(path, (_request, reply) => reply('x'));
  t.after(() => server.destroy());
  const up = await runCli(['status', path]);
  assert.deepEqual([up.code, up.stdout.toString()], [0, 'listening\n']);
  const json = await runCli(['status', '--json', path]);
  assert.equal(json.code, 0);
  assert.deepEqual(JSON.parse(json.stdout.toString()), { path, state: 'listening' });
  assert.equal(server.stats().requests, 0, 'a status probe sends no request');

  await usageErrors(
    [['status'], ['status', path, 'extra'], ['status', '--bogus', path]],
    /^error: .*\nusage: simple-ipc status/,
  );
});

test('call writes the raw response; the request comes from MESSAGE or standard input', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's');
  const prefix = Buffer.from([0, 0xff, 0x0a]);
  const server = await startServer(path, (request, reply) =>
    reply(Buffer.concat([prefix, request])),
  );
  t.after(() => server.destroy());

  const message = await runCli(['call', path, 'héllo']);
  assert.equal(message.code, 0, message.stderr);
  assert.deepEqual(message.stdout, Buffer.concat([prefix, Buffer.from('héllo')]));

  const input = randomBytes(100_000);
  for (const args of [
    ['call', path],
    ['call', path, '-'],
  ]) {
    const r = await runCli(args, { input });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout, Buffer.concat([prefix, input]), args.join(' '));
    assert.equal(r.stderr, '');
  }
  const empty = await runCli(['call', path], { input: '' });
  assert.deepEqual(empty.stdout, prefix);
});

test('call: errors and exit codes', async (t) => {
  const dir = tempDir(t);
  const none = await runCli(['call', join(dir, 'none'), 'x']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /^error: no server at '.*none'/);
  assert.equal(none.stdout.length, 0);

  if (!WINDOWS) {
    // A file at the path is no pipe's business on Windows.
    const file = join(dir, 'file');
    writeFileSync(file, 'x');
    const notSocket = await runCli(['call', file, 'x']);
    assert.equal(notSocket.code, 1);
    assert.match(notSocket.stderr, /is a regular file, not a socket: no server can listen there/);
  }

  const path = join(dir, 's');
  const server = await startServer(path, async (_request, _reply, { signal }) => {
    await new Promise((resolve) => signal.addEventListener('abort', resolve));
  });
  t.after(() => server.destroy());
  const slow = await runCli(['call', '--timeout=300', path, 'x']);
  assert.equal(slow.code, 1);
  assert.match(slow.stderr, /^error: no complete response from '.*' within 300 ms/);

  await usageErrors(
    [['call'], ['call', '--timeout=abc', path], ['call', path, 'a', 'b']],
    /^error: .*\nusage: simple-ipc call/,
  );
});

/**
 * Node options that make a process append the code of each failed socket connect to the file
 * named by `SIMPLE_IPC_TEST_CONNECT_LOG`: a way to see a client's attempts from outside.
 */
const LOG_FAILED_CONNECTS = [
  '--import',
  `data:text/javascript,${encodeURIComponent(`
    import { appendFileSync } from 'node:fs';
    import { Socket } from 'node:net';
    const connect = Socket.prototype.connect;
    Socket.prototype.connect = function (...args) {
      this.once('error', (err) =>
        appendFileSync(process.env.SIMPLE_IPC_TEST_CONNECT_LOG, String(err.code) + '\\n'),
      );
      return connect.apply(this, args);
    };
  `)}`,
];

test('call --wait waits for a server that is starting', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's');
  const log = join(dir, 'connects.log');
  writeFileSync(log, '');
  const call = runProcess(
    process.execPath,
    [...LOG_FAILED_CONNECTS, CLI, 'call', '--wait', '--timeout=15000', path, 'hi'],
    { env: { ...process.env, SIMPLE_IPC_TEST_CONNECT_LOG: log } },
  );
  // The server starts only once the call has found no socket at least once.
  await until('the call to find no socket', () => readFileSync(log, 'utf8').includes('ENOENT'));
  const server = await startServer(path, (request, reply) => reply(`got ${request.toString()}`));
  t.after(() => server.destroy());
  const r = await call;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), 'got hi');
  assert.equal(server.stats().responses, 1);
});

test('serve --exec cat: 1 MiB of random bytes round trip, byte-identical', async (t) => {
  const path = join(tempDir(t), 's');
  await serve(path, ['--exec', CAT_COMMAND]);
  const input = randomBytes(1 << 20);
  const r = await runCli(['call', path], { input });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.length, input.length);
  assert.ok(r.stdout.equals(input), 'byte-identical');
  assert.equal(r.stderr, '', 'no progress line in piped output');
});

test('serve --exec: parallel calls each get their own answer', async (t) => {
  const path = join(tempDir(t), 's');
  const serving = await serve(path, [`--exec=${UPPER_COMMAND}`, '--threads=4']);
  // On Windows each call and each command is a Node process (seconds each under Wine): 8.
  const results = await Promise.all(
    Array.from({ length: WINDOWS ? 8 : 20 }, (_, i) =>
      runCli(['call', path, `request number ${i}`]),
    ),
  );
  results.forEach((r, i) => {
    assert.equal(r.code, 0, `call ${i}: ${r.stderr}the server said:\n${serving.stderr()}`);
    assert.equal(r.stdout.toString(), `REQUEST NUMBER ${i}`);
  });
});

test('serve --exec: a failing command ends the response with an error', async (t) => {
  const path = join(tempDir(t), 's');
  const serving = await serve(path, [
    '--exec',
    execCommand(
      'cat >/dev/null; echo partial; exit 3',
      'process.stdin.resume().on(`end`, () => { console.log(`partial`); process.exit(3); })',
    ),
  ]);
  const r = await runCli(['call', path, 'x']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: the response from '.*' ended early/);
  await until('the server to log it', () => serving.stderr().includes('exited with code 3'));
  // The server goes on.
  assert.equal((await runCli(['status', path])).code, 0);
});

test('serve --idle-timeout: the server exits by itself and removes its socket', async (t) => {
  const path = join(tempDir(t), 's');
  const serving = await serve(path, ['--exec', CAT_COMMAND, '--idle-timeout=0.5']);
  assert.equal(await serving.exited, 0);
  assert.ok(await socketGone(path), 'the socket is gone');
  assert.match(serving.stderr(), /no connection for 0\.5 s: stopping/);
});

test(
  'serve: SIGTERM during a slow request lets it complete, drops the queued one, then exits',
  {
    skip: unixOnly(
      'a POSIX signal sent to another process (on Windows it ends the process at once)',
    ),
  },
  async (t) => {
    const path = join(tempDir(t), 's');
    const slow = 'for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done';
    const serving = await serve(path, ['--exec', slow, '--threads=1']);
    const first = spawn(process.execPath, [CLI, 'call', path, 'go'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(first);
    let output = '';
    first.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const firstExit = new Promise<number | null>((resolve) => first.once('exit', resolve));
    await until('the first line', () => output.includes('line1'));
    // A second request waits for the only thread.
    const connection = await connect(path);
    const second = connection.send('queued');
    // Time for the server to accept it and read the request, so that the stop finds it queued
    // (rather than still in the listen backlog): nothing outside the server process shows it.
    await delay(100);
    serving.child.kill('SIGTERM');
    await assert.rejects(second, { code: 'ERR_IPC_TRUNCATED' });
    assert.equal(await firstExit, 0);
    assert.equal(output, 'line1\nline2\nline3\nline4\nline5\n');
    assert.equal(await serving.exited, 0);
    assert.equal(existsSync(path), false);
    assert.match(serving.stderr(), /SIGTERM: stopping/);
  },
);

test(
  'serve: Ctrl-C at a terminal (SIGINT to the process group) spares running commands',
  {
    skip: unixOnly('POSIX signals to a process group'),
  },
  async (t) => {
    const path = join(tempDir(t), 's');
    // A process group of its own, as a terminal job would be.
    const child = spawn(
      process.execPath,
      [CLI, 'serve', path, '--exec', 'for i in 1 2 3; do echo line$i; sleep 0.2; done'],
      { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
    );
    track(child);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await until('the server to listen', () => stderr.includes('listening at'));
    const connection = await connect(path);
    let output = '';
    let interrupted = false;
    for await (const piece of connection.stream('go')) {
      output += piece.toString();
      if (!interrupted) {
        interrupted = true;
        process.kill(-child.pid!, 'SIGINT');
      }
    }
    assert.equal(output, 'line1\nline2\nline3\n');
    assert.equal(await exited, 0);
    assert.match(stderr, /SIGINT: stopping/);
    assert.equal(existsSync(path), false);
  },
);

test(
  'serve: --mode, a path in use, a path that is not a socket, usage errors',
  {
    skip: unixOnly('socket modes and files at the path (a pipe in use: cli-test-tool.test.ts)'),
  },
  async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 's');
    await serve(path, ['--exec', 'cat', '--mode=640']);
    assert.equal(statSync(path).mode & 0o777, 0o640);
    const taken = await runCli(['serve', path, '--exec', 'cat']);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /already in use/);
    assert.equal((await runCli(['status', path])).code, 0, 'the first server is untouched');

    const file = join(dir, 'file');
    writeFileSync(file, 'precious');
    const refused = await runCli(['serve', file, '--exec', 'cat']);
    assert.equal(refused.code, 1);
    assert.equal(readFileSync(file, 'utf8'), 'precious');

    await usageErrors(
      [
        ['serve', join(dir, 'u')],
        ['serve', join(dir, 'u'), '--exec=cat', '--threads=0'],
        ['serve', join(dir, 'u'), '--exec=cat', '--idle-timeout=-1'],
        ['serve', join(dir, 'u'), '--exec=cat', '--mode=999'],
        ['serve', join(dir, 'u'), '--exec=cat', '--log=x'],
      ],
      /^error: .*\nusage: simple-ipc serve/,
    );
  },
);

test('serve --detach: starts in the background, logs to a file, stops when idle', async (t) => {
  let pid: number | undefined;
  // Registered before the directory's clean-up, so that it runs first.
  t.after(() => {
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  const dir = tempDir(t);
  const path = join(dir, 's');
  const log = join(dir, 'log');
  const idle = 5 * PROCESS_SLOWNESS;
  const started = await runCli([
    'serve',
    path,
    `--exec=${COUNT}`,
    '--detach',
    `--log=${log}`,
    // Long enough for the \`call\` below to start up on a loaded machine (1 s was not; under
    // Wine a process takes seconds to start).
    `--idle-timeout=${idle}`,
  ]);
  assert.equal(started.code, 0, started.stderr);
  pid = Number(/pid (\d+)/.exec(started.stderr)?.[1]);
  assert.ok(pid > 0, started.stderr);
  const r = await runCli(['call', path, '12345']);
  assert.equal(r.stdout.toString().trim(), '5', r.stderr);
  // The log first: with named pipes, socketGone connects to look, and a connection restarts the
  // idle countdown.
  await until('the idle stop', () => readFileSync(log, 'utf8').includes('stopped: 1 request'));
  await until('the socket to go', () => socketGone(path));
  assert.match(
    readFileSync(log, 'utf8'),
    new RegExp(`listening at[\\s\\S]*no connection for ${idle} s`),
  );
});

test('npm start: the demo runs quickly and cleans up after itself', async () => {
  const r = await runProcess(process.execPath, [join(ROOT, 'dist', 'examples', 'demo.js')]);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout.toString();
  assert.match(out, /ping -> pong/);
  assert.match(out, /lines 5000 -> 48893 bytes/);
  assert.match(out, /socket removed: yes/);
});

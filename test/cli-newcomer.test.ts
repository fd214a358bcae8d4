/**
 * What a new user of the CLI meets in the first hour: the answer to a typo, how a `serve`
 * daemon is stopped, and what `call` writes to a terminal. Terminal tests run the CLI under
 * `script` (util-linux), which gives it a pty.
 */

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { suggestCommand } from '../cli/main.js';
import { getActiveState, startServer } from '../src/index.js';
import {
  CAT_COMMAND,
  CLI,
  killAndWait,
  ROOT,
  runCli,
  runProcess,
  type RunResult,
  socketGone,
  tempDir,
  test,
  until,
  UPPER_COMMAND,
} from './helpers.js';

test('a mistyped command is a usage error (129) with a suggestion when one is close', async () => {
  const typo = await runCli(['cal', './x.sock', 'hello']);
  assert.equal(typo.code, 129, typo.stderr);
  assert.match(typo.stderr, /'cal' is not a simple-ipc command/);
  assert.match(typo.stderr, /did you mean 'call'\?/);
  assert.match(typo.stderr, /simple-ipc --help/);
  assert.equal(typo.stdout.length, 0);
  // Options after a typo do not turn it into an option error.
  const withOption = await runCli(['serv', './x.sock', '--exec', 'cat']);
  assert.equal(withOption.code, 129);
  assert.match(withOption.stderr, /did you mean 'serve'\?/);
  // Nothing close: no guess.
  const far = await runCli(['frobnicate', './x.sock']);
  assert.equal(far.code, 129);
  assert.match(far.stderr, /'frobnicate' is not a simple-ipc command/);
  assert.doesNotMatch(far.stderr, /did you mean/);
  // And when asking for help with it.
  const help = await runCli(['help', 'sever']);
  assert.equal(help.code, 129);
  assert.match(help.stderr, /^error: no help for 'sever'; did you mean 'serve'\?/);
});

test('suggestCommand: near misses only', () => {
  assert.equal(suggestCommand('cal'), 'call');
  assert.equal(suggestCommand('stauts'), 'status');
  assert.equal(suggestCommand('send-bytes'), 'sendbytes');
  assert.equal(suggestCommand('stop-deamon'), 'stop-daemon');
  assert.equal(suggestCommand('x'), undefined);
  assert.equal(suggestCommand('frobnicate'), undefined);
  assert.equal(suggestCommand('listen'), undefined);
});

/** `promise`, or a failure naming `what` if it has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts `simple-ipc serve PATH --exec COMMAND` and resolves once it listens, with what the
 * process left when it exits. Killed when the test ends, whatever happened.
 */
async function serveUntilListening(
  t: TestContext,
  path: string,
  command: string,
): Promise<{ exited: Promise<RunResult> }> {
  const child = spawn(process.execPath, [CLI, 'serve', path, '--exec', command], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => killAndWait(child));
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<RunResult>((resolve) =>
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err }),
    ),
  );
  await until('serve to listen', async () => (await getActiveState(path)) === 'listening', 30_000);
  return { exited };
}

test('`simple-ipc stop PATH` stops a `serve` daemon, which exits 0 and removes its socket', async (t) => {
  const path = join(tempDir(t), 'upper.sock');
  const daemon = await serveUntilListening(t, path, UPPER_COMMAND);
  const hello = await runCli(['call', path, 'hello']);
  assert.equal(hello.stdout.toString(), 'HELLO');
  const stop = await runCli(['stop', path]);
  assert.equal(stop.code, 0, stop.stderr);
  const result = await within(daemon.exited, 30_000, 'serve to exit after stop');
  assert.equal(result.code, 0, result.stderr);
  assert.match(
    result.stderr,
    /'quit' received: stopping\n.*stopped: 1 request, 1 answered, 0 failed\n/s,
  );
  assert.ok(await socketGone(path), 'the socket is removed');
  // Nothing there: stop says so and exits 1.
  const again = await runCli(['stop', path]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /^error: no server listening at '.*upper\.sock': nothing to stop\n$/);
});

test('serve passes a request that only starts with quit to its command', async (t) => {
  const path = join(tempDir(t), 'cat.sock');
  const daemon = await serveUntilListening(t, path, CAT_COMMAND);
  t.after(async () => {
    await runCli(['stop', path]);
    await within(daemon.exited, 30_000, 'serve to exit after stop');
  });
  for (const request of ['quit now', 'qui', 'quit\n', '']) {
    const r = await runCli(['call', path, request]);
    assert.equal(r.stdout.toString(), request, JSON.stringify(request));
  }
  assert.equal(await getActiveState(path), 'listening');
});

const NO_PTY =
  process.platform === 'win32'
    ? 'no pty on Windows'
    : (() => {
        try {
          execFileSync('script', ['-qec', 'true', '/dev/null'], { stdio: 'ignore' });
          return false;
        } catch {
          return 'needs script(1) from util-linux to give the CLI a terminal';
        }
      })();

/** Runs the CLI with `args` on a pty (stdout and stderr both go to it); returns what it wrote. */
async function onTerminal(args: readonly string[]): Promise<RunResult> {
  const quoted = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`);
  return runProcess('script', ['-qec', quoted.join(' '), '/dev/null'], { cwd: ROOT });
}

test(
  'call ends the response with a newline on a terminal only, and only if it has none',
  { skip: NO_PTY },
  async (t) => {
    const path = join(tempDir(t), 'echo');
    const server = await startServer(path, (request, reply) => reply(request));
    t.after(() => server.destroy());
    const bare = await onTerminal(['call', path, 'hello']);
    assert.equal(bare.stdout.toString(), 'hello\r\n');
    const ended = await onTerminal(['call', path, 'line\n']);
    assert.equal(ended.stdout.toString(), 'line\r\n');
    // Pipes get the bytes as they are.
    const piped = await runCli(['call', path, 'hello']);
    assert.equal(piped.stdout.toString(), 'hello');
  },
);

test(
  'call --wait says on a terminal what it waits for; not in a pipe',
  { skip: NO_PTY },
  async (t) => {
    const path = join(tempDir(t), 'later');
    const waiting = onTerminal(['call', '--wait', '--timeout=400', path, 'x']);
    const tty = await waiting;
    assert.equal(tty.code, 1);
    assert.match(tty.stdout.toString(), /waiting up to 400 ms for a server at '[^']*later'/);
    const piped = await runCli(['call', '--wait', '--timeout=400', path, 'x']);
    assert.equal(piped.code, 1);
    assert.doesNotMatch(piped.stderr, /waiting/);
  },
);

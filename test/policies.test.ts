/**
 * Server policies (src/policies.ts): stop when idle, stop gracefully on signals. Signals are
 * delivered with `process.emit` in this process, and for real to a daemon process.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { pathToFileURL } from 'node:url';
import {
  connect,
  getActiveState,
  type Server,
  sendCommand,
  startServer,
  stopOnSignals,
  stopWhenIdle,
} from '../src/index.js';
import {
  CLOSED_UNANSWERED,
  delay,
  gate,
  heldServer,
  ROOT,
  socketGone,
  tempDir,
  test,
  unixOnly,
  until,
} from './helpers.js';

test('stopWhenIdle stops an unused server and removes its socket', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (_request, reply) => reply('ok'));
  t.after(() => server.destroy());
  const idle: number[] = [];
  stopWhenIdle(server, 300, { onIdle: (ms) => idle.push(ms) });
  await server.closed;
  assert.equal(idle.length, 1);
  assert.ok(idle[0]! >= 300, `idle for ${idle[0]} ms`);
  assert.deepEqual(server.stopReason, { kind: 'idle' });
  assert.ok(await socketGone(path), 'the socket is gone');
});

test('a connection restarts the idle countdown', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (_request, reply) => reply('ok'));
  t.after(() => server.destroy());
  stopWhenIdle(server, 1500, { checkInterval: 20 });
  await delay(200); // some idle time first, which the connection must cancel: the scenario
  const before = performance.now();
  assert.equal((await sendCommand(path, 'x')).toString(), 'ok');
  await server.closed;
  // Stopping can only come late, never early: at least the timeout after the connection.
  const after = performance.now() - before;
  assert.ok(after >= 1500 - 1, `stopped ${after} ms after the last connection`);
});

test('a running conversation keeps an idle server alive', async (t) => {
  const { path, server, hold: release } = await heldServer(t, 'done');
  stopWhenIdle(server, 200, { checkInterval: 20 });
  const answer = sendCommand(path, 'x');
  await until('the handler to run', () => server.stats().running === 1);
  // Nothing may happen for well over the idle timeout (200 ms): only a fixed wait shows that.
  await delay(700);
  assert.equal(server.stopping, false, 'still serving a conversation');
  release.open();
  assert.equal((await answer).toString(), 'done');
  await server.closed; // and idle afterwards
});

test('stopWhenIdle: cancel() and bad timeouts', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (_request, reply) => reply('ok'));
  t.after(() => server.destroy());
  const policy = stopWhenIdle(server, 100, { checkInterval: 10 });
  policy.cancel();
  policy.cancel();
  // Nothing may happen for three times the timeout: only a fixed wait shows that.
  await delay(300);
  assert.equal(server.stopping, false);
  for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => stopWhenIdle(server, bad), { code: 'ERR_IPC_INVALID_ARGUMENT' });
  }
});

async function signalled(
  t: TestContext,
  handler: Parameters<typeof startServer>[1],
  threads = 1,
): Promise<{ path: string; server: Server }> {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, handler, { threads });
  t.after(() => server.destroy());
  return { path, server };
}

test('stopOnSignals: SIGTERM lets the running conversation finish, drops the queued one', async (t) => {
  const release = gate();
  const { path, server } = await signalled(t, async (request, reply) => {
    await release.promise;
    await reply(`${request.toString()}-a `);
    await reply(`${request.toString()}-b`);
  });
  const listeners = process.listenerCount('SIGTERM');
  stopOnSignals(server);
  assert.equal(process.listenerCount('SIGTERM'), listeners + 1);

  const first = sendCommand(path, 'first');
  await until('the first handler', () => server.stats().running === 1);
  const second = sendCommand(path, 'second'); // one thread: it waits
  await until('the second request to queue', () => server.stats().queued === 1);
  process.emit('SIGTERM', 'SIGTERM');
  assert.equal(server.stopping, true);
  await assert.rejects(second, CLOSED_UNANSWERED);
  const third = await getActiveState(path);
  assert.notEqual(third, 'listening', 'no new connections');

  release.open();
  assert.equal((await first).toString(), 'first-a first-b');
  await server.closed;
  assert.ok(await socketGone(path), 'the socket is removed');
  assert.equal(process.listenerCount('SIGTERM'), listeners, 'the listener is gone');
});

test('stopOnSignals: a second signal cuts running conversations off', async (t) => {
  const { path, server } = await signalled(t, async (_request, reply, { signal }) => {
    await reply('started ');
    await new Promise((resolve) => signal.addEventListener('abort', resolve));
  });
  const seen: string[] = [];
  stopOnSignals(server, { onSignal: (sig, forced) => seen.push(`${sig}${forced ? '!' : ''}`) });
  const connection = await connect(path);
  const answer = connection.send('x');
  await until('the handler', () => server.stats().running === 1);
  process.emit('SIGINT', 'SIGINT');
  // The conversation must not be cut off: a fixed wait is the only way to see an absence.
  await delay(50);
  assert.equal(server.stats().running, 1, 'the first signal waits for it');
  process.emit('SIGINT', 'SIGINT');
  await assert.rejects(answer, CLOSED_UNANSWERED);
  await server.closed;
  assert.deepEqual(seen, ['SIGINT', 'SIGINT!']);
  assert.equal(process.listenerCount('SIGINT'), 0);
});

test('stopOnSignals: forceAfter bounds the wait; cancel() detaches', async (t) => {
  const { path, server } = await signalled(t, async (_request, _reply, { signal }) => {
    await new Promise((resolve) => signal.addEventListener('abort', resolve));
  });
  // A signal every platform names (Windows has no SIGUSR2). The runtime may listen for some
  // signals itself (Node 24 and later for SIGUSR2): count only ours.
  const before = process.listeners('SIGHUP');
  const unused = stopOnSignals(server, { signals: ['SIGHUP'] });
  assert.equal(process.listenerCount('SIGHUP'), before.length + 1, 'stopOnSignals listens');
  unused.cancel();
  assert.deepEqual(process.listeners('SIGHUP'), before, 'cancel() removed exactly its listener');
  stopOnSignals(server, { forceAfter: 100 });
  const answer = sendCommand(path, 'x');
  await until('the handler', () => server.stats().running === 1);
  process.emit('SIGTERM', 'SIGTERM');
  await assert.rejects(answer, CLOSED_UNANSWERED);
  await server.closed;
  assert.ok(await socketGone(path), 'the socket is gone');
});

// A daemon process: `slow` streams 20 rows, 25 ms apart; SIGTERM stops it gracefully.
const SLOW_DAEMON = `
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer, stopOnSignals } from ${JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'src', 'index.js')).href)};
const server = await startServer(process.argv[1], async (request, reply) => {
  for (let i = 0; i < 20; i++) {
    await reply('row ' + i + '\\n');
    await sleep(25);
  }
});
stopOnSignals(server);
process.stdout.write('ready\\n');
await server.closed;
process.stdout.write('stopped after ' + server.stats().responses + ' response(s)\\n');
`;

test(
  'SIGTERM to a daemon process during a slow request: it completes, then the daemon exits',
  {
    skip: unixOnly(
      'a POSIX signal sent to another process (on Windows it ends the process at once)',
    ),
  },
  async (t) => {
    const path = join(tempDir(t), 's');
    const child = spawn(process.execPath, ['--input-type=module', '-e', SLOW_DAEMON, path], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => child.kill('SIGKILL'));
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    // 'ready' comes once the signal handlers are in place.
    await until('the daemon to be ready', () => output === 'ready\n');
    const connection = await connect(path, { waitIfBusy: true, timeout: 5000 });
    const rows: string[] = [];
    let signalled = false;
    for await (const piece of connection.stream('slow')) {
      rows.push(piece.toString());
      if (!signalled) {
        signalled = true;
        child.kill('SIGTERM');
      }
    }
    const text = rows.join('');
    assert.equal(text.split('\n').length - 1, 20, 'all rows arrived');
    assert.ok(text.endsWith('row 19\n'));
    assert.equal(await exited, 0);
    assert.equal(output, 'ready\nstopped after 1 response(s)\n');
    assert.ok(await socketGone(path), 'the socket is gone');
  },
);

/**
 * The application's callbacks (src/guard.ts): a handler, a hook or a logger that throws,
 * rejects or never settles is contained and reported once; it never decides what a client
 * receives, whether the process lives, or whether `stop()` completes. And a failing handler is
 * never invisible: without `onHandlerError` it is reported as a process warning.
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  connect,
  type Server,
  type SimpleIpcError,
  sendCommand,
  startServer,
  stopOnSignals,
  stopWhenIdle,
} from '../src/index.js';
import { rawExchange, tempDir, test, until, warnings } from './helpers.js';

// A client deadline far below the test's, so that a server that never answers shows up as
// ERR_IPC_TIMEOUT instead of a hung test.
const CLIENT_DEADLINE = { timeout: 5000 };

for (const how of ['throws', 'rejects'] as const) {
  test(`an onHandlerError that ${how}: the client still gets a closed connection, one warning, the server goes on`, async (t) => {
    const path = join(tempDir(t), 's');
    const seen = warnings(t, 'ERR_IPC_CALLBACK_FAILED');
    let calls = 0;
    const server = await startServer(
      path,
      (request, reply) => {
        if (request.toString() === 'fail') throw new Error('handler broke');
        return reply('pong');
      },
      {
        onHandlerError: (): void => {
          calls++;
          if (how === 'throws') throw new Error('observer broke');
          // An async observer: its Promise rejects.
          return Promise.reject(new Error('observer broke')) as unknown as undefined;
        },
      },
    );
    t.after(() => server.destroy());
    for (let i = 0; i < 3; i++) {
      await assert.rejects(sendCommand(path, 'fail', CLIENT_DEADLINE), {
        code: 'ERR_IPC_TRUNCATED',
      });
    }
    assert.equal((await sendCommand(path, 'ping', CLIENT_DEADLINE)).toString(), 'pong');
    assert.equal(calls, 3);
    assert.equal(server.stats().handlerErrors, 3);
    await until('the warning', () => seen.length > 0);
    assert.equal(seen.length, 1, 'reported once, not once per call');
    assert.match(seen[0]!.message, /onHandlerError/);
    assert.equal((seen[0]!.cause as Error).message, 'observer broke');
    await server.stop();
  });
}

test('a debug hook that throws, and a client that sends bytes that are not a pkt-line: the process goes on', async (t) => {
  const path = join(tempDir(t), 's');
  const seen = warnings(t, 'ERR_IPC_CALLBACK_FAILED');
  const server = await startServer(path, (_request, reply) => reply('pong'), {
    debug: () => {
      throw new Error('logger broke');
    },
  });
  t.after(() => server.destroy());
  await rawExchange(path, Buffer.from('zzzz0000'));
  await rawExchange(path, Buffer.from('not a pkt-line at all'));
  await until('both bad requests', () => server.stats().badRequests === 2);
  assert.equal((await sendCommand(path, 'ping', CLIENT_DEADLINE)).toString(), 'pong');
  await until('the warning', () => seen.length > 0);
  assert.equal(seen.length, 1);
  assert.match(seen[0]!.message, /debug/);
  await server.stop();
});

test('a handler whose result is a thenable with a throwing then fails like a throw', async (t) => {
  const path = join(tempDir(t), 's');
  const failures: unknown[] = [];
  const server = await startServer(
    path,
    (request) => {
      if (request.toString() === 'getter') {
        return {
          get then(): never {
            throw new Error('then getter broke');
          },
        } as unknown as undefined;
      }
      // A then that calls back twice and then throws: counted once.
      return {
        then(resolve: (v: unknown) => void, reject: (e: unknown) => void): never {
          reject(new Error('first'));
          resolve(undefined);
          throw new Error('then broke');
        },
      } as unknown as undefined;
    },
    { onHandlerError: (err) => failures.push(err) },
  );
  t.after(() => server.destroy());
  for (const request of ['getter', 'then']) {
    await assert.rejects(sendCommand(path, request, CLIENT_DEADLINE), {
      code: 'ERR_IPC_TRUNCATED',
    });
  }
  const stats = server.stats();
  assert.equal(stats.handlerErrors, 2);
  assert.equal(stats.running, 0, 'every handler slot is given back once');
  assert.equal(failures.length, 2);
  await server.stop();
});

test('stopWhenIdle: an onIdle that throws still stops the server, and is reported once', async (t) => {
  const path = join(tempDir(t), 's');
  const seen = warnings(t, 'ERR_IPC_CALLBACK_FAILED');
  const server = await startServer(path, (_request, reply) => reply('ok'));
  t.after(() => server.destroy());
  stopWhenIdle(server, 100, {
    checkInterval: 20,
    onIdle: () => {
      throw new Error('onIdle broke');
    },
  });
  await server.closed;
  await until('the warning', () => seen.length > 0);
  assert.equal(seen.length, 1);
  assert.match(seen[0]!.message, /onIdle/);
});

test('stopOnSignals: an onSignal that throws still stops the server, and is reported once', async (t) => {
  const path = join(tempDir(t), 's');
  const seen = warnings(t, 'ERR_IPC_CALLBACK_FAILED');
  const server: Server = await startServer(path, (_request, reply) => reply('ok'));
  t.after(() => server.destroy());
  const policy = stopOnSignals(server, {
    // A signal every platform names (Windows has no SIGUSR2).
    signals: ['SIGHUP'],
    onSignal: () => {
      throw new Error('onSignal broke');
    },
  });
  t.after(() => policy.cancel());
  process.emit('SIGHUP', 'SIGHUP');
  await server.closed;
  await until('the warning', () => seen.length > 0);
  assert.equal(seen.length, 1);
  assert.match(seen[0]!.message, /onSignal/);
});

test('without onHandlerError a failing handler is a process warning, once per site, not once per request', async (t) => {
  const path = join(tempDir(t), 's');
  const seen = warnings(t, 'ERR_IPC_HANDLER_FAILED');
  const server = await startServer(path, (request) => {
    const what = request.toString();
    if (what.startsWith('a')) throw new Error(`failure a #${what}`);
    if (what.startsWith('b')) throw new TypeError(`failure b #${what}`);
    const notAnError: unknown = 'not an error';
    throw notAnError;
  });
  t.after(() => server.destroy());
  const requests: string[] = [];
  for (let i = 0; i < 30; i++) requests.push(`a${i}`, `b${i}`, `c${i}`);
  await Promise.all(
    requests.map((request) =>
      assert.rejects(
        sendCommand(path, request, { ...CLIENT_DEADLINE, waitIfBusy: true }),
        (err: SimpleIpcError) => {
          assert.equal(err.code, 'ERR_IPC_TRUNCATED');
          // The client's error says what probably happened.
          assert.match(err.message, /closed the connection before completing its response/);
          assert.match(err.message, /handler failed/);
          return true;
        },
      ),
    ),
  );
  // A streamed response says the same.
  await assert.rejects(
    (async () => {
      let got = 0;
      for await (const piece of (await connect(path)).stream('a-stream', CLIENT_DEADLINE)) {
        got += piece.length;
      }
      return got;
    })(),
    (err: SimpleIpcError) =>
      err.code === 'ERR_IPC_TRUNCATED' && /before completing its response/.test(err.message),
  );
  assert.equal(server.stats().handlerErrors, 91);
  await until('three warnings', () => seen.length >= 3);
  // Let any further warning (one per request would be 87 more) arrive before counting.
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => process.nextTick(resolve));
  assert.equal(seen.length, 3, seen.map((w) => w.message).join('\n'));
  const causes = seen.map((w) => w.cause);
  assert.ok(causes.some((c) => c instanceof TypeError));
  assert.ok(causes.some((c) => c instanceof Error && c.message.startsWith('failure a')));
  assert.ok(
    causes.some((c) => (c as SimpleIpcError).code === 'ERR_IPC_HANDLER_FAILED'),
    'a thrown non-Error is wrapped',
  );
  await server.stop();
});

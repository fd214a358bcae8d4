/**
 * Review (the embedding application's angle): each test here failed on the code it was written
 * against. Scenarios that crash a process run in a child process via `runProcess`.
 */

import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type Connection,
  connect,
  isSimpleIpcError,
  sendCommand,
  startServer,
} from '../src/index.js';
import { runProcess, tempDir, test, unixOnly } from './helpers.js';

const LIBRARY = new URL('../src/index.js', import.meta.url).href;

// The client closing its own connection while a response streams in is not the server
// "closing the connection before completing its response, which usually means its request
// handler failed" (ERR_IPC_TRUNCATED): that sends the application hunting for a server bug.
// ERR_IPC_CONNECTION_CLOSED is "the connection closed before the exchange completed".
test('disposing of a connection mid-stream is ERR_IPC_CONNECTION_CLOSED, not ERR_IPC_TRUNCATED', async (t) => {
  const path = join(tempDir(t), 's');
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const server = await startServer(path, async (_request, reply) => {
    await reply('first');
    await held;
  });
  t.after(() => {
    release();
    return server.destroy();
  });
  // stream(): the first piece arrives, then the application disposes of the connection.
  {
    const connection = await connect(path);
    const iterator = connection.stream('x')[Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.equal(String(first.value), 'first');
    await connection[Symbol.asyncDispose]();
    await assert.rejects(iterator.next(), (err: unknown) => {
      assert.ok(isSimpleIpcError(err), String(err));
      assert.equal(err.code, 'ERR_IPC_CONNECTION_CLOSED', err.message);
      return true;
    });
  }
  // send(): the application closes the connection while waiting for the response.
  {
    const connection = await connect(path);
    const sending = connection.send('x');
    setTimeout(() => void connection.close(), 50);
    await assert.rejects(sending, (err: unknown) => {
      assert.ok(isSimpleIpcError(err), String(err));
      assert.equal(err.code, 'ERR_IPC_CONNECTION_CLOSED', err.message);
      return true;
    });
  }
});

// destroy() "cuts running conversations off", and is callable from a handler. A handler whose
// reply then rejects because the server itself cut its connection has not failed: it must not
// be counted in handlerErrors nor reported as "a request handler failed" (the server treats a
// connection closed under a handler by responseTimeout the same way: clientGone).
test('destroy() from inside a handler is not reported as that handler failing', async (t) => {
  const path = join(tempDir(t), 's');
  const reported: unknown[] = [];
  const server = await startServer(
    path,
    async (_request, reply, context) => {
      void context.server.destroy();
      await reply('too late');
    },
    { onHandlerError: (err) => reported.push(err) },
  );
  t.after(() => server.destroy());
  await assert.rejects(sendCommand(path, 'x'), (err: unknown) =>
    isSimpleIpcError(err, 'ERR_IPC_TRUNCATED'),
  );
  await server.closed;
  assert.deepEqual(
    reported.map((e) => (e as Error).message),
    [],
    'onHandlerError was called for the connection destroy() cut off',
  );
  assert.equal(server.stats().handlerErrors, 0);
});

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

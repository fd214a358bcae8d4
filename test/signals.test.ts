/**
 * An application-wide AbortSignal handed to every server, connection and call: each removes
 * its `abort` listener when it is done, on success and on failure, so a long-lived signal
 * never collects them (Node warns at eleven).
 */

import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  connect,
  connectOrStart,
  getActiveState,
  sendCommand,
  startClusteredServer,
  startDaemon,
  startServer,
  tryConnect,
  USES_NAMED_PIPES,
} from '../src/index.js';
import { tempDir, test } from './helpers.js';

function listeners(signal: AbortSignal): number {
  return getEventListeners(signal, 'abort').length;
}

test('twelve servers started with one signal and stopped leave no listener on it', async (t) => {
  const dir = tempDir(t);
  const controller = new AbortController();
  const signal = controller.signal;
  for (let i = 0; i < 12; i++) {
    const server = await startServer(join(dir, `s${i}`), () => undefined, { signal });
    await server.stop();
  }
  assert.equal(listeners(signal), 0, 'after stop()');
  for (let i = 0; i < 3; i++) {
    const server = await startServer(join(dir, `d${i}`), () => undefined, { signal });
    await server.destroy();
  }
  assert.equal(listeners(signal), 0, 'after destroy()');
  // A start that fails (the path is taken) leaves none either.
  const server = await startServer(join(dir, 'taken'), () => undefined, { signal });
  t.after(() => server.destroy());
  await assert.rejects(
    startServer(join(dir, 'taken'), () => undefined, { signal }),
    {
      code: 'ERR_IPC_IN_USE',
    },
  );
  assert.equal(listeners(signal), 1, 'only the running server listens');
  await server.stop();
  assert.equal(listeners(signal), 0);
  // A clustered server: the signal is its first process's business.
  const module = join(dir, 'handler.mjs');
  writeFileSync(module, 'export default () => undefined;\n');
  const clustered = await startClusteredServer(join(dir, 'c'), module, {
    // One process per pipe on Windows.
    processes: USES_NAMED_PIPES ? 1 : 2,
    signal,
  });
  await clustered.stop();
  assert.equal(listeners(signal), 0, 'after a clustered server');
  assert.equal(controller.signal.aborted, false);
});

test('client calls remove their abort listener when done, on success and on failure', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's');
  const missing = join(dir, 'missing');
  const server = await startServer(path, (request, reply) => {
    if (request.toString() === 'fail') throw new Error('no');
    return reply('pong');
  });
  t.after(() => server.destroy());
  const signal = new AbortController().signal;
  const steps: [string, () => Promise<unknown>][] = [
    ['sendCommand', () => sendCommand(path, 'ping', { signal })],
    ['sendCommand, the handler fails', () => sendCommand(path, 'fail', { signal }).catch(code)],
    ['sendCommand, nothing there', () => sendCommand(missing, 'ping', { signal }).catch(code)],
    [
      'sendCommand, waiting for nothing',
      () => sendCommand(missing, 'ping', { signal, waitIfNotFound: true, timeout: 60 }).catch(code),
    ],
    ['tryConnect, nothing there', () => tryConnect(missing, { signal })],
    ['getActiveState', () => getActiveState(path, { signal })],
    ['connect + send', async () => (await connect(path, { signal })).send('ping', { signal })],
    [
      'connect + send, the handler fails',
      async () => (await connect(path)).send('fail', { signal }).catch(code),
    ],
    [
      'connect + stream',
      async () => {
        const pieces: Buffer[] = [];
        for await (const piece of (await connect(path)).stream('ping', { signal })) {
          pieces.push(piece);
        }
        return Buffer.concat(pieces);
      },
    ],
    [
      'connect + stream, the handler fails',
      async () => {
        try {
          let got = 0;
          for await (const piece of (await connect(path)).stream('fail', { signal })) {
            got += piece.length;
          }
          return got;
        } catch (err) {
          return code(err);
        }
        return undefined;
      },
    ],
    [
      'connectOrStart, a server listens',
      async () =>
        (
          await connectOrStart(path, {
            command: process.execPath,
            args: ['-e', ''],
            signal,
          })
        ).destroy(),
    ],
    [
      'startDaemon, a server listens',
      () => startDaemon(path, { command: process.execPath, args: ['-e', ''], signal }),
    ],
    [
      'startDaemon, the command cannot run',
      () =>
        startDaemon(join(dir, 'daemon'), { command: join(dir, 'no-such-program'), signal }).catch(
          code,
        ),
    ],
  ];
  for (const [what, step] of steps) {
    await step();
    assert.equal(listeners(signal), 0, what);
  }
});

function code(err: unknown): unknown {
  return (err as { code?: unknown }).code;
}

/**
 * Busy is not dead (src/refusal.ts): on macOS and the BSDs a full listen queue refuses a
 * connection with ECONNREFUSED, as a dead socket does. Run here through the seam: the platform
 * is declared ambiguous and refusals are injected in front of a live server.
 */

import assert from 'node:assert/strict';
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import {
  ActiveState,
  connectOrStart,
  type SimpleIpcError,
  sendCommand,
  startServer,
  tryConnect,
} from '../src/index.js';
import { refusal } from '../src/refusal.js';
import { tempDir, test, unixOnly } from './helpers.js';

/**
 * Declares ECONNREFUSED ambiguous, as on macOS, and refuses the next `times` connection
 * attempts to `path`; both undone when the test ends. Returns how many were refused so far.
 */
function refuseNext(t: TestContext, path: string, times: number): () => number {
  const saved = { ...refusal };
  let refused = 0;
  refusal.ambiguous = true;
  refusal.inject = (target) => {
    if (target !== path || refused >= times) return undefined;
    refused++;
    return 'ECONNREFUSED';
  };
  t.after(() => Object.assign(refusal, saved));
  return () => refused;
}

async function serve(t: TestContext, path: string) {
  const server = await startServer(path, (_request, reply) => reply('pong'));
  t.after(() => server.destroy());
  return server;
}

const UNIX = unixOnly('ECONNREFUSED from a listen queue: Windows pipes report a busy pipe instead');

test(
  'ambiguous refusal: a new server does not replace a live server that refused its probe once',
  { skip: UNIX },
  async (t) => {
    const path = join(tempDir(t), 's');
    await serve(t, path);
    const before = lstatSync(path).ino;
    const refused = refuseNext(t, path, 1);
    await assert.rejects(
      startServer(path, () => undefined),
      (err: SimpleIpcError) => {
        assert.equal(err.code, 'ERR_IPC_IN_USE');
        return true;
      },
    );
    assert.equal(refused(), 1, 'the first probe was refused');
    assert.equal(lstatSync(path).ino, before, 'the live socket is still in place');
    assert.equal((await sendCommand(path, 'ping')).toString(), 'pong');
  },
);

test(
  'ambiguous refusal: a socket that keeps refusing is dead, and is replaced',
  { skip: UNIX },
  async (t) => {
    const path = join(tempDir(t), 's');
    const old = await serve(t, path);
    const refused = refuseNext(t, path, Number.POSITIVE_INFINITY);
    const server = await startServer(path, (_request, reply) => reply('new'));
    t.after(() => server.destroy());
    assert.ok(refused() >= 2, `refused ${refused()} times: confirmed before replacing`);
    refusal.inject = undefined;
    assert.equal((await sendCommand(path, 'x')).toString(), 'new');
    await old.stop();
  },
);

test(
  'ambiguous refusal: a client that waits if busy retries ECONNREFUSED within its timeout',
  { skip: UNIX },
  async (t) => {
    const path = join(tempDir(t), 's');
    await serve(t, path);
    const refused = refuseNext(t, path, 3);
    const result = await tryConnect(path, { waitIfBusy: true, retryInterval: 5 });
    assert.equal(result.state, ActiveState.LISTENING);
    if (result.state === ActiveState.LISTENING) result.connection.destroy();
    assert.equal(refused(), 3);
    // Without waitIfBusy it is one attempt, as in Git: not-listening at once.
    refuseNext(t, path, 1);
    const once = await tryConnect(path);
    assert.equal(once.state, ActiveState.NOT_LISTENING);
  },
);

test(
  'ambiguous refusal: connectOrStart connects to a live server that refused once, starting nothing',
  { skip: UNIX },
  async (t) => {
    const path = join(tempDir(t), 's');
    await serve(t, path);
    refuseNext(t, path, 1);
    // A program that cannot run: starting a daemon would fail with ERR_IPC_DAEMON_FAILED.
    const connection = await connectOrStart(path, {
      command: join(tempDir(t), 'no-such-program'),
      timeout: 2000,
    });
    assert.equal((await connection.send('ping')).toString(), 'pong');
  },
);

test(
  'unambiguous refusal (Linux): one ECONNREFUSED means dead, as before',
  { skip: UNIX },
  async (t) => {
    const path = join(tempDir(t), 's');
    const old = await serve(t, path);
    const refused = refuseNext(t, path, 1);
    refusal.ambiguous = false;
    const server = await startServer(path, (_request, reply) => reply('new'));
    t.after(() => server.destroy());
    assert.equal(refused(), 1);
    assert.equal((await sendCommand(path, 'x')).toString(), 'new');
    await old.stop();
  },
);

/**
 * Another user's socket or directory (src/trust.ts): servers and connectOrStart refuse them
 * with ERR_IPC_UNTRUSTED_OWNER; plain clients do when asked (`checkOwner`). The squatter here
 * is a socket in a shared (1777) directory, owned by another user, mode 0666, that records
 * what it receives.
 */

import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync } from 'node:fs';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import {
  ActiveState,
  connect,
  connectOrStart,
  type SimpleIpcError,
  sendCommand,
  startDaemon,
  startServer,
  tryConnect,
} from '../src/index.js';
import { deadSocket, otherOwnerOrSkip, tempDir, test } from './helpers.js';

interface Squatter {
  readonly path: string;
  /** Connections it accepted. */
  connections: number;
  /** Every byte it received. */
  received: string;
}

/** A shared directory, as /tmp is (mode 1777), removed after the test. */
function sharedDir(t: TestContext): string {
  const dir = tempDir(t);
  chmodSync(dir, 0o1777);
  return dir;
}

/**
 * Another user's listening socket at `dir/name`, mode 0666, answering every request with a
 * response of its own; closed after the test.
 */
async function squat(
  t: TestContext,
  owner: { uid: number; gid: number },
  dir: string,
  name = 's',
): Promise<Squatter> {
  const path = join(dir, name);
  const squatter: Squatter = { path, connections: 0, received: '' };
  const sockets = new Set<Socket>();
  const server: NetServer = createServer((c) => {
    squatter.connections++;
    sockets.add(c);
    c.on('error', () => {});
    c.on('data', (chunk: Buffer) => {
      squatter.received += chunk.toString('latin1');
      if (squatter.received.endsWith('0000')) c.end('0009squat0000');
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.after(() => {
    // A client that was wrongly let through may still hold its connection.
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => server.close(resolve));
  });
  chmodSync(path, 0o666);
  chownSync(path, owner.uid, owner.gid);
  return squatter;
}

function untrusted(pattern: RegExp) {
  return (err: SimpleIpcError): boolean => {
    assert.equal(err.code, 'ERR_IPC_UNTRUSTED_OWNER');
    assert.match(err.message, pattern);
    assert.match(err.message, /userSocketDirectory\(\)/);
    return true;
  };
}

test('connectOrStart refuses another user socket: the squatter gets no request', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const squatter = await squat(t, owner, sharedDir(t));
  await assert.rejects(
    connectOrStart(squatter.path, { command: join(tempDir(t), 'no-such-program') }),
    untrusted(new RegExp(`the socket '.*' belongs to user ${owner.uid}, not to you`)),
  );
  assert.equal(squatter.connections, 0);
  assert.equal(squatter.received, '');
});

test('connectOrStart and startDaemon refuse a directory another user owns, starting nothing', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const dir = join(sharedDir(t), 'theirs');
  mkdirSync(dir, { mode: 0o777 });
  chmodSync(dir, 0o777);
  chownSync(dir, owner.uid, owner.gid);
  const path = join(dir, 's');
  const started = join(tempDir(t), 'started');
  const daemon = {
    command: process.execPath,
    args: ['-e', `require('node:fs').writeFileSync(${JSON.stringify(started)}, '')`],
    timeout: 2000,
  };
  await assert.rejects(
    connectOrStart(path, daemon),
    untrusted(/the directory '.*theirs' of the socket/),
  );
  await assert.rejects(startDaemon(path, daemon), untrusted(/the directory '.*theirs'/));
  assert.equal(existsSync(started), false, 'nothing was spawned');
});

test('startServer refuses another user socket, live or dead, and leaves it', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const dir = sharedDir(t);
  const live = await squat(t, owner, dir, 'live');
  await assert.rejects(
    startServer(live.path, () => undefined),
    untrusted(/the socket '.*live' belongs to user/),
  );
  // A dead one: root could replace it, and must not.
  const dead = join(dir, 'dead');
  await deadSocket(dead);
  chownSync(dead, owner.uid, owner.gid);
  const ino = lstatSync(dead).ino;
  await assert.rejects(
    startServer(dead, () => undefined),
    untrusted(/the socket '.*dead' belongs to user/),
  );
  assert.equal(lstatSync(dead).ino, ino, 'left alone');
  assert.equal(live.connections, 0, 'not even probed');
  assert.equal(existsSync(`${live.path}.lock`), false, 'no lock left');
});

test('startServer refuses a directory another user owns', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const dir = join(sharedDir(t), 'theirs');
  mkdirSync(dir);
  chmodSync(dir, 0o777);
  chownSync(dir, owner.uid, owner.gid);
  await assert.rejects(
    startServer(join(dir, 's'), () => undefined),
    untrusted(/the directory '.*theirs' of the socket/),
  );
  assert.equal(existsSync(join(dir, 's.lock')), false, 'no lock made there');
});

test('plain clients: checkOwner refuses another user socket; without it they connect, as Git does', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const squatter = await squat(t, owner, sharedDir(t));
  const path = squatter.path;
  await assert.rejects(connect(path, { checkOwner: true }), untrusted(/belongs to user/));
  await assert.rejects(
    sendCommand(path, 'secret', { checkOwner: true, waitIfBusy: true }),
    untrusted(/belongs to user/),
  );
  const result = await tryConnect(path, { checkOwner: true });
  assert.equal(result.state, ActiveState.OTHER_ERROR);
  assert.equal((result as { error?: SimpleIpcError }).error?.code, 'ERR_IPC_UNTRUSTED_OWNER');
  assert.equal(squatter.connections, 0, 'checked before connecting');
  // The default is Git's: no check.
  assert.equal((await sendCommand(path, 'hello')).toString(), 'squat');
  assert.equal(squatter.received, '0009hello0000');
});

test('checkOwner: our own server passes, in our own directory and in a shared one', async (t) => {
  for (const dir of [tempDir(t), sharedDir(t)]) {
    const path = join(dir, 's');
    const server = await startServer(path, (_request, reply) => reply('ours'));
    t.after(() => server.destroy());
    assert.equal((await sendCommand(path, 'x', { checkOwner: true })).toString(), 'ours');
    const connection = await connectOrStart(path, { command: join(dir, 'no-such-program') });
    assert.equal((await connection.send('x')).toString(), 'ours');
  }
});

/**
 * Review (another user of the same machine): defects found by acting as a second local user
 * (`nobody`) against the owner checks (src/trust.ts), the per-user directory
 * (src/socket-dir.ts), the start-up lock (src/lock.ts) and daemons on demand (src/daemon.ts).
 * Each test asserts what docs/security.md, docs/daemons.md or the TSDoc promise, and failed
 * when it was written.
 *
 * Races "between the check and the use" are made deterministic by wrapping `fs/promises`'
 * `lstat` (the call the owner checks make) and publishing it to the library's ESM bindings with
 * `syncBuiltinESMExports()`: the wrapper does, at that exact moment, what a racing process does
 * at a lucky moment (a real `nobody` process that binds and unlinks in a loop won the same race
 * 4 times in 8 s against `sendCommand(path, secret, { checkOwner: true })` in a 1777 directory).
 */

import assert from 'node:assert/strict';
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import {
  connectOrStart,
  type SimpleIpcError,
  sendCommand,
  startServer,
  userSocketDirectory,
} from '../src/index.js';
import { otherOwnerOrSkip, runProcess, tempDir, test } from './helpers.js';

const require = createRequire(import.meta.url);

interface Squatter {
  readonly path: string;
  readonly server: NetServer;
  connections: number;
  received: string;
}

/** A shared directory, as /tmp is (mode 1777), removed after the test. */
function sharedDir(t: TestContext): string {
  const dir = tempDir(t);
  chmodSync(dir, 0o1777);
  return dir;
}

/** A server that records what it receives and answers `squat`; not listening yet. */
function squatter(t: TestContext, path: string): Squatter {
  const sockets = new Set<Socket>();
  const s: Squatter = {
    path,
    connections: 0,
    received: '',
    server: createServer((c) => {
      s.connections++;
      sockets.add(c);
      c.on('error', () => {});
      c.on('data', (chunk: Buffer) => {
        s.received += chunk.toString('latin1');
        if (s.received.endsWith('0000')) c.end('0009squat0000');
      });
    }),
  };
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => {
      if (s.server.listening) s.server.close(() => resolve());
      else resolve();
    });
  });
  return s;
}

/** Makes `s` listen at its path as another user's socket (owner `owner`, mode 0666). */
async function squat(s: Squatter, owner: { uid: number; gid: number }): Promise<void> {
  await new Promise<void>((resolve) => s.server.listen(s.path, resolve));
  chmodSync(s.path, 0o666);
  chownSync(s.path, owner.uid, owner.gid);
}

type Lstat = (path: string, ...rest: unknown[]) => Promise<unknown>;

/**
 * Wraps `fs/promises.lstat` for the library until the test ends: `hook(path, call)` runs for
 * every call, with the real lstat as `call`.
 */
function hookLstat(
  t: TestContext,
  hook: (path: string, call: () => Promise<unknown>) => Promise<unknown>,
): void {
  const fsp = require('node:fs/promises') as { lstat: Lstat };
  const real = fsp.lstat;
  fsp.lstat = (path: string, ...rest: unknown[]) => hook(path, () => real(path, ...rest));
  syncBuiltinESMExports();
  t.after(() => {
    fsp.lstat = real;
    syncBuiltinESMExports();
  });
}

function code(expected: string) {
  return (err: SimpleIpcError): boolean => {
    assert.equal(err.code, expected, err.message);
    return true;
  };
}

test('checkOwner: a socket put at the path after the check and removed before the re-check receives the request', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const path = join(sharedDir(t), 'app.sock');
  const s = squatter(t, path);
  // The first look at the path (before the connect) finds nothing; the other user then binds
  // there, and removes its socket (its own file, allowed in a sticky directory) once it has the
  // connection, before the second look.
  let looks = 0;
  hookLstat(t, async (p, call) => {
    if (p !== path) return call();
    looks++;
    if (looks === 1) {
      try {
        return await call();
      } finally {
        await squat(s, owner);
      }
    }
    if (existsSync(path)) unlinkSync(path);
    return call();
  });
  await assert.rejects(
    sendCommand(path, 'secret', { checkOwner: true }),
    code('ERR_IPC_UNTRUSTED_OWNER'),
  );
  assert.equal(s.received, '', 'another user socket never sees the request (docs/security.md)');
});

test('connectOrStart: a socket put at the path after the check and removed before the re-check is returned', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const path = join(sharedDir(t), 'app.sock');
  const s = squatter(t, path);
  let looks = 0;
  hookLstat(t, async (p, call) => {
    if (p !== path) return call();
    looks++;
    if (looks === 1) {
      try {
        return await call();
      } finally {
        await squat(s, owner);
      }
    }
    if (existsSync(path)) unlinkSync(path);
    return call();
  });
  const result = await connectOrStart(path, {
    command: join(tempDir(t), 'no-such-program'),
    timeout: 2000,
  }).then(
    async (connection) => {
      const answer = (await connection.send('secret')).toString();
      connection.destroy();
      return answer;
    },
    (err: SimpleIpcError) => err.code,
  );
  assert.equal(s.connections, 0, `another user socket got a connection (result: ${result})`);
  assert.equal(s.received, '');
});

test('checkOwner: a symbolic link at the path to another user socket is followed', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  // The other user's socket in a shared directory; the path the client is given is a link to
  // it, in a directory of the client's own (the link passes the owner check: it is ours).
  const s = squatter(t, join(sharedDir(t), 'app.sock'));
  await squat(s, owner);
  const path = join(tempDir(t), 'app.sock');
  symlinkSync(s.path, path);
  await assert.rejects(
    sendCommand(path, 'secret', { checkOwner: true }),
    code('ERR_IPC_UNTRUSTED_OWNER'),
  );
  await assert.rejects(
    connectOrStart(path, { command: join(tempDir(t), 'no-such-program'), timeout: 2000 }),
    code('ERR_IPC_UNTRUSTED_OWNER'),
  );
  assert.equal(s.received, '', 'the other user socket never sees a request');
  assert.equal(s.connections, 0);
});

test('checkOwner: a client survives a server that resets the connection during the re-check', async (t) => {
  // In a child: the failure is an uncaught 'error' event that ends the process. The server (a
  // worker thread that blocks, so the connection waits in its backlog) closes its listener while
  // the client is between its connect and its second owner check: the kernel resets the
  // connection, and nothing listens for 'error' on the socket during that await. A racing
  // squatter that closes its listener does the same (seen: the client process died).
  const path = join(tempDir(t), 's');
  const library = new URL('../src/index.js', import.meta.url).href;
  const script = `
    import { Worker } from 'node:worker_threads';
    import { once } from 'node:events';
    import { createRequire, syncBuiltinESMExports } from 'node:module';
    const fsp = createRequire(import.meta.url)('node:fs/promises');
    const { sendCommand } = await import(process.argv[1]);
    const path = process.argv[2];
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(\`
      const { workerData, parentPort } = await import('node:worker_threads');
      const { createServer } = await import('node:net');
      const server = createServer(() => {});
      server.listen(workerData.path, () => {
        parentPort.postMessage('listening');
        Atomics.wait(workerData.flag, 0, 0);
        server.close();
        parentPort.postMessage('closed');
      });
    \`, { eval: true, workerData: { path, flag } });
    await once(worker, 'message');
    // The client's socket, to wait for the reset to reach it rather than guess how long.
    const net = await import('node:net');
    const sockets = [];
    const connect = net.Socket.prototype.connect;
    net.Socket.prototype.connect = function (...args) {
      sockets.push(this);
      return connect.apply(this, args);
    };
    const real = fsp.lstat;
    let looks = 0;
    fsp.lstat = async (p, ...rest) => {
      if (p === path && ++looks === 2) {
        Atomics.store(flag, 0, 1);
        Atomics.notify(flag, 0);
        await once(worker, 'message');
        for (let i = 0; i < 10000 && !sockets.every((s) => s.destroyed); i++) {
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
      return real(p, ...rest);
    };
    syncBuiltinESMExports();
    try {
      await sendCommand(path, 'x', { checkOwner: true });
      console.log('answered');
    } catch (err) {
      console.log('rejected ' + err.code);
    }
    await worker.terminate();
  `;
  const r = await runProcess(
    process.execPath,
    ['--input-type=module', '-e', script, library, path],
    { timeoutMs: 20_000 },
  );
  assert.equal(r.code, 0, `the client process died: ${r.stderr}`);
  assert.match(r.stdout.toString(), /^(answered|rejected ERR_IPC_\w+)\n$/);
});

test('userSocketDirectory: XDG_RUNTIME_DIR through another user symbolic link, with a trailing slash', (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const shared = sharedDir(t);
  const mine = join(shared, 'mine');
  mkdirSync(mine, { mode: 0o700 });
  // The other user's link, which they may point elsewhere at any time.
  const link = join(shared, 'link');
  symlinkSync(mine, link);
  lchownSync(link, owner.uid, owner.gid);
  // Without the slash it is refused ("is a symbolic link"); with it, lstat follows the link.
  assert.throws(
    () => userSocketDirectory({ env: { XDG_RUNTIME_DIR: link } }),
    code('ERR_IPC_UNSAFE_DIRECTORY'),
  );
  for (const variant of [`${link}/`, `${link}/.`]) {
    assert.throws(
      () => userSocketDirectory({ env: { XDG_RUNTIME_DIR: variant } }),
      code('ERR_IPC_UNSAFE_DIRECTORY'),
      `XDG_RUNTIME_DIR=${variant} goes through another user symbolic link`,
    );
  }
});

test('start-up lock: another user lock naming a live process (pid 1) blocks the server, and connectOrStart waits its whole timeout', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const path = join(sharedDir(t), 'd.sock');
  writeFileSync(`${path}.lock`, '1\n');
  chownSync(`${path}.lock`, owner.uid, owner.gid);
  // Not ours: no server of this user wrote it. Seen: ERR_IPC_LOCKED ("try again ... remove
  // it"), which the user can do neither of.
  const serverError = await startServer(path, () => undefined).then(
    async (server) => {
      await server.destroy();
      return 'started';
    },
    (e: SimpleIpcError) => e.code,
  );
  // The daemon fails at once (ERR_IPC_LOCKED), but startDaemon keeps waiting while the lock
  // looks held: seen ERR_IPC_DAEMON_NOT_ONLINE ("nothing listens") after the full timeout.
  const started = performance.now();
  const script = `import(${JSON.stringify(new URL('../src/index.js', import.meta.url).href)}).then((m) => m.startServer(${JSON.stringify(path)}, () => undefined)).then((s) => s.stop())`;
  const err = await connectOrStart(path, {
    command: process.execPath,
    args: ['-e', script],
    timeout: 5000,
  }).then(
    (connection) => {
      connection.destroy();
      return undefined;
    },
    (e: SimpleIpcError) => e,
  );
  const took = performance.now() - started;
  assert.deepEqual(
    {
      startServer: serverError,
      connectOrStart: err?.code ?? 'connected',
      waitedWholeTimeout: took >= 3000,
    },
    {
      startServer: 'ERR_IPC_UNTRUSTED_OWNER',
      connectOrStart: 'ERR_IPC_UNTRUSTED_OWNER',
      waitedWholeTimeout: false,
    },
    `connectOrStart took ${Math.round(took)} ms: ${err?.message ?? ''}`,
  );
});

test('start-up lock: another user lock is not deleted (a dead socket of theirs is not replaced, even by root)', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const path = join(sharedDir(t), 'd.sock');
  const lock = `${path}.lock`;
  // A pid that names no process: stale, and another user's file.
  writeFileSync(lock, '999999999\n');
  chownSync(lock, owner.uid, owner.gid);
  const outcome = await startServer(path, () => undefined).then(
    async (server) => {
      await server.destroy();
      return 'started';
    },
    (e: SimpleIpcError) => e.code,
  );
  assert.equal(existsSync(lock), true, `another user lock was deleted (server: ${outcome})`);
});

test('connectOrStart: the log file is opened through another user symbolic link, appending to a file of ours', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const shared = sharedDir(t);
  const path = join(shared, 'app.sock');
  const precious = join(tempDir(t), 'precious');
  writeFileSync(precious, 'PRECIOUS\n', { mode: 0o600 });
  // docs/daemons.md's own example: logFile `${path}.log`. The other user put a link there first.
  const logFile = `${path}.log`;
  symlinkSync(precious, logFile);
  lchownSync(logFile, owner.uid, owner.gid);
  const outcome = await connectOrStart(path, {
    command: process.execPath,
    args: ['-e', 'console.log("daemon output")'],
    logFile,
    timeout: 5000,
  }).then(
    (connection) => {
      connection.destroy();
      return 'connected';
    },
    (e: SimpleIpcError) => e.code,
  );
  assert.equal(
    readFileSync(precious, 'utf8'),
    'PRECIOUS\n',
    `a file of ours was written through the other user link (outcome: ${outcome})`,
  );
});

/**
 * Another user's socket or directory (src/trust.ts): servers and connectOrStart refuse them
 * with ERR_IPC_UNTRUSTED_OWNER; plain clients do when asked (`checkOwner`). The squatter here
 * is a socket in a shared (1777) directory, owned by another user, mode 0666, that records
 * what it receives.
 */

import assert from 'node:assert/strict';
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
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
import {
  deadSocket,
  otherOwnerOrSkip,
  runProcess,
  sharedDir,
  tempDir,
  test,
  unixOnly,
} from './helpers.js';

const require = createRequire(import.meta.url);

interface Squatter {
  readonly path: string;
  /** Connections it accepted. */
  connections: number;
  /** Every byte it received. */
  received: string;
}

/**
 * Another user's socket at `path`, mode 0666 once it listens, answering every request with a
 * response of its own; not listening until `listen()`; closed after the test.
 */
function squatter(
  t: TestContext,
  owner: { uid: number; gid: number },
  path: string,
): Squatter & { listen(): Promise<void> } {
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
  const squatter = {
    path,
    connections: 0,
    received: '',
    async listen(): Promise<void> {
      await new Promise<void>((resolve) => server.listen(path, resolve));
      chmodSync(path, 0o666);
      chownSync(path, owner.uid, owner.gid);
    },
  };
  t.after(() => {
    // A client that was wrongly let through may still hold its connection.
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => {
      if (server.listening) server.close(() => resolve());
      else resolve();
    });
  });
  return squatter;
}

/** Another user's listening socket at `dir/name` (see {@link squatter}). */
async function squat(
  t: TestContext,
  owner: { uid: number; gid: number },
  dir: string,
  name = 's',
): Promise<Squatter> {
  const s = squatter(t, owner, join(dir, name));
  await s.listen();
  return s;
}

type LstatCallback = (err: Error | null, stats?: unknown) => void;
type Lstat = (path: string, callback: LstatCallback) => void;

/**
 * Wraps `fs.lstat` for the library until the test ends: `hook(path, call)` runs for every
 * call, with the real lstat as `call`. (The library looks files up with the callback API of the
 * `node:fs` module object, read at each call, so replacing it there is seen at once.) It makes
 * a race "between the check and the use" deterministic: the hook does, at that exact moment,
 * what a racing process does at a lucky moment (a real `nobody` process binding and unlinking
 * in a loop won the race below 4 times in 8 s).
 */
function hookLstat(
  t: TestContext,
  hook: (path: string, call: () => Promise<unknown>) => Promise<unknown>,
): void {
  const fs = require('node:fs') as { lstat: Lstat };
  const real = fs.lstat;
  const call = (path: string): Promise<unknown> =>
    new Promise((resolve, reject) => {
      real(path, (err, stats) => (err === null ? resolve(stats) : reject(err)));
    });
  fs.lstat = (path, callback) => {
    hook(path, () => call(path)).then(
      (stats) => callback(null, stats),
      (err: Error) => callback(err),
    );
  };
  t.after(() => {
    fs.lstat = real;
  });
}

/**
 * Hooks lstat so that the first look at `path` finds nothing and another user's socket is
 * then bound there; every later look first removes that socket (its owner may, in a sticky
 * directory), as it would once it has the connection.
 */
function squatBetweenLooks(t: TestContext, s: Squatter & { listen(): Promise<void> }): void {
  let looks = 0;
  hookLstat(t, async (p, call) => {
    if (p !== s.path) return call();
    looks++;
    if (looks === 1) {
      try {
        return await call();
      } finally {
        await s.listen();
      }
    }
    if (existsSync(s.path)) unlinkSync(s.path);
    return call();
  });
}

function code(expected: string) {
  return (err: SimpleIpcError): boolean => {
    assert.equal(err.code, expected, err.message);
    return true;
  };
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

test('checkOwner: a socket put at the path after the check and removed before the re-check gets no request', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const s = squatter(t, owner, join(sharedDir(t), 'app.sock'));
  // The first look at the path (before the connect) finds nothing; the other user then binds
  // there, and removes its socket once it has the connection, before the second look.
  squatBetweenLooks(t, s);
  await assert.rejects(
    sendCommand(s.path, 'secret', { checkOwner: true }),
    code('ERR_IPC_UNTRUSTED_OWNER'),
  );
  assert.equal(s.received, '', 'another user socket never sees the request (docs/security.md)');
});

test('connectOrStart: a socket put at the path after the check and removed before the re-check gets no connection', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const s = squatter(t, owner, join(sharedDir(t), 'app.sock'));
  squatBetweenLooks(t, s);
  const result = await connectOrStart(s.path, {
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

test(
  'checkOwner: a socket of ours that appears during the connect is connected to again',
  { skip: unixOnly('socket files') },
  async (t) => {
    // Nothing at the first look; our own server's socket is there when the connect is made. The
    // first connection cannot be told from one to a socket put there and removed meanwhile: it
    // is closed unused, and a second connect between two looks at that socket is used.
    const path = join(tempDir(t), 's');
    let connections = 0;
    const server = createServer((c) => {
      connections++;
      c.on('error', () => {});
      let received = '';
      c.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1');
        if (received.endsWith('0000')) c.end('0008ours0000');
      });
    });
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    let looks = 0;
    hookLstat(t, async (p, call) => {
      if (p !== path || ++looks > 1) return call();
      try {
        return await call();
      } finally {
        await new Promise<void>((resolve) => server.listen(path, resolve));
      }
    });
    assert.equal((await sendCommand(path, 'x', { checkOwner: true })).toString(), 'ours');
    assert.equal(connections, 2, 'the first connection is not used');
  },
);

test('checkOwner: a symbolic link at the path to another user socket is refused', async (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  // The other user's socket in a shared directory; the path the client is given is a link to
  // it, in a directory of the client's own (the link passes the owner check: it is ours).
  const s = await squat(t, owner, sharedDir(t), 'app.sock');
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
  await assert.rejects(
    startServer(path, () => undefined),
    untrusted(/is a symbolic link to a file of user/),
  );
  assert.equal(s.received, '', 'the other user socket never sees a request');
  assert.equal(s.connections, 0);
});

test(
  'checkOwner: a symbolic link at the path is refused even to a socket of ours; without the check it is followed',
  { skip: unixOnly('socket files') },
  async (t) => {
    const dir = tempDir(t);
    const real = join(dir, 'real');
    const server = await startServer(real, (_request, reply) => reply('ours'));
    t.after(() => server.destroy());
    const path = join(dir, 'link');
    symlinkSync(real, path);
    await assert.rejects(sendCommand(path, 'x', { checkOwner: true }), (err: SimpleIpcError) => {
      assert.equal(err.code, 'ERR_IPC_UNTRUSTED_OWNER');
      assert.match(err.message, /is a symbolic link: .*give the path the link points to/);
      return true;
    });
    assert.equal((await sendCommand(path, 'x')).toString(), 'ours');
  },
);

test(
  'checkOwner: a client survives a server that resets the connection during the re-check',
  { skip: unixOnly('socket files (checkOwner looks at nothing with named pipes)') },
  async (t) => {
    // In a child: the failure is an uncaught 'error' event that ends the process. The server (a
    // worker thread that blocks, so the connection waits in its backlog) closes its listener while
    // the client is between its connect and its second owner check: the kernel resets the
    // connection, and nothing listened for 'error' on the socket during that await. A racing
    // squatter that closes its listener does the same (seen: the client process died).
    const path = join(tempDir(t), 's');
    const library = new URL('../src/index.js', import.meta.url).href;
    const script = `
    import { Worker } from 'node:worker_threads';
    import { once } from 'node:events';
    import { createRequire } from 'node:module';
    const fs = createRequire(import.meta.url)('node:fs');
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
    const real = fs.lstat;
    let looks = 0;
    fs.lstat = async (p, callback) => {
      if (p === path && ++looks === 2) {
        Atomics.store(flag, 0, 1);
        Atomics.notify(flag, 0);
        await once(worker, 'message');
        for (let i = 0; i < 10000 && !sockets.every((s) => s.destroyed); i++) {
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
      real(p, callback);
    };
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
  },
);

test('start-up lock: another user lock naming a live process (pid 1) is refused at once, by startServer and connectOrStart', async (t) => {
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
  // The daemon fails at once, and startDaemon waited while the lock looked held: seen
  // ERR_IPC_DAEMON_NOT_ONLINE ("nothing listens") after the full timeout.
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
  assert.match(
    err?.message ?? '',
    /lock file '.*d\.sock\.lock' belongs to user .*userSocketDirectory\(\)/,
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
  assert.equal(outcome, 'ERR_IPC_UNTRUSTED_OWNER');
});

test('connectOrStart: the log file is not opened through another user symbolic link', async (t) => {
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
  assert.equal(outcome, 'ERR_IPC_UNTRUSTED_OWNER');
});

test(
  'startDaemon: a log file that is a symbolic link of ours, or another user file, is refused and nothing is spawned',
  { skip: unixOnly('file owners and O_NOFOLLOW') },
  async (t) => {
    const dir = tempDir(t);
    const precious = join(dir, 'precious');
    writeFileSync(precious, 'PRECIOUS\n', { mode: 0o600 });
    const started = join(dir, 'started');
    const daemon = {
      command: process.execPath,
      args: ['-e', `require('node:fs').writeFileSync(${JSON.stringify(started)}, '')`],
      timeout: 2000,
    };
    const link = join(dir, 'link.log');
    symlinkSync(precious, link);
    await assert.rejects(
      startDaemon(join(dir, 's'), { ...daemon, logFile: link }),
      (err: SimpleIpcError) => {
        assert.equal(err.code, 'ERR_IPC_DAEMON_FAILED');
        assert.match(
          err.message,
          /the log file '.*link\.log' is a symbolic link; it is not opened/,
        );
        return true;
      },
    );
    const owner = otherOwnerOrSkip(t);
    if (owner !== undefined) {
      const theirs = join(dir, 'theirs.log');
      writeFileSync(theirs, '', { mode: 0o666 });
      chownSync(theirs, owner.uid, owner.gid);
      await assert.rejects(
        startDaemon(join(dir, 's'), { ...daemon, logFile: theirs }),
        (err: SimpleIpcError) => {
          assert.equal(err.code, 'ERR_IPC_UNTRUSTED_OWNER');
          assert.match(err.message, /is not yours and belongs to user \d+/);
          return true;
        },
      );
    }
    assert.equal(readFileSync(precious, 'utf8'), 'PRECIOUS\n');
    assert.equal(existsSync(started), false, 'nothing was spawned');
  },
);

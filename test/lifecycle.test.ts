/**
 * The server socket's life, in process and across real processes: the start-up lock (stale,
 * fresh, contended), the live check, atomic install, permissions, ownership, theft, removal,
 * long paths.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { lstat } from 'node:fs/promises';
import {
  createServer,
  type Server as NetServer,
  connect as netConnect,
  type Socket,
} from 'node:net';
import { basename, join } from 'node:path';
import { SOCKET_PATH_MAX } from '../src/address.js';
import {
  ActiveState,
  getActiveState,
  QUIT,
  type Server,
  sendCommand,
  startServer,
} from '../src/index.js';
import { acquireLock, isLockHeld, LOCK_STALE_MS } from '../src/lock.js';
import { describeTheft, removeIfOurs } from '../src/ownership.js';
import {
  delay,
  gate,
  LOCK_FILE_ONLY,
  otherUserOrSkip,
  pathOfLength,
  rawConnect,
  runProcess,
  serverPath,
  startRaceTest,
  tempDir,
  test,
  needsProc,
  unixOnly,
  until,
} from './helpers.js';

async function handler(request: Buffer, reply: (c: string) => Promise<void>) {
  const text = request.toString();
  if (text === 'quit') return QUIT;
  await reply(text === 'ping' ? 'pong' : `echo:${text}`);
  return undefined;
}

/** Starts a server that is stopped when the test ends. */
async function serve(
  t: { after: (fn: () => unknown) => void },
  path: string,
  options: Parameters<typeof startServer>[2] = {},
): Promise<Server> {
  const server = await startServer(path, handler, options);
  t.after(() => server.destroy());
  return server;
}

/** A plain Node server put at `path` by rename, as another program would; closed after. */
async function foreignSocket(
  t: { after: (fn: () => unknown) => void },
  path: string,
): Promise<{ server: NetServer; ino: number }> {
  const temporary = `${path}.foreign-${process.pid}`;
  const server = createServer((c) => {
    c.on('error', () => {}); // probes hang up at once
    c.resume(); // read on, to see the client's hang-up and close
    c.end('0008mine0000');
  });
  await new Promise<void>((resolve) => server.listen(temporary, resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  renameSync(temporary, path);
  return { server, ino: lstatSync(path).ino };
}

/** Leaves a socket at `path` that nobody listens on, as a killed server does. */
async function deadSocket(path: string): Promise<void> {
  const temporary = `${path}.dead-${process.pid}`;
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(temporary, resolve));
  renameSync(temporary, path);
  // Node unlinks the name it bound (gone already): the socket file at `path` stays, dead.
  await new Promise((resolve) => server.close(resolve));
  assert.ok(lstatSync(path).isSocket());
}

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

test(
  'start-up leaves the socket alone in its directory, owner-only, and no lock',
  { skip: unixOnly('the socket file, its mode and the start-up lock') },
  async (t) => {
    const { dir, path } = serverPath(t);
    await serve(t, path);
    assert.deepEqual(readdirSync(dir), ['s']);
    const stats = lstatSync(path);
    assert.ok(stats.isSocket());
    assert.equal(stats.mode & 0o777, 0o600);
    assert.equal((await sendCommand(path, 'ping')).toString(), 'pong');
  },
);

test(
  'the mode option widens the permissions; a bad mode is refused',
  { skip: unixOnly('file modes (a pipe gets a default DACL: docs/lifecycle.md)') },
  async (t) => {
    const dir = tempDir(t);
    await serve(t, join(dir, 'shared'), { mode: 0o660 });
    assert.equal(lstatSync(join(dir, 'shared')).mode & 0o777, 0o660);
    for (const mode of [0o1000, -1, 1.5, Number.NaN]) {
      await assert.rejects(startServer(join(dir, 'bad'), handler, { mode }), {
        code: 'ERR_IPC_INVALID_ARGUMENT',
      });
    }
    assert.deepEqual(readdirSync(dir), ['shared']);
  },
);

test(
  'a live server is never replaced: ERR_IPC_IN_USE, its socket untouched',
  {
    skip: unixOnly(
      'a foreign socket file put in place by rename (server.test.ts checks a live pipe)',
    ),
  },
  async (t) => {
    const { dir, path } = serverPath(t);
    const { ino } = await foreignSocket(t, path);
    await assert.rejects(startServer(path, handler), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_IPC_IN_USE');
      assert.match(err.message, /already in use/);
      return true;
    });
    assert.equal(lstatSync(path).ino, ino);
    assert.equal(await getActiveState(path), ActiveState.LISTENING);
    assert.deepEqual(readdirSync(dir), ['s']);
  },
);

test(
  'a live server too busy to accept is not replaced either',
  {
    skip:
      unixOnly('a full Unix listen backlog (client.test.ts checks a busy pipe)') ||
      (process.platform !== 'linux' &&
        'a full listen backlog fails connects with EAGAIN on Linux only; on macOS and the BSDs it refuses them as a dead socket does, so a server that never drains it counts as dead (docs/lifecycle.md; refusal.test.ts covers the probes)'),
  },
  async (t) => {
    const { path } = serverPath(t);
    // A server that listens with a backlog of 1 and then never accepts (its loop is blocked).
    const busy = spawn(
      process.execPath,
      [
        '-e',
        `require('net').createServer().listen({ path: process.argv[1], backlog: 1 }, () => {
         console.log('ready'); for (;;);
       });`,
        path,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    t.after(() => busy.kill('SIGKILL'));
    await new Promise((resolve) => busy.stdout.once('data', resolve));
    const pending: Socket[] = [];
    t.after(() => {
      for (const s of pending) s.destroy();
    });
    let full = false;
    for (let i = 0; i < 50 && !full; i++) {
      const socket = netConnect({ path });
      pending.push(socket);
      full = await new Promise<boolean>((resolve) => {
        socket.once('connect', () => resolve(false));
        socket.once('error', (err: Error & { code?: string }) => resolve(err.code === 'EAGAIN'));
      });
    }
    assert.ok(full, 'the backlog never filled');
    const ino = lstatSync(path).ino;
    await assert.rejects(startServer(path, handler), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_IPC_IN_USE');
      assert.match(err.message, /too busy/);
      return true;
    });
    assert.equal(lstatSync(path).ino, ino);
  },
);

test(
  'a dead socket is replaced, and the path never goes missing meanwhile',
  { skip: unixOnly('dead socket files (a pipe vanishes with its last handle)') },
  async (t) => {
    const { path } = serverPath(t);
    await deadSocket(path);
    const before = lstatSync(path).ino;
    let looking = true;
    let missing = 0;
    const watcher = (async () => {
      while (looking) {
        try {
          await lstat(path);
        } catch {
          missing++;
        }
      }
    })();
    await serve(t, path);
    looking = false;
    await watcher;
    assert.equal(missing, 0);
    assert.notEqual(lstatSync(path).ino, before);
    assert.equal((await sendCommand(path, 'ping')).toString(), 'pong');
  },
);

test(
  'a regular file, a directory or a symbolic link at the path is left alone',
  { skip: unixOnly('files at the path (a pipe name never touches the file system)') },
  async (t) => {
    const dir = tempDir(t);
    const live = join(dir, 'live');
    await serve(t, live);
    const cases: [string, () => void, () => void][] = [
      [
        'file',
        () => writeFileSync(join(dir, 'file'), 'precious'),
        () => assert.equal(readFileSync(join(dir, 'file'), 'utf8'), 'precious'),
      ],
      [
        'dir',
        () => mkdirSync(join(dir, 'dir')),
        () => assert.ok(lstatSync(join(dir, 'dir')).isDirectory()),
      ],
      [
        'dangling',
        () => symlinkSync(join(dir, 'nowhere'), join(dir, 'dangling')),
        () => assert.equal(readlinkSync(join(dir, 'dangling')), join(dir, 'nowhere')),
      ],
      [
        'tolive',
        () => symlinkSync(live, join(dir, 'tolive')),
        () => assert.equal(readlinkSync(join(dir, 'tolive')), live),
      ],
    ];
    for (const [name, make, check] of cases) {
      make();
      await assert.rejects(
        startServer(join(dir, name), handler),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_IPC_INVALID_PATH', name);
          assert.match(err.message, /left alone/);
          return true;
        },
      );
      check();
    }
    // No lock files, no temporary directories left behind.
    assert.deepEqual(readdirSync(dir).sort(), ['dangling', 'dir', 'file', 'live', 'tolive']);
  },
);

test(
  'a lock held by a live process is respected: ERR_IPC_LOCKED, lock untouched',
  { skip: LOCK_FILE_ONLY },
  async (t) => {
    const { dir, path } = serverPath(t);
    writeFileSync(`${path}.lock`, `${process.pid}\n`);
    await assert.rejects(startServer(path, handler), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_IPC_LOCKED');
      assert.match(err.message, new RegExp(`held by process ${process.pid}`));
      assert.match(err.message, /which is running .*stop it or remove the lock file/);
      return true;
    });
    assert.equal(readFileSync(`${path}.lock`, 'utf8'), `${process.pid}\n`);
    assert.deepEqual(readdirSync(dir), ['s.lock']);
    assert.equal(isLockHeld(`${path}.lock`), true);
  },
);

test(
  'a fresh lock with no owner (as Git writes) is respected; an old one is broken',
  { skip: LOCK_FILE_ONLY },
  async (t) => {
    const { dir, path } = serverPath(t);
    writeFileSync(`${path}.lock`, '');
    await assert.rejects(startServer(path, handler), { code: 'ERR_IPC_LOCKED' });
    assert.ok(existsSync(`${path}.lock`));
    const old = (Date.now() - LOCK_STALE_MS - 5000) / 1000;
    utimesSync(`${path}.lock`, old, old);
    assert.equal(isLockHeld(`${path}.lock`), false);
    await serve(t, path);
    assert.deepEqual(readdirSync(dir), ['s']);
  },
);

test('a lock whose owner is dead is broken at once', { skip: LOCK_FILE_ONLY }, async (t) => {
  const { dir, path } = serverPath(t);
  writeFileSync(`${path}.lock`, `${await deadPid()}\n`);
  assert.equal(isLockHeld(`${path}.lock`), false);
  await serve(t, path);
  assert.deepEqual(readdirSync(dir), ['s']);
});

test(
  'a lock whose pid now names a younger process (pid reuse) is broken',
  {
    // The lock exists on Unix only; the library reads a process's start time from /proc on
    // Linux only (src/lock.ts), and elsewhere keeps a lock whose pid runs.
    skip:
      LOCK_FILE_ONLY ||
      (process.platform !== 'linux' &&
        'the start-up lock reads process start times on Linux only (src/lock.ts)') ||
      needsProc('process start times'),
  },
  async (t) => {
    const { dir, path } = serverPath(t);
    // Our own pid, in a lock written long before this process started.
    writeFileSync(`${path}.lock`, `${process.pid}\n`);
    const old = (Date.now() - 3_600_000) / 1000;
    utimesSync(`${path}.lock`, old, old);
    assert.equal(isLockHeld(`${path}.lock`), false);
    await serve(t, path);
    assert.deepEqual(readdirSync(dir), ['s']);
  },
);

test(
  'the lock admits one holder at a time, also while racers break a stale lock',
  { skip: LOCK_FILE_ONLY },
  async (t) => {
    const lock = join(tempDir(t), 's.lock');
    const dead = await deadPid();
    let inside = 0;
    let most = 0;
    let entered = 0;
    for (let round = 0; round < 40; round++) {
      writeFileSync(lock, `${dead}\n`);
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          const held = await acquireLock(lock, 10_000);
          inside++;
          entered++;
          most = Math.max(most, inside);
          await delay(1); // hold the lock a moment, so that another would-be holder overlaps
          inside--;
          await held.release();
        }),
      );
    }
    assert.equal(entered, 320);
    assert.equal(most, 1);
    assert.equal(existsSync(lock), false);
    assert.equal(existsSync(`${lock}.break`), false);
  },
);

startRaceTest(
  test,
  'servers started at once in one process: exactly one serves',
  3,
  async (_t, path) => {
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, () => startServer(path, handler)),
    );
    const servers = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const codes = results.flatMap((r) =>
      r.status === 'rejected' ? [(r.reason as { code: string }).code] : [],
    );
    assert.equal(servers.length, 1);
    // A loser that found the winner serving says IN_USE; one still waiting for the lock when
    // its lockTimeout ran out (a loaded machine) says LOCKED. Both are right.
    assert.equal(codes.length, 5);
    for (const code of codes) assert.match(code, /^ERR_IPC_(IN_USE|LOCKED)$/);
    return servers[0]!;
  },
);

// A child process that loads the library, says "ready", starts a server on "go" and says how
// it went, then stops on "stop". Lets the parent start several at the same instant.
const RACER = `
const { startServer } = await import(process.argv[1]);
const path = process.argv[2];
let server;
let input = '';
process.stdin.on('data', async (chunk) => {
  input += chunk;
  if (input === 'go\\n') {
    try {
      server = await startServer(path, (r, reply) => reply('pong'));
      process.stdout.write('ok\\n');
    } catch (err) {
      process.stdout.write(err.code + '\\n');
      process.exit(0);
    }
  } else if (input === 'go\\nstop\\n') {
    await server.stop();
    process.exit(0);
  }
});
process.stdout.write('ready\\n');
`;

function racer(path: string): {
  child: ChildProcess;
  lines: string[];
  next: () => Promise<string>;
} {
  const index = new URL('../src/index.js', import.meta.url).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e', RACER, index, path], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  let buffered = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const waiter = waiting.shift();
      if (waiter) waiter(line);
      else lines.push(line);
    }
  });
  const next = (): Promise<string> => {
    const line = lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve, reject) => {
      waiting.push(resolve);
      child.once('exit', () => reject(new Error('racer exited')));
    });
  };
  return { child, lines, next };
}

startRaceTest(
  test,
  'servers started at the same instant in separate processes: exactly one serves',
  3,
  async (t, path, round) => {
    const racers = Array.from({ length: 4 }, () => racer(path));
    t.after(() => {
      for (const r of racers) r.child.kill('SIGKILL');
    });
    for (const r of racers) assert.equal(await r.next(), 'ready');
    for (const r of racers) r.child.stdin!.write('go\n');
    const answers = await Promise.all(racers.map((r) => r.next()));
    // Losers say IN_USE, or LOCKED when the lock was still held at their lockTimeout.
    assert.equal(
      answers.filter((a) => a === 'ok').length,
      1,
      `round ${round}: ${answers.join(', ')}`,
    );
    for (const a of answers) assert.match(a, /^(ok|ERR_IPC_IN_USE|ERR_IPC_LOCKED)$/);
    const winner = racers[answers.indexOf('ok')]!;
    return {
      stop: async () => {
        const exited = new Promise((resolve) => winner.child.once('exit', resolve));
        winner.child.stdin!.write('stop\n');
        await exited;
      },
    };
  },
);

/** Steals the socket in one of three ways; returns how to check the thief's file is intact. */
async function steal(
  t: { after: (fn: () => unknown) => void },
  path: string,
  how: 'replaced' | 'removed' | 'not-a-socket',
): Promise<() => Promise<void>> {
  if (how === 'removed') {
    unlinkSync(path);
    return () => Promise.resolve(assert.equal(existsSync(path), false));
  }
  if (how === 'not-a-socket') {
    writeFileSync(`${path}.new`, 'thief');
    renameSync(`${path}.new`, path);
    return () => Promise.resolve(assert.equal(readFileSync(path, 'utf8'), 'thief'));
  }
  const { ino } = await foreignSocket(t, path);
  return async () => {
    assert.equal(lstatSync(path).ino, ino);
    assert.equal(await getActiveState(path), ActiveState.LISTENING);
  };
}

/**
 * Asserts that a theft at `stolenAt` stopped the server as docs/lifecycle.md promises, "within
 * about a second" (file-system events make it a few ms; a check every second bounds it when
 * events are lost). The margin is for a loaded machine.
 */
function noticedWithinPromise(stolenAt: number): void {
  const took = performance.now() - stolenAt;
  assert.ok(took < 1000 + 250, `noticed after ${Math.round(took)} ms, not within about 1 s`);
}

for (const how of ['replaced', 'removed', 'not-a-socket'] as const) {
  test(
    `a stolen socket (${how}) is noticed at once; the thief's path is left alone`,
    { skip: unixOnly('socket theft: a pipe has no file to replace or remove') },
    async (t) => {
      const { path } = serverPath(t);
      const server = await serve(t, path);
      const stolenAt = performance.now();
      const check = await steal(t, path, how);
      await server.closed;
      noticedWithinPromise(stolenAt);
      assert.deepEqual(server.stopReason, { kind: 'stolen', why: how });
      await check();
    },
  );
}

test(
  'a server whose directory is removed (temp dirs cleaned) stops by itself',
  { skip: unixOnly('socket theft: a pipe has no file to replace or remove') },
  async (t) => {
    const dir = join(tempDir(t), 'run');
    mkdirSync(dir);
    const server = await serve(t, join(dir, 's'));
    rmSync(dir, { recursive: true });
    const stolenAt = performance.now();
    await server.closed;
    noticedWithinPromise(stolenAt);
    assert.deepEqual(server.stopReason, { kind: 'stolen', why: 'removed' });
    assert.equal(existsSync(dir), false);
  },
);

test(
  "stopping right after a theft leaves the successor's socket (Node's close unlinks)",
  { skip: unixOnly('socket theft: a pipe has no file to replace or remove') },
  async (t) => {
    const { path } = serverPath(t);
    const server = await serve(t, path);
    const check = await steal(t, path, 'replaced');
    await server.stop(); // before the watch has had a chance to notice
    await check();
    assert.equal((await sendCommand(path, 'x')).toString(), 'mine');
  },
);

test(
  'stop removes our own socket, and nothing else',
  { skip: unixOnly('socket files (a pipe vanishes with its last handle)') },
  async (t) => {
    const { dir, path } = serverPath(t);
    const server = await serve(t, path);
    writeFileSync(join(dir, 'other'), 'x');
    await server.stop();
    assert.deepEqual(readdirSync(dir), ['other']);
    assert.deepEqual(server.stopReason, { kind: 'requested' });
  },
);

test(
  'removeIfOurs: only our device and inode, and not while a start-up holds the lock',
  { skip: unixOnly('socket files, devices and inodes') },
  async (t) => {
    const { dir, path } = serverPath(t);
    await deadSocket(path);
    const ours = lstatSync(path);
    const identity = { dev: ours.dev, ino: ours.ino };
    assert.equal(await removeIfOurs(path, { dev: ours.dev, ino: ours.ino + 1 }), false);
    writeFileSync(`${path}.lock`, `${process.pid}\n`);
    assert.equal(await removeIfOurs(path, identity, 20), false);
    assert.ok(existsSync(path));
    unlinkSync(`${path}.lock`);
    assert.equal(await removeIfOurs(path, identity), true);
    assert.deepEqual(readdirSync(dir), []);
    assert.equal(await removeIfOurs(path, identity), false);
  },
);

test(
  'a request that arrives while the server is still starting waits for it; a quit then removes the socket',
  { skip: unixOnly('the start-up lock and the private directory of a socket file') },
  async (t) => {
    // The socket is at the path (so clients can connect) a few steps before startServer is done:
    // its last step removes the private directory the socket was bound in. A quit handled in
    // that window used to stop a server that had no listener yet: the socket was left behind,
    // and the listener, installed after the stop, kept accepting for ever.
    const { dir, path } = serverPath(t);
    const fsp = process.getBuiltinModule('node:fs/promises');
    const rmdir = fsp.rmdir;
    t.after(() => {
      fsp.rmdir = rmdir;
    });
    let starting = true;
    let handledWhileStarting = false;
    const handled = gate();
    let client: Promise<Buffer> | undefined;
    fsp.rmdir = async (...args: Parameters<typeof rmdir>) => {
      fsp.rmdir = rmdir;
      client = sendCommand(path, 'quit');
      // The handler must not run before the server is set up: give it the chance.
      await Promise.race([handled.promise, delay(300)]);
      return rmdir(...args);
    };
    const server = await startServer(path, () => {
      if (starting) handledWhileStarting = true;
      handled.open();
      return Promise.resolve(QUIT);
    });
    starting = false;
    t.after(() => server.destroy());
    assert.ok(client !== undefined, 'the start-up removed its private directory');
    assert.equal(handledWhileStarting, false, 'a handler ran before startServer was done');
    await client;
    await server.closed;
    assert.deepEqual(server.stopReason, { kind: 'quit' });
    assert.deepEqual(readdirSync(dir), [], 'the socket is removed');
    assert.notEqual(await getActiveState(path), ActiveState.LISTENING);
  },
);

test(
  'a probe that comes and goes while the server is still starting is counted',
  { skip: unixOnly('the start-up lock and the private directory of a socket file') },
  async (t) => {
    // A concurrent starter's look, or a status check, can reach the socket in the last steps
    // of the start-up (as in the test above) and hang up before the server is set up.
    const dir = tempDir(t);
    const path = join(dir, 's');
    const fsp = process.getBuiltinModule('node:fs/promises');
    const rmdir = fsp.rmdir;
    t.after(() => {
      fsp.rmdir = rmdir;
    });
    const pipes = (): number =>
      process.getActiveResourcesInfo().filter((kind) => kind === 'PipeWrap').length;
    let closed = false;
    fsp.rmdir = async (...args: Parameters<typeof rmdir>) => {
      fsp.rmdir = rmdir;
      const before = pipes();
      const probe = await rawConnect(path);
      probe.resume();
      probe.end();
      // Both of its ends closed: the server saw the hang-up while it was starting.
      await until('both ends of the probe to close', () => pipes() === before);
      closed = true;
      return rmdir(...args);
    };
    const server = await serve(t, path);
    assert.ok(closed, 'the probe came and went while the server was starting');
    const stats = server.stats();
    assert.equal(stats.connections, 1, 'connections');
    assert.equal(stats.probes, 1, 'probes');
    assert.equal(stats.queued, 0, 'queued');
  },
);

test(
  'removeIfOurs waits out a start-up that holds the lock and finds our server still there',
  { skip: unixOnly('socket files, devices and inodes') },
  async (t) => {
    // A starter that looked while we were still listening gives up with "already in use" and
    // drops the lock; on a loaded machine that can take longer than the start-up lock's 100 ms.
    // Our socket is still ours then, and must not be left behind.
    const { dir, path } = serverPath(t);
    await deadSocket(path);
    const ours = lstatSync(path);
    writeFileSync(`${path}.lock`, `${process.pid}\n`);
    const released = delay(300).then(() => unlinkSync(`${path}.lock`));
    assert.equal(await removeIfOurs(path, { dev: ours.dev, ino: ours.ino }), true);
    await released;
    assert.deepEqual(readdirSync(dir), []);
  },
);

test(
  'removeIfOurs never removes a live socket that got the inode number ours had',
  { skip: unixOnly('socket files, devices and inodes') },
  async (t) => {
    // Our socket's inode is freed once our listener is closed and the socket is replaced or
    // removed, and the next file made may get its number (ext4 hands it out again at once).
    // While a stop waits for the start-up lock, servers can come and go at the path: a live
    // one whose socket has our old number must not be taken for ours.
    const dir = tempDir(t);
    const path = join(dir, 's');
    await deadSocket(path);
    const ours = lstatSync(path);
    writeFileSync(`${path}.lock`, `${process.pid}\n`); // a starter holds the lock
    const fsp = process.getBuiltinModule('node:fs/promises');
    const open = fsp.open;
    t.after(() => {
      fsp.open = open;
    });
    const waiting = gate();
    fsp.open = async (...args: Parameters<typeof open>) => {
      if (args[0] === `${path}.lock`) waiting.open();
      return open(...args);
    };
    const removing = removeIfOurs(path, { dev: ours.dev, ino: ours.ino });
    await waiting.promise; // it found our socket there, and waits for the lock
    fsp.open = open;
    // The starter replaces our dead socket; that server stops, and the next one's socket gets
    // the number ours had.
    unlinkSync(path);
    let successor: NetServer | undefined;
    for (let attempt = 0; attempt < 5 && successor === undefined; attempt++) {
      const made = await foreignSocket(t, path);
      if (made.ino === ours.ino) successor = made.server;
      else {
        await new Promise((resolve) => made.server.close(resolve));
        unlinkSync(path);
      }
    }
    unlinkSync(`${path}.lock`);
    if (successor === undefined) {
      await removing;
      t.skip('this file system did not give the inode number out again');
      return;
    }
    assert.equal(await removing, false, 'removeIfOurs says it removed the socket');
    assert.equal(lstatSync(path).ino, ours.ino, "the successor's socket is there");
    assert.equal(await getActiveState(path), ActiveState.LISTENING);
  },
);

test('describeTheft says what happened', () => {
  assert.match(describeTheft('/p', 'removed'), /removed/);
  assert.match(describeTheft('/p', 'replaced'), /another server/);
  assert.match(describeTheft('/p', 'not-a-socket'), /left it alone/);
});

/** `base/.../name`, padded with subdirectories to exactly `length` bytes. */
test(
  'a 150-byte path is served at exactly that path',
  {
    skip: unixOnly(
      'socket-address length limits (a pipe name takes 256 characters, address.test.ts)',
    ),
  },
  async (t) => {
    const path = pathOfLength(tempDir(t), 150, 'long.sock');
    const parent = join(path, '..');
    const server = await serve(t, path);
    assert.ok(lstatSync(path).isSocket());
    assert.deepEqual(readdirSync(parent), ['long.sock']);
    // Never a socket at the truncated path Node 20 would have used.
    assert.equal(existsSync(path.slice(0, SOCKET_PATH_MAX)), false);
    assert.equal(await getActiveState(path), ActiveState.LISTENING);
    assert.equal((await sendCommand(path, 'ping', { disallowChdir: true })).toString(), 'pong');
    await server.stop();
    assert.deepEqual(readdirSync(parent), []);
  },
);

test(
  'a file name too long for the alias is served through its directory',
  {
    skip: unixOnly(
      'socket-address length limits (a pipe name takes 256 characters, address.test.ts)',
    ),
  },
  async (t) => {
    const dir = tempDir(t);
    const name = 'n'.repeat(SOCKET_PATH_MAX - 10);
    const path = join(dir, name);
    await serve(t, path);
    assert.deepEqual(readdirSync(dir), [name]);
    assert.equal((await sendCommand(path, 'ping')).toString(), 'pong');
    await assert.rejects(sendCommand(path, 'ping', { disallowChdir: true }), {
      code: 'ERR_IPC_NAME_TOO_LONG',
    });
  },
);

test(
  'a file name no address can hold is refused before anything is created',
  {
    skip: unixOnly(
      'socket-address length limits (a pipe name takes 256 characters, address.test.ts)',
    ),
  },
  async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'n'.repeat(SOCKET_PATH_MAX + 1));
    await assert.rejects(startServer(path, handler), { code: 'ERR_IPC_NAME_TOO_LONG' });
    assert.deepEqual(readdirSync(dir), []);
    assert.equal(basename(path).length, SOCKET_PATH_MAX + 1);
  },
);

test('ERR_IPC_ACCESS_DENIED: a directory this user may not write, a dead socket it may not probe', async (t) => {
  const user = otherUserOrSkip(t);
  if (user === undefined) return;
  const dir = tempDir(t);
  chmodSync(dir, 0o755);
  // Read-only for the other user: no lock file, no socket can be made there.
  const readOnly = join(dir, 'ro');
  mkdirSync(readOnly, { mode: 0o555 });
  // Writable, but holding a dead socket the other user may not connect to: whether a server
  // answers there cannot be told, so it is left alone.
  const shared = join(dir, 'shared');
  mkdirSync(shared);
  chmodSync(shared, 0o777);
  await deadSocket(join(shared, 's'));
  chmodSync(join(shared, 's'), 0o000);
  const library = new URL('../src/index.js', import.meta.url).href;
  const script = `
    const { startServer } = await import(process.argv[1]);
    for (const path of process.argv.slice(2)) {
      try {
        const server = await startServer(path, () => undefined);
        await server.stop();
        console.log('started');
      } catch (err) {
        console.log(err.code, err.cause?.code ?? '-');
      }
    }`;
  const r = await runProcess(
    user.node,
    ['--input-type=module', '-e', script, library, join(readOnly, 's'), join(shared, 's')],
    { ...user.spawn, timeoutMs: 30_000 },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.toString().trim().split('\n'), [
    'ERR_IPC_ACCESS_DENIED EACCES',
    'ERR_IPC_ACCESS_DENIED EACCES',
  ]);
  assert.deepEqual(readdirSync(readOnly), []);
  assert.deepEqual(readdirSync(shared), ['s'], 'the dead socket is left alone, no lock left');
  assert.ok(lstatSync(join(shared, 's')).isSocket());
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { linkSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server as NetServer } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import {
  ActiveState,
  type ConnectResult,
  connect,
  getActiveState,
  SimpleIpcError,
  sendCommand,
  startServer,
  tryConnect,
} from '../src/index.js';
import { delay, netAddress, tempDir, unixOnly } from './helpers.js';

// A raw server that answers every connection with fixed bytes (after reading the request).
function rawServer(path: string, answer: (request: Buffer) => Buffer | null): Promise<NetServer> {
  return new Promise((resolve) => {
    const server = createServer((socket) => {
      const chunks: Buffer[] = [];
      socket.on('error', () => {});
      socket.on('data', (c: Buffer) => {
        chunks.push(c);
        const all = Buffer.concat(chunks);
        if (all.subarray(-4).toString() === '0000') {
          const out = answer(all);
          if (out === null) socket.destroy();
          else socket.end(out);
        }
      });
    });
    server.listen(netAddress(path), () => resolve(server));
  });
}

function errorCode(result: ConnectResult): string | undefined {
  return result.state === 'listening' ? undefined : result.error.code;
}

function closeServer(server: NetServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

// Leaves a socket file that nobody listens on (a server that died without cleaning up).
async function deadSocket(path: string): Promise<void> {
  const server = await rawServer(`${path}.live`, () => null);
  linkSync(`${path}.live`, path);
  await closeServer(server);
}

test(
  'getActiveState follows Git rules for every kind of path',
  {
    skip: unixOnly('file kinds and dead socket files (a pipe has no file)'),
  },
  async (t) => {
    const dir = tempDir(t);
    assert.equal(await getActiveState(join(dir, 'missing')), ActiveState.NOT_LISTENING);
    writeFileSync(join(dir, 'file'), 'x');
    assert.equal(await getActiveState(join(dir, 'file')), ActiveState.INVALID_PATH);
    // ENOTDIR (a path below a regular file) is NOT_LISTENING, as in Git.
    assert.equal(await getActiveState(join(dir, 'file', 'below')), ActiveState.NOT_LISTENING);
    mkdirSync(join(dir, 'dir'));
    assert.equal(await getActiveState(join(dir, 'dir')), ActiveState.INVALID_PATH);
    await deadSocket(join(dir, 'dead'));
    assert.equal(await getActiveState(join(dir, 'dead')), ActiveState.NOT_LISTENING);

    let calls = 0;
    const server = await startServer(join(dir, 'live'), () => {
      calls++;
    });
    t.after(() => server.destroy());
    assert.equal(await getActiveState(join(dir, 'live')), ActiveState.LISTENING);
    await delay(50);
    assert.equal(calls, 0, 'a probe never reaches the handler');
    assert.equal(server.stats().probes, 1);
  },
);

test('tryConnect: missing path is path-not-found unless waitIfNotFound', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'later');
  const result = await tryConnect(path);
  assert.equal(result.state, ActiveState.PATH_NOT_FOUND);
  assert.equal(errorCode(result), 'ERR_IPC_PATH_NOT_FOUND');

  // A server that appears 200 ms later is waited for.
  const late = delay(200).then(() => startServer(path, (_r, reply) => reply('here')));
  const waited = await tryConnect(path, { waitIfNotFound: true, timeout: 5000 });
  const server = await late;
  t.after(() => server.destroy());
  assert.equal(waited.state, ActiveState.LISTENING);
  if (waited.state === 'listening') {
    assert.equal((await waited.connection.send('x')).toString(), 'here');
  }
});

test(
  'tryConnect: deadline reached is not-listening; dead socket waited for only with waitIfBusy',
  {
    skip: unixOnly('a dead socket file (a pipe vanishes with its server)'),
  },
  async (t) => {
    const dir = tempDir(t);
    const started = performance.now();
    const missing = await tryConnect(join(dir, 'never'), { waitIfNotFound: true, timeout: 300 });
    assert.equal(missing.state, ActiveState.NOT_LISTENING);
    assert.ok(performance.now() - started >= 250, 'it kept retrying until the deadline');

    const dead = join(dir, 'dead');
    await deadSocket(dead);
    const quick = await tryConnect(dead);
    assert.equal(quick.state, ActiveState.NOT_LISTENING);
    const t0 = performance.now();
    const slow = await tryConnect(dead, { waitIfBusy: true, timeout: 200, retryInterval: 20 });
    assert.equal(slow.state, ActiveState.NOT_LISTENING);
    assert.ok(performance.now() - t0 >= 150);
  },
);

test(
  'tryConnect: a full listen backlog (EAGAIN) counts as busy',
  {
    skip: unixOnly('a Unix listen backlog, held by a Python AF_UNIX socket'),
  },
  async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'full');
    // A listener that never accepts, with the smallest backlog: python keeps it honest.
    const holder = spawn(
      'python3',
      [
        '-c',
        'import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(0)\nprint("up",flush=True)\ntime.sleep(30)',
        path,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    t.after(() => holder.kill('SIGKILL'));
    await new Promise((resolve) => holder.stdout.once('data', resolve));
    const held = [];
    let busy: Awaited<ReturnType<typeof tryConnect>> | undefined;
    for (let i = 0; i < 20 && busy === undefined; i++) {
      const r = await tryConnect(path);
      if (r.state === 'listening') held.push(r.connection);
      else busy = r;
    }
    for (const c of held) c.destroy();
    assert.ok(busy, 'the backlog filled up');
    assert.equal(busy.state, ActiveState.NOT_LISTENING);
    assert.equal(errorCode(busy), 'ERR_IPC_NOT_LISTENING');
  },
);

test(
  'getActiveState on Windows: Git rules for named pipes',
  {
    skip: process.platform !== 'win32' && 'Windows only: named pipes',
  },
  async (t) => {
    const dir = tempDir(t);
    // No pipe: path-not-found, whatever is on disk (a file never stands in a pipe's way).
    assert.equal(await getActiveState(join(dir, 'missing')), ActiveState.PATH_NOT_FOUND);
    writeFileSync(join(dir, 'file'), 'x');
    assert.equal(await getActiveState(join(dir, 'file')), ActiveState.PATH_NOT_FOUND);
    let calls = 0;
    const server = await startServer(join(dir, 'live'), () => {
      calls++;
    });
    t.after(() => server.destroy());
    assert.equal(await getActiveState(join(dir, 'live')), ActiveState.LISTENING);
    await delay(50);
    assert.equal(calls, 0, 'a probe never reaches the handler');
    assert.equal(server.stats().probes, 1);
    await server.stop();
    assert.equal(await getActiveState(join(dir, 'live')), ActiveState.PATH_NOT_FOUND);
  },
);

test('a stopping server with a conversation running: not-listening at once, waited for only with waitIfBusy', async (t) => {
  // On Windows the pipe is busy then (its one instance is taken), and libuv by itself would
  // wait up to 30 s for another; on Unix the socket refuses connections.
  const path = join(tempDir(t), 's');
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const server = await startServer(path, async (_request, reply) => {
    await held;
    await reply('done');
  });
  t.after(() => server.destroy());
  const running = sendCommand(path, 'x');
  while (server.stats().running === 0) await delay(5);
  void server.stop();
  let t0 = performance.now();
  assert.equal(await getActiveState(path), ActiveState.NOT_LISTENING);
  const quick = await tryConnect(path);
  assert.equal(quick.state, ActiveState.NOT_LISTENING);
  assert.equal(errorCode(quick), 'ERR_IPC_NOT_LISTENING');
  assert.ok(
    performance.now() - t0 < 3000,
    `no wait without waitIfBusy (${performance.now() - t0} ms)`,
  );
  t0 = performance.now();
  const waited = await tryConnect(path, { waitIfBusy: true, timeout: 600 });
  const took = performance.now() - t0;
  assert.equal(waited.state, ActiveState.NOT_LISTENING);
  assert.ok(took >= 500 && took < 5000, `waited until the deadline (${took} ms)`);
  release();
  assert.equal((await running).toString(), 'done');
  await server.closed;
});

test('tryConnect honours an AbortSignal', async (t) => {
  const dir = tempDir(t);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 100);
  await assert.rejects(
    tryConnect(join(dir, 'nope'), {
      waitIfNotFound: true,
      timeout: 10_000,
      signal: controller.signal,
    }),
    { code: 'ABORT_ERR' },
  );
});

test('connect throws coded errors', async (t) => {
  const dir = tempDir(t);
  await assert.rejects(connect(join(dir, 'nope')), (err: unknown) => {
    assert.ok(err instanceof SimpleIpcError);
    assert.equal(err.code, 'ERR_IPC_PATH_NOT_FOUND');
    assert.equal(err.path, join(dir, 'nope'));
    return true;
  });
});

test('the client never takes a short or malformed response for an answer', async (t) => {
  const dir = tempDir(t);
  const cases: [string, Buffer, string][] = [
    ['truncated', Buffer.from('0008pong'), 'ERR_IPC_TRUNCATED'],
    ['half a length', Buffer.from('0008pong00'), 'ERR_IPC_TRUNCATED'],
    ['nothing', Buffer.alloc(0), 'ERR_IPC_TRUNCATED'],
    ['bad hex', Buffer.from('zzzzpong0000'), 'ERR_PKT_LINE_LENGTH'],
    ['too long', Buffer.from('fff1'), 'ERR_PKT_LINE_TOO_LONG'],
    ['delim', Buffer.from('0008pong00010000'), 'ERR_PKT_LINE_UNEXPECTED'],
  ];
  for (const [name, bytes, code] of cases) {
    const path = join(dir, name.replace(/ /g, '-'));
    const server = await rawServer(path, () => bytes);
    await assert.rejects(sendCommand(path, 'ping'), { code }, name);
    await closeServer(server);
  }
  const path = join(dir, 'reset');
  const server = await rawServer(path, () => null);
  await assert.rejects(sendCommand(path, 'ping'), (err: SimpleIpcError) =>
    ['ERR_IPC_TRUNCATED', 'ERR_IPC_CONNECTION_CLOSED'].includes(err.code),
  );
  await closeServer(server);
});

test('maxResponseSize, timeout and signal bound a response', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's');
  const server = await startServer(path, async (request, reply) => {
    if (request.toString() === 'big') await reply(Buffer.alloc(100_000, 1));
    else await delay(2000);
  });
  t.after(() => server.destroy());
  await assert.rejects(sendCommand(path, 'big', { maxResponseSize: 1000 }), {
    code: 'ERR_IPC_TOO_LARGE',
  });
  await assert.rejects(sendCommand(path, 'wait', { timeout: 200 }), { code: 'ERR_IPC_TIMEOUT' });
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 100);
  await assert.rejects(sendCommand(path, 'wait', { signal: controller.signal }), {
    code: 'ABORT_ERR',
  });
  assert.equal((await sendCommand(path, 'big')).length, 100_000);
});

test('requests may be strings, bytes, iterables, async iterables or streams', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'echo');
  const server = await startServer(path, (request, reply) => reply(request));
  t.after(() => server.destroy());
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 255;
  assert.equal((await sendCommand(path, 'héllo')).toString(), 'héllo');
  assert.deepEqual(await sendCommand(path, big), big);
  assert.deepEqual(await sendCommand(path, new Uint8Array([1, 2, 3])), Buffer.from([1, 2, 3]));
  assert.equal((await sendCommand(path, ['a', Buffer.from('b'), 'c'])).toString(), 'abc');
  async function* gen() {
    yield 'x';
    await delay(5);
    yield big;
  }
  assert.deepEqual(await sendCommand(path, gen()), Buffer.concat([Buffer.from('x'), big]));
  assert.deepEqual(await sendCommand(path, Readable.from([big, big])), Buffer.concat([big, big]));
  // A whole response far above the streaming high-water mark (a deadlock once).
  const huge = Buffer.alloc(12 << 20, 5);
  assert.equal((await sendCommand(path, huge)).length, huge.length);
  assert.equal((await sendCommand(path, '')).length, 0);
});

test('Connection.stream yields a large response in pieces; a connection carries one request', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's');
  const piece = Buffer.alloc(1 << 20, 7);
  const server = await startServer(path, async (_request, reply) => {
    for (let i = 0; i < 20; i++) await reply(piece);
  });
  t.after(() => server.destroy());
  const connection = await connect(path);
  let total = 0;
  let pieces = 0;
  for await (const chunk of connection.stream('go')) {
    total += chunk.length;
    pieces++;
    assert.ok(chunk.every((b) => b === 7));
  }
  assert.equal(total, 20 << 20);
  assert.ok(pieces > 20, 'pieces arrive as they come, not assembled');
  await assert.rejects(connection.stream('again')[Symbol.asyncIterator]().next(), {
    code: 'ERR_IPC_INVALID_ARGUMENT',
  });
  await assert.rejects(connection.send('again'), { code: 'ERR_IPC_INVALID_ARGUMENT' });
  await connection[Symbol.asyncDispose]();
  assert.equal(connection.closed, true);
});

test('leaving a response stream early hangs up; the server counts a vanished client', async (t) => {
  const path = join(tempDir(t), 's');
  const piece = Buffer.alloc(1 << 20, 1);
  const server = await startServer(path, async (_request, reply) => {
    for (let i = 0; i < 64; i++) await reply(piece);
  });
  t.after(() => server.destroy());
  const connection = await connect(path);
  for await (const chunk of connection.stream('go')) {
    assert.ok(chunk.length > 0);
    break;
  }
  assert.equal(connection.closed, true);
  const end = performance.now() + 5000;
  while (server.stats().clientGone === 0 && performance.now() < end) await delay(10);
  assert.equal(server.stats().clientGone, 1);
  assert.equal((await sendCommand(path, 'again')).length, 64 << 20);
});

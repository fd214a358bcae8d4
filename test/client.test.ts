import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server as NetServer } from 'node:net';
import { getEventListeners } from 'node:events';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  ActiveState,
  type Connection,
  type ConnectResult,
  connect,
  getActiveState,
  isSimpleIpcError,
  SimpleIpcError,
  sendCommand,
  startServer,
  tryConnect,
} from '../src/index.js';
import {
  CLOSED_UNANSWERED,
  delay,
  gate,
  heldServer,
  netAddress,
  otherUserOrSkip,
  runProcess,
  tempDir,
  test,
  unixOnly,
  until,
} from './helpers.js';

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
  try {
    linkSync(`${path}.live`, path);
  } finally {
    await closeServer(server);
  }
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
    await until('the server to see the probe end', () => server.stats().probes === 1);
    assert.equal(calls, 0, 'a probe never reaches the handler');
    assert.equal(server.stats().requests, 0);
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
    if (spawnSync('python3', ['-c', '']).status !== 0) {
      t.skip('needs python3, to hold a listen backlog of 0 that never drains');
      return;
    }
    const dir = tempDir(t);
    const path = join(dir, 'full');
    // A listener that never accepts, with the smallest backlog: python keeps it honest. A full
    // backlog fails a connect with EAGAIN on Linux, ECONNREFUSED on macOS and the BSDs: both
    // are busy, not-listening.
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
    // Counted when the server has seen the hang-up, after any handler call it would make.
    await until('the probe to be counted', () => server.stats().probes === 1);
    assert.equal(calls, 0, 'a probe never reaches the handler');
    await server.stop();
    assert.equal(await getActiveState(join(dir, 'live')), ActiveState.PATH_NOT_FOUND);
  },
);

test('a stopping server with a conversation running: not-listening at once, waited for only with waitIfBusy', async (t) => {
  // On Windows the pipe is busy then (its one instance is taken), and libuv by itself would
  // wait up to 30 s for another; on Unix the socket refuses connections.
  const { path, server, hold } = await heldServer(t, 'done');
  const running = sendCommand(path, 'x');
  await until('the conversation to run', () => server.stats().running > 0);
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
  hold.open();
  assert.equal((await running).toString(), 'done');
  await server.closed;
});

test('tryConnect honours an AbortSignal', async (t) => {
  const dir = tempDir(t);
  const controller = new AbortController();
  // An abort in the middle of the wait: the timer is the scenario, not a wait for an event.
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

// tryConnect/connect "reject only when aborted (ABORT_ERR)": a signal aborted while the connect
// is under way must not hand back a live connection the caller has given up on.
test('connect() whose signal aborts while connecting rejects with ABORT_ERR', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, async (_request, reply) => {
    await reply('ok');
  });
  t.after(() => server.destroy());
  for (const checkOwner of [false, true]) {
    const controller = new AbortController();
    const connecting = connect(path, { signal: controller.signal, checkOwner });
    controller.abort();
    let connection: Connection | undefined;
    await assert.rejects(
      connecting.then((c) => {
        connection = c;
        return c;
      }),
      (err: unknown) => isSimpleIpcError(err, 'ABORT_ERR'),
      `checkOwner: ${checkOwner}`,
    );
    connection?.destroy();
    assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
  }
});

test('tryConnect and getActiveState aborted midway reject with ABORT_ERR; no connection stays', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's');
  const server = await startServer(path, async (_request, reply) => {
    await reply('ok');
  });
  t.after(() => server.destroy());
  for (const [what, call] of [
    ['tryConnect', (signal: AbortSignal) => tryConnect(path, { signal })],
    ['getActiveState', (signal: AbortSignal) => getActiveState(path, { signal })],
    // Only the file is looked at: no server to connect to.
    [
      'getActiveState, no socket',
      (signal: AbortSignal) => getActiveState(join(dir, 'missing'), { signal }),
    ],
  ] as const) {
    const controller = new AbortController();
    const calling = call(controller.signal);
    controller.abort();
    await assert.rejects(calling, { code: 'ABORT_ERR' }, what);
  }
  // Any connection made meanwhile was closed, not left open: the server counts it as a probe.
  await until('the server to see every connection close', () => {
    const stats = server.stats();
    return stats.connections > 0 && stats.probes === stats.connections;
  });
});

test('sendCommand: a first attempt that fails goes on with the retry rules', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'later');
  await assert.rejects(sendCommand(path, 'x'), { code: 'ERR_IPC_PATH_NOT_FOUND' });
  await assert.rejects(sendCommand(path, 'x', { waitIfNotFound: true, timeout: 100 }), {
    code: 'ERR_IPC_NOT_LISTENING',
  });
  // Aborted while waiting between attempts (the timer is the scenario).
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 100);
  await assert.rejects(
    sendCommand(path, 'x', { waitIfNotFound: true, timeout: 10_000, signal: controller.signal }),
    { code: 'ABORT_ERR' },
  );
  // A server that appears 200 ms later is waited for, and answers.
  const late = delay(200).then(() => startServer(path, (r, reply) => reply(`got ${String(r)}`)));
  const answer = sendCommand(path, 'x', { waitIfNotFound: true, timeout: 10_000 });
  const server = await late;
  t.after(() => server.destroy());
  assert.equal((await answer).toString(), 'got x');
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
    t.after(() => closeServer(server));
    await assert.rejects(sendCommand(path, 'ping'), { code }, name);
  }
  const path = join(dir, 'reset');
  const server = await rawServer(path, () => null);
  t.after(() => closeServer(server));
  await assert.rejects(sendCommand(path, 'ping'), CLOSED_UNANSWERED);
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
  // Aborted while the server takes its time (the timer is the scenario).
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
    await delay(5); // a producer that takes its time: the point of this request
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
  await until('the server to see the client go', () => server.stats().clientGone === 1);
  assert.equal((await sendCommand(path, 'again')).length, 64 << 20);
});

test(
  'connect and sendCommand: a dead socket is ERR_IPC_NOT_LISTENING; a path below a file is ERR_IPC_OTHER',
  { skip: unixOnly('a dead socket file, and a path below a file (a pipe name is no file path)') },
  async (t) => {
    const dir = tempDir(t);
    const dead = join(dir, 'dead');
    await deadSocket(dead);
    await assert.rejects(connect(dead), { code: 'ERR_IPC_NOT_LISTENING', path: dead });
    await assert.rejects(sendCommand(dead, 'x'), (err: SimpleIpcError) => {
      assert.equal(err.code, 'ERR_IPC_NOT_LISTENING');
      assert.equal((err.cause as { code?: string }).code, 'ECONNREFUSED');
      return true;
    });
    // ENOTDIR is none of the states Git names for a connect: other-error.
    writeFileSync(join(dir, 'file'), 'x');
    const below = join(dir, 'file', 'below');
    const result = await tryConnect(below, { waitIfBusy: true, waitIfNotFound: true });
    assert.equal(result.state, ActiveState.OTHER_ERROR);
    assert.equal(errorCode(result), 'ERR_IPC_OTHER');
    await assert.rejects(connect(below), (err: SimpleIpcError) => {
      assert.equal(err.code, 'ERR_IPC_OTHER');
      assert.equal((err.cause as { code?: string }).code, 'ENOTDIR');
      return true;
    });
  },
);

test('getActiveState: a socket this user may not connect to is other-error', async (t) => {
  const user = otherUserOrSkip(t);
  if (user === undefined) return;
  const dir = tempDir(t);
  chmodSync(dir, 0o755); // reachable by the other user
  const path = join(dir, 's');
  const server = await startServer(path, (_r, reply) => reply('x'));
  t.after(() => server.destroy());
  chmodSync(path, 0o000); // a socket nobody but root may connect to
  const library = new URL('../src/index.js', import.meta.url).href;
  const probe = `
    const { getActiveState, tryConnect } = await import(process.argv[1]);
    const state = await getActiveState(process.argv[2]);
    const result = await tryConnect(process.argv[2]);
    console.log(state, result.error.code, result.error.cause.code);`;
  const r = await runProcess(user.node, ['--input-type=module', '-e', probe, library, path], {
    ...user.spawn,
    timeoutMs: 30_000,
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString().trim(), 'other-error ERR_IPC_OTHER EACCES');
  assert.equal(server.stats().connections, 0, 'no connection was made');
});

test('Connection.stream: timeout, maxResponseSize and signal end the iteration with their codes', async (t) => {
  const path = join(tempDir(t), 's');
  const release = new AbortController();
  const server = await startServer(path, async (request, reply, context) => {
    const what = request.toString();
    await reply('first piece');
    if (what === 'big') {
      for (let i = 0; i < 16; i++) await reply(Buffer.alloc(1 << 16, 1));
      return;
    }
    // 'stall': one piece, then nothing until the client goes (or the test ends).
    await new Promise((resolve) => {
      context.signal.addEventListener('abort', resolve);
      release.signal.addEventListener('abort', resolve);
    });
  });
  t.after(() => release.abort());
  t.after(() => server.destroy());
  const drain = async (stream: AsyncIterable<Buffer>): Promise<number> => {
    let total = 0;
    for await (const piece of stream) total += piece.length;
    return total;
  };
  // timeout: the first piece arrives, then silence.
  const timed = await connect(path);
  let got = 0;
  await assert.rejects(
    (async () => {
      for await (const piece of timed.stream('stall', { timeout: 300 })) got += piece.length;
    })(),
    { code: 'ERR_IPC_TIMEOUT' },
  );
  assert.equal(got, 'first piece'.length, 'pieces before the silence were yielded');
  assert.equal(timed.closed, true);
  // maxResponseSize: fails once the total passes it, whatever has been yielded.
  const capped = await connect(path);
  await assert.rejects(drain(capped.stream('big', { maxResponseSize: 100_000 })), {
    code: 'ERR_IPC_TOO_LARGE',
  });
  assert.equal(capped.closed, true);
  const uncapped = await connect(path);
  assert.equal(await drain(uncapped.stream('big', { maxResponseSize: 2 << 20 })), 11 + (16 << 16));
  // signal: aborting mid-stream, and a signal aborted before the start.
  const controller = new AbortController();
  const aborted = await connect(path);
  await assert.rejects(
    (async () => {
      for await (const piece of aborted.stream('stall', { signal: controller.signal })) {
        assert.equal(piece.toString(), 'first piece');
        controller.abort(new Error('enough'));
      }
    })(),
    (err: SimpleIpcError) => {
      assert.equal(err.code, 'ABORT_ERR');
      assert.equal((err.cause as Error).message, 'enough');
      return true;
    },
  );
  assert.equal(aborted.closed, true);
  const early = await connect(path);
  await assert.rejects(drain(early.stream('big', { signal: controller.signal })), {
    code: 'ABORT_ERR',
  });
  await until('the server to see every client go', () => server.stats().running === 0);
});

// The client closing its own connection while a response streams in is not the server
// "closing the connection before completing its response, which usually means its request
// handler failed" (ERR_IPC_TRUNCATED): that sends the application hunting for a server bug.
// ERR_IPC_CONNECTION_CLOSED is "the connection closed before the exchange completed".
test('disposing of a connection mid-stream is ERR_IPC_CONNECTION_CLOSED, not ERR_IPC_TRUNCATED', async (t) => {
  const path = join(tempDir(t), 's');
  const { promise: held, open: release } = gate();
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

test('destroy() mid-exchange is ERR_IPC_CONNECTION_CLOSED; closing after the response keeps it', async (t) => {
  const path = join(tempDir(t), 's');
  const { promise: held, open: release } = gate();
  const server = await startServer(path, async (request, reply) => {
    await reply('first');
    if (request.toString() === 'hold') await held;
  });
  t.after(() => {
    release();
    return server.destroy();
  });
  // destroy() while stream() waits for its next piece.
  {
    const connection = await connect(path);
    const iterator = connection.stream('hold')[Symbol.asyncIterator]();
    assert.equal(String((await iterator.next()).value), 'first');
    const next = iterator.next();
    connection.destroy();
    await assert.rejects(next, { code: 'ERR_IPC_CONNECTION_CLOSED', message: /by this side/ });
  }
  // A response that is complete, not yet read to its end, is not failed by a close().
  {
    const connection = await connect(path);
    const pieces = connection.stream('quick');
    const iterator = pieces[Symbol.asyncIterator]();
    assert.equal(String((await iterator.next()).value), 'first');
    await until('the response to end', () => connection.closed);
    await connection.close();
    assert.equal((await iterator.next()).done, true);
  }
  {
    const connection = await connect(path);
    assert.equal(String(await connection.send('quick')), 'first');
    await connection.close();
    connection.destroy();
  }
});

test('Connection.close(): resolves once closed, idempotent; the server sees a probe', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (_r, reply) => reply('x'));
  t.after(() => server.destroy());
  const connection = await connect(path);
  assert.equal(connection.closed, false);
  assert.equal(connection.path, path);
  const closing = connection.close();
  await closing;
  assert.equal(connection.closed, true);
  await connection.close(); // again: resolves at once
  await Promise.all([connection.close(), connection.close()]);
  await until('the server to count a probe', () => server.stats().probes === 1);
  assert.equal(server.stats().requests, 0);
  // Closing while a request is on its way: the exchange fails, it is not left pending.
  const busy = await connect(path);
  const answer = busy.send(Buffer.alloc(1 << 20));
  await busy.close();
  await assert.rejects(answer, { code: 'ERR_IPC_CONNECTION_CLOSED', message: /by this side/ });
});

test('a request on a connection closed already fails at once (it used to wait forever)', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (_r, reply) => reply('x'));
  t.after(() => server.destroy());
  const closed = await connect(path);
  await closed.close();
  await assert.rejects(closed.send('ping'), { code: 'ERR_IPC_CONNECTION_CLOSED' });
  const closedToo = await connect(path);
  await closedToo.close();
  await assert.rejects(
    async () => {
      for await (const piece of closedToo.stream('ping')) assert.fail(`got ${piece.toString()}`);
    },
    { code: 'ERR_IPC_CONNECTION_CLOSED' },
  );
});

// The idle timeout counts only the time the client waits for the server (issue 21, defect 4).
const BIG_RESPONSE = 3 << 20; // past the client's 1 MiB queue and the socket buffers

test('timeout: a consumer that pauses longer than the timeout is not a stalled server', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, async (_request, reply) => {
    for (let sent = 0; sent < BIG_RESPONSE; sent += 1 << 16) await reply(Buffer.alloc(1 << 16, 7));
  });
  t.after(() => server.destroy());
  const connection = await connect(path);
  let got = 0;
  let paused = false;
  for await (const piece of connection.stream('big', { timeout: 300 })) {
    if (!paused) {
      paused = true;
      // The slow consumer under test: it holds the stream (the socket is paused by
      // backpressure) for longer than the timeout, with the server waiting on it.
      await delay(800);
    }
    got += piece.length;
  }
  assert.equal(got, BIG_RESPONSE);
});

test('timeout: a request producer slower than the timeout is not a stalled server', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (request, reply) => reply(request));
  t.after(() => server.destroy());
  async function* slowRequest(): AsyncGenerator<string> {
    yield 'slow ';
    await delay(800); // the client's own slowness, not the server's
    yield 'request';
  }
  assert.equal(
    (await sendCommand(path, slowRequest(), { timeout: 300 })).toString(),
    'slow request',
  );
  const connection = await connect(path);
  let answer = '';
  for await (const piece of connection.stream(slowRequest(), { timeout: 300 }))
    answer += piece.toString();
  assert.equal(answer, 'slow request');
});

test('timeout: a server that stalls mid-response still times out, once the consumer has taken what came', async (t) => {
  const path = join(tempDir(t), 's');
  const release = new AbortController();
  t.after(() => release.abort());
  const server = await startServer(path, async (request, reply, context) => {
    const size = request.toString() === 'big' ? BIG_RESPONSE : 11;
    for (let sent = 0; sent < size; sent += 1 << 16) {
      await reply(Buffer.alloc(Math.min(1 << 16, size - sent), 7));
    }
    // Then nothing until the client goes (or the test ends).
    await new Promise((resolve) => {
      context.signal.addEventListener('abort', resolve);
      release.signal.addEventListener('abort', resolve);
    });
  });
  t.after(() => server.destroy());
  for (const what of ['big', 'small']) {
    const connection = await connect(path);
    let got = 0;
    let paused = false;
    await assert.rejects(
      (async () => {
        for await (const piece of connection.stream(what, { timeout: 300 })) {
          if (!paused) {
            paused = true;
            await delay(800); // held longer than the timeout: does not count
          }
          got += piece.length;
        }
      })(),
      (err: SimpleIpcError) => {
        assert.equal(err.code, 'ERR_IPC_TIMEOUT');
        assert.equal(err.message, `the server at '${path}' sent nothing for 300 ms`);
        return true;
      },
      what,
    );
    assert.equal(got, what === 'big' ? BIG_RESPONSE : 11, `${what}: every piece that came`);
    assert.equal(connection.closed, true);
  }
  // A whole response: the same.
  await assert.rejects(sendCommand(path, 'small', { timeout: 300 }), {
    code: 'ERR_IPC_TIMEOUT',
    message: `the server at '${path}' sent nothing for 300 ms`,
  });
});

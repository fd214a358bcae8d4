import assert from 'node:assert/strict';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { unlinkSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import {
  encodeMessage,
  getActiveState,
  isSimpleIpcError,
  QUIT,
  type Server,
  type ServerOptions,
  type SimpleIpcError,
  sendCommand,
  startServer,
} from '../src/index.js';
import { serverSettings } from '../src/server-options.js';
import { makeServer, serverListener, startServing } from '../src/server.js';
import {
  CLOSED_UNANSWERED,
  countingServer,
  delay,
  gate,
  hangUpMidHandler,
  heldServer,
  LOCK_FILE_ONLY,
  netAddress,
  rawConnect,
  rawExchange,
  settlesAtMost,
  socketGone,
  tempDir,
  test,
  until,
  warnings,
} from './helpers.js';

test('a handler that writes nothing still gets a flush; many chunks arrive in order', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, async (request, reply) => {
    if (request.toString() === 'many') for (let i = 0; i < 1000; i++) await reply(`${i},`);
  });
  t.after(() => server.destroy());
  const empty = await rawExchange(path, Buffer.from('0009empty0000'));
  assert.equal(empty.response.toString(), '0000');
  const many = await sendCommand(path, 'many');
  const expected = Array.from({ length: 1000 }, (_, i) => `${i},`).join('');
  assert.equal(many.toString(), expected);
});

test('the largest backlog is taken: the server starts and answers', async (t) => {
  // On Windows the backlog is the count of pipe instances libuv makes at once: uncapped, this
  // one aborted the process, out of memory.
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (_request, reply) => reply('pong'), {
    backlog: 2 ** 31 - 1,
  });
  t.after(() => server.destroy());
  assert.equal((await sendCommand(path, 'ping')).toString(), 'pong');
});

test('probes and malformed requests never reach the handler; the server keeps serving', async (t) => {
  const { path, server, calls } = await countingServer(t);
  (await rawConnect(path)).end();
  for (const bad of ['zzzz', '0003', '0002', '0001', 'fff1', '0008pi', '0008ping', '-001']) {
    const { response } = await rawExchange(path, Buffer.from(bad), { end: true });
    assert.equal(response.length, 0, `no reply to ${bad}`);
  }
  // A message cut short by the client hanging up.
  const cut = await rawConnect(path);
  cut.end('0009hello');
  await until('bad requests counted', () => server.stats().badRequests >= 9);
  assert.equal(calls(), 0);
  assert.equal((await sendCommand(path, 'x')).toString(), 'ok');
  const stats = server.stats();
  assert.equal(stats.probes, 1);
  assert.equal(stats.badRequests, 9);
  assert.equal(stats.requests, 1);
});

test('the request may be followed by a half-close, and bytes after the flush are ignored', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (request, reply) => reply(`got ${request.toString()}`));
  t.after(() => server.destroy());
  const half = await rawExchange(path, Buffer.from('0008ping0000'), { end: true });
  assert.equal(half.response.toString(), '000cgot ping0000');
  const extra = await rawExchange(path, Buffer.from('0008ping0000garbage'));
  assert.equal(extra.response.toString(), '000cgot ping0000');
  // An empty data packet (0004) carries nothing.
  const empty = await rawExchange(path, Buffer.from('00040008ping0000'));
  assert.equal(empty.response.toString(), '000cgot ping0000');
});

test('a handler that throws or rejects closes its connection without a flush', async (t) => {
  const path = join(tempDir(t), 's');
  const errors: unknown[] = [];
  const server = await startServer(
    path,
    async (request, reply) => {
      const what = request.toString();
      if (what === 'throw') throw new Error('sync-ish');
      if (what === 'reject') {
        await reply('partial answer');
        await delay(10); // the failure comes well after the reply: the scenario
        throw new Error('late');
      }
      await reply('fine');
    },
    { onHandlerError: (err) => errors.push(err) },
  );
  t.after(() => server.destroy());
  await assert.rejects(sendCommand(path, 'throw'), { code: 'ERR_IPC_TRUNCATED' });
  await assert.rejects(sendCommand(path, 'reject'), { code: 'ERR_IPC_TRUNCATED' });
  const raw = await rawExchange(path, Buffer.from('000areject0000'));
  assert.ok(!raw.response.toString().endsWith('0000'), 'no flush after a failure');
  assert.equal((await sendCommand(path, 'ok')).toString(), 'fine');
  assert.equal(server.stats().handlerErrors, 3);
  assert.equal(errors.length, 3);
});

test('a synchronous throw in a plain function handler is contained too', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (request) => {
    if (request.length > 0) throw new Error('boom');
  });
  t.after(() => server.destroy());
  await assert.rejects(sendCommand(path, 'x'), { code: 'ERR_IPC_TRUNCATED' });
  assert.equal((await sendCommand(path, '')).length, 0);
});

test('QUIT: the quitting client gets its flush, then the server stops and removes its socket', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, async (request, reply) => {
    if (request.toString() === 'quit') {
      await reply('bye');
      return QUIT;
    }
    return undefined;
  });
  t.after(() => server.destroy());
  const raw = await rawExchange(path, Buffer.from('0008quit0000'));
  assert.equal(raw.response.toString(), '0007bye0000');
  await server.closed;
  assert.deepEqual(server.stopReason, { kind: 'quit' });
  assert.ok(await socketGone(path), 'the socket is gone');
  await assert.rejects(sendCommand(path, 'x'), { code: 'ERR_IPC_PATH_NOT_FOUND' });
});

test('threads bounds concurrent handlers; waiting requests run in arrival order', async (t) => {
  const path = join(tempDir(t), 's');
  let running = 0;
  let peak = 0;
  const order: string[] = [];
  const hold = gate();
  const server = await startServer(
    path,
    async (request, reply) => {
      running++;
      peak = Math.max(peak, running);
      order.push(request.toString());
      await hold.promise;
      running--;
      await reply(request);
    },
    { threads: 2 },
  );
  t.after(() => server.destroy());
  const answers: Promise<Buffer>[] = [];
  for (let i = 0; i < 6; i++) {
    answers.push(sendCommand(path, `r${i}`));
    await until(`request ${i}`, () => server.stats().queued + server.stats().running === i + 1);
  }
  assert.equal(server.stats().running, 2);
  assert.equal(server.stats().queued, 4);
  hold.open();
  const results = (await Promise.all(answers)).map(String);
  assert.deepEqual(results, ['r0', 'r1', 'r2', 'r3', 'r4', 'r5']);
  assert.equal(peak, 2);
  assert.deepEqual(order, ['r0', 'r1', 'r2', 'r3', 'r4', 'r5']);
});

test('a full queue closes new connections at once', async (t) => {
  const { path, server, hold } = await heldServer(t, 'ok', { threads: 1, queueSize: 2 });
  const first = sendCommand(path, 'a'); // runs
  await until('first running', () => server.stats().running === 1);
  const queued = [sendCommand(path, 'b'), sendCommand(path, 'c')];
  await until('queue full', () => server.stats().queued === 2);
  await assert.rejects(sendCommand(path, 'd'), CLOSED_UNANSWERED);
  assert.equal(server.stats().rejected, 1);
  hold.open();
  assert.deepEqual((await Promise.all([first, ...queued])).map(String), ['ok', 'ok', 'ok']);
});

test('stop lets running conversations finish, drops queued ones, and is idempotent', async (t) => {
  const { path, server, hold } = await heldServer(t, 'finished', { threads: 1 });
  const running = sendCommand(path, 'a');
  await until('running', () => server.stats().running === 1);
  const queued = assert.rejects(sendCommand(path, 'b'), CLOSED_UNANSWERED);
  await until('queued', () => server.stats().queued === 1);
  const stopped = server.stop();
  assert.equal(server.stopping, true);
  await queued;
  await assert.rejects(sendCommand(path, 'c'), { code: 'ERR_IPC_NOT_LISTENING' });
  hold.open();
  assert.equal((await running).toString(), 'finished');
  await stopped;
  await server.stop();
  await server[Symbol.asyncDispose]();
  assert.ok(await socketGone(path), 'the socket is gone');
  assert.deepEqual(server.stopReason, { kind: 'requested' });
});

test('destroy cuts running conversations; the AbortSignal tells the handler', async (t) => {
  const path = join(tempDir(t), 's');
  let aborted = false;
  const server = await startServer(path, async (_request, _reply, context) => {
    await new Promise<void>((resolve) => context.signal.addEventListener('abort', () => resolve()));
    aborted = true;
  });
  t.after(() => server.destroy());
  const answer = assert.rejects(sendCommand(path, 'x'), { code: 'ERR_IPC_TRUNCATED' });
  await until('running', () => server.stats().running === 1);
  await server.destroy();
  await answer;
  assert.equal(aborted, true);
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

test('destroy() from a handler cuts the others too: none counted or reported as failing', async (t) => {
  const path = join(tempDir(t), 's');
  const reported: unknown[] = [];
  const waiting = gate();
  const server = await startServer(
    path,
    async (request, reply, context) => {
      if (request.toString() === 'wait') {
        await waiting.promise;
      } else {
        void context.server.destroy();
        // The other handler goes on at once, before its connection's 'close' is seen.
        waiting.open();
      }
      await reply('too late');
    },
    { threads: 2, onHandlerError: (err) => reported.push(err) },
  );
  t.after(() => server.destroy());
  const first = assert.rejects(sendCommand(path, 'wait'), { code: 'ERR_IPC_TRUNCATED' });
  await until('the first handler to run', () => server.stats().running === 1);
  await assert.rejects(sendCommand(path, 'destroy'), { code: 'ERR_IPC_TRUNCATED' });
  await first;
  await server.closed;
  assert.deepEqual(reported, []);
  assert.equal(server.stats().handlerErrors, 0);
  assert.equal(server.stats().clientGone, 2);
});

test('an AbortSignal in the options stops the server', async (t) => {
  const path = join(tempDir(t), 's');
  const controller = new AbortController();
  const server = await startServer(path, () => undefined, { signal: controller.signal });
  t.after(() => server.destroy());
  assert.equal(await getActiveState(path), 'listening');
  controller.abort();
  await server.closed;
  assert.deepEqual(server.stopReason, { kind: 'requested' });
  assert.ok(await socketGone(path), 'the socket is gone');
  // Already aborted: the server stops as soon as it has started.
  const again = await startServer(path, () => undefined, { signal: controller.signal });
  t.after(() => again.destroy());
  await again.closed;
  assert.ok(await socketGone(path), 'the socket is gone');
});

test('a signal whose removeEventListener throws does not keep the server from stopping', async (t) => {
  // A signal of another library's (accepted as Node accepts one): its code is the
  // application's, and a stop must not end half-way because of it.
  const path = join(tempDir(t), 's');
  const signal = {
    aborted: false,
    addEventListener: () => undefined,
    removeEventListener: () => {
      throw new Error('not removable');
    },
  } as unknown as AbortSignal;
  const server = await startServer(path, () => undefined, { signal });
  // A stop that broke off half-way leaves the listener open: closed directly, so that a
  // failure here does not keep the test process alive.
  t.after(() => serverListener(server)?.close());
  const reported = warnings(t, 'ERR_IPC_CALLBACK_FAILED');
  await server.stop();
  assert.ok(await socketGone(path), 'the socket is gone');
  await until('the failure to be reported', () => reported.length === 1);
  assert.match(reported[0]!.message, /options\.signal\.removeEventListener failed/);
});

test('a start that fails once the socket is in place leaves nothing serving or behind', async (t) => {
  // The signal's addEventListener is the application's code and runs after the socket is at
  // the path: the start fails with what it threw, and must not leave a listener that
  // accepts (and holds) connections for ever, or a socket at the path.
  const path = join(tempDir(t), 's');
  const failure = new Error('no listeners taken');
  const signal = {
    aborted: false,
    addEventListener: () => {
      throw failure;
    },
    removeEventListener: () => undefined,
  } as unknown as AbortSignal;
  // What startServer does, with the server at hand to clean up after a failure.
  const server = makeServer(path, () => undefined, serverSettings({ signal }));
  t.after(() => serverListener(server)?.close());
  await assert.rejects(startServing(server), (err) => err === failure);
  assert.equal(server.stopping, true);
  assert.notEqual(await getActiveState(path), 'listening');
  assert.ok(await socketGone(path), 'the socket is gone');
});

test('a second server at a live path fails with ERR_IPC_IN_USE and the first keeps serving', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (_r, reply) => reply('first'));
  t.after(() => server.destroy());
  await assert.rejects(
    startServer(path, () => undefined),
    { code: 'ERR_IPC_IN_USE' },
  );
  assert.equal((await sendCommand(path, 'x')).toString(), 'first');
});

test('many clients at once each get their own answer', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(
    path,
    async (request, reply) => {
      await delay(1); // each handler yields, so that the four threads interleave
      await reply(Buffer.concat([Buffer.from('echo:'), request]));
    },
    { threads: 4 },
  );
  t.after(() => server.destroy());
  const answers = await Promise.all(
    // 200 connects at once overflow the listen backlog (50): the clients wait while busy, for
    // as long as a loaded machine needs (the point here is the answers, not the deadline).
    Array.from({ length: 200 }, (_, i) =>
      sendCommand(path, `client-${i}`, { waitIfBusy: true, timeout: 30_000 }),
    ),
  );
  answers.forEach((a, i) => {
    assert.equal(a.toString(), `echo:client-${i}`);
  });
  assert.equal(server.stats().responses, 200);
});

test('a streaming handler reads a large request in pieces with bounded buffering', async (t) => {
  const path = join(tempDir(t), 's');
  const block = Buffer.alloc(1 << 20, 1);
  let pieces = 0;
  let produced = 0;
  const firstPiece = gate();
  const hold = gate();
  const server = await startServer(path, {
    async stream(request, reply) {
      let total = 0;
      for await (const piece of request) {
        total += piece.length;
        pieces++;
        if (pieces === 1) {
          firstPiece.open();
          await hold.promise; // a handler that stops reading for a while
        }
      }
      await reply(`total=${total}`);
    },
  });
  t.after(() => server.destroy());
  function* body() {
    for (; produced < 32; produced++) yield block;
  }
  const answer = sendCommand(path, body());
  await firstPiece.promise;
  // While the handler reads nothing, the server stops reading the socket, so the client's
  // writes block: what it could hand over is bounded by the server's streaming window (1 MiB)
  // plus the kernel's socket buffers, far below the 32 MiB it wants to send.
  const sent = await settlesAtMost('blocks the client handed over', () => produced, 8);
  t.diagnostic(`the client stalled after ${sent} of 32 blocks`);
  hold.open();
  assert.equal((await answer).toString(), `total=${32 << 20}`);
  assert.equal(produced, 32);
  assert.ok(pieces > 32, 'the request arrived in pieces, not assembled');
  assert.equal((await sendCommand(path, 'small')).toString(), 'total=5');
});

test(
  'a streaming handler may ask for pieces before the earlier asks have settled',
  { timeout: 5000 },
  async (t) => {
    const path = join(tempDir(t), 's');
    const server = await startServer(
      path,
      {
        async stream(request, reply) {
          // Four next() calls at once, as the async iterator protocol allows: they settle in
          // order as the pieces and the end arrive, none is lost.
          const pieces = request[Symbol.asyncIterator]();
          const results = await Promise.all([1, 2, 3, 4].map(() => pieces.next()));
          await reply(results.map((r) => (r.done ? 'end' : r.value.toString())).join(','));
        },
      },
      { streamThreshold: 1 },
    );
    t.after(() => server.destroy());
    const socket = await rawConnect(path);
    t.after(() => socket.destroy());
    const response: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => response.push(chunk));
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write('0007one');
    // The handler runs once the first piece is there (streamThreshold 1) and asks four times
    // at once; the other pieces come after it started.
    await until('the handler to run', () => server.stats().running === 1);
    socket.write('0007two');
    socket.write('0009three0000');
    await closed;
    assert.equal(Buffer.concat(response).toString(), '0015one,two,three,end0000');
  },
);

test(
  'next() calls waiting together all fail when the client hangs up mid-request',
  { timeout: 5000 },
  async (t) => {
    const path = join(tempDir(t), 's');
    let settled: PromiseSettledResult<unknown>[] = [];
    let done!: () => void;
    const handled = new Promise<void>((resolve) => (done = resolve));
    const server = await startServer(
      path,
      {
        async stream(request) {
          const pieces = request[Symbol.asyncIterator]();
          settled = await Promise.allSettled([pieces.next(), pieces.next(), pieces.next()]);
          done();
        },
      },
      { streamThreshold: 1 },
    );
    t.after(() => server.destroy());
    // The handler runs once 'one' is there: its first next() gets it, the other two wait.
    await hangUpMidHandler(server, '0007one');
    await handled;
    assert.deepEqual(
      settled.map((s) => s.status),
      ['fulfilled', 'rejected', 'rejected'],
    );
    for (const s of settled.slice(1)) {
      // The request was cut short before its flush.
      assert.equal(
        ((s as PromiseRejectedResult).reason as SimpleIpcError).code,
        'ERR_IPC_TRUNCATED',
      );
    }
  },
);

test('maxRequestSize is enforced while reading, without calling the handler', async (t) => {
  const path = join(tempDir(t), 's');
  let calls = 0;
  const server = await startServer(
    path,
    (request, reply) => {
      calls++;
      return reply(String(request.length));
    },
    { maxRequestSize: 1000 },
  );
  t.after(() => server.destroy());
  assert.equal((await sendCommand(path, Buffer.alloc(1000))).toString(), '1000');
  await assert.rejects(sendCommand(path, Buffer.alloc(1001)), CLOSED_UNANSWERED);
  assert.equal(calls, 1);
  assert.equal(server.stats().badRequests, 1);
});

test('a client that stalls mid-request is closed after requestTimeout', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (_r, reply) => reply('ok'), { requestTimeout: 300 });
  t.after(() => server.destroy());
  const stalled = await rawConnect(path);
  const closed = new Promise((resolve) => stalled.on('close', resolve));
  stalled.on('error', () => {});
  stalled.write('0010half');
  const silent = await rawConnect(path);
  const silentClosed = new Promise((resolve) => silent.on('close', resolve));
  silent.on('error', () => {});
  await Promise.all([closed, silentClosed]);
  assert.equal(server.stats().timeouts, 2);
  assert.equal((await sendCommand(path, 'x')).toString(), 'ok');
});

test('reply applies backpressure to a client that does not read', async (t) => {
  const path = join(tempDir(t), 's');
  const piece = Buffer.alloc(256 * 1024, 3);
  let accepted = 0;
  const server = await startServer(path, async (_request, reply) => {
    for (let i = 0; i < 64; i++) {
      await reply(piece);
      accepted++;
    }
  });
  t.after(() => server.destroy());
  const socket = await rawConnect(path);
  t.after(() => socket.destroy());
  socket.pause();
  socket.write('0006go0000');
  await until('the handler to run', () => server.stats().running === 1);
  // The client reads nothing: each reply() resolves only once the socket took its bytes, so
  // the handler is held at the socket buffers (a few hundred KiB here) plus one piece in the
  // writer, far below the 16 MiB it wants to send.
  const held = await settlesAtMost('replies accepted while nobody reads', () => accepted, 16);
  t.diagnostic(`the handler was held after ${held} of 64 replies`);
  assert.equal(server.stats().running, 1, 'the handler is waiting, not done');
  let received = 0;
  socket.on('data', (chunk: Buffer) => (received += chunk.length));
  const closed = new Promise((resolve) => socket.once('close', resolve));
  socket.resume();
  await closed;
  assert.equal(accepted, 64);
  // 64 pieces of 256 KiB travel in packets of at most 65516 payload bytes, then a flush.
  const packets = Math.ceil((256 * 1024) / 65516) * 64;
  assert.equal(received, 64 * 256 * 1024 + packets * 4 + 4);
});

test('responseTimeout closes a client that takes no response bytes; the handler learns', async (t) => {
  const path = join(tempDir(t), 's');
  const piece = Buffer.alloc(1 << 20, 4);
  let replyError: SimpleIpcError | undefined;
  const failures: unknown[] = [];
  const handled = gate();
  const server = await startServer(
    path,
    async (request, reply) => {
      if (request.toString() === 'ping') return reply('pong');
      try {
        for (let i = 0; i < 64; i++) await reply(piece);
      } catch (err) {
        replyError = err as SimpleIpcError;
        throw err;
      } finally {
        handled.open();
      }
    },
    { responseTimeout: 500, onHandlerError: (err) => failures.push(err) },
  );
  t.after(() => server.destroy());
  const socket = await rawConnect(path);
  t.after(() => socket.destroy());
  socket.on('error', () => {});
  socket.pause(); // asks for 64 MiB and reads none of it
  const closed = new Promise((resolve) => socket.once('close', resolve));
  // Taken before the request leaves: the server's clock for the client starts after it.
  const started = performance.now();
  socket.write(encodeMessage('flood'));
  await handled.promise;
  const waited = performance.now() - started;
  assert.ok(waited >= 450, `closed after ${waited.toFixed(0)} ms, before the 500 ms timeout`);
  assert.equal(replyError?.code, 'ERR_IPC_CONNECTION_CLOSED', 'the pending reply rejected');
  socket.resume();
  await closed;
  await until('the handler to end', () => server.stats().running === 0);
  const stats = server.stats();
  assert.equal(stats.timeouts, 1);
  // The handler failed only because its client was closed: not a handler failure.
  assert.equal(stats.clientGone, 1);
  assert.equal(stats.handlerErrors, 0);
  assert.deepEqual(failures, []);
  assert.equal((await sendCommand(path, 'ping')).toString(), 'pong');
});

/** A server whose handler answers every request with `mib` MiB, in 1 MiB replies. */
async function mibServer(
  t: TestContext,
  mib: number,
  options: ServerOptions,
): Promise<{ path: string; server: Server }> {
  const path = join(tempDir(t), 's');
  const piece = Buffer.alloc(1 << 20, 4);
  const server = await startServer(
    path,
    async (_request, reply) => {
      for (let i = 0; i < mib; i++) await reply(piece);
    },
    options,
  );
  t.after(() => server.destroy());
  return { path, server };
}

test('responseTimeout: a client that reads steadily is never cut off, however long the response', async (t) => {
  const { path, server } = await mibServer(t, 16, { responseTimeout: 500 });
  // Reads 64 KiB every 10 ms: 16 MiB take over 2.5 s, five times the timeout, and the server
  // waits for the client to take bytes the whole time.
  const socket = await rawConnect(path);
  t.after(() => socket.destroy());
  socket.pause();
  socket.write(encodeMessage('slowly'));
  let received = 0;
  const started = performance.now();
  const closed = new Promise((resolve) => socket.once('close', resolve));
  let done = false;
  void closed.then(() => (done = true));
  while (!done) {
    const chunk = socket.read(64 << 10) as Buffer | null;
    if (chunk !== null) received += chunk.length;
    else if (socket.readableEnded || socket.destroyed) break;
    await delay(10);
  }
  received += (socket.read() as Buffer | null)?.length ?? 0;
  await closed;
  const took = performance.now() - started;
  assert.ok(took > 1000, `the response took ${took.toFixed(0)} ms, well past the timeout`);
  assert.ok(received > 16 << 20, `got ${received} bytes`);
  assert.equal(server.stats().timeouts, 0);
  assert.equal(server.stats().responses, 1);
});

test('responseTimeout 0 lets a client take as long as it likes', async (t) => {
  const { path, server } = await mibServer(t, 8, { responseTimeout: 0, requestTimeout: 0 });
  const socket = await rawConnect(path);
  t.after(() => socket.destroy());
  socket.pause();
  socket.write('0006go0000');
  await until('the handler to run', () => server.stats().running === 1);
  // Well past the sweeper's shortest limit (2 ticks of 250 ms).
  await delay(1200);
  let received = 0;
  socket.on('data', (chunk: Buffer) => (received += chunk.length));
  const closed = new Promise((resolve) => socket.once('close', resolve));
  socket.resume();
  await closed;
  assert.ok(received > 8 << 20, `got ${received} bytes`);
  assert.equal(server.stats().timeouts, 0);
  assert.equal(server.stats().responses, 1);
});

test("the handler's context.signal aborts when its client hangs up", async (t) => {
  const path = join(tempDir(t), 's');
  let reason: unknown;
  let repliedAfter: unknown;
  const done = gate();
  const server = await startServer(path, async (_request, reply, context) => {
    assert.equal(context.signal.aborted, false);
    await new Promise<void>((resolve) =>
      context.signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    reason = context.signal.reason;
    repliedAfter = await reply('too late').then(
      () => 'resolved',
      (err: SimpleIpcError) => err.code,
    );
    done.open();
  });
  t.after(() => server.destroy());
  await hangUpMidHandler(server, '0008wait0000');
  await done.promise;
  assert.equal((reason as SimpleIpcError).code, 'ERR_IPC_CONNECTION_CLOSED');
  assert.equal(repliedAfter, 'ERR_IPC_CONNECTION_CLOSED');
  await until('the conversation to end', () => server.stats().running === 0);
  assert.equal(server.stats().clientGone, 1);
  assert.equal(server.stats().responses, 0);
});

test('debug hears about each bad client; onHandlerError about each failing handler', async (t) => {
  const path = join(tempDir(t), 's');
  const lines: string[] = [];
  const failures: unknown[] = [];
  const server = await startServer(
    path,
    (request) => {
      if (request.toString() === 'fail') throw new Error('handler broke');
    },
    {
      requestTimeout: 1000,
      maxRequestSize: 10,
      debug: (line) => lines.push(line),
      onHandlerError: (err) => failures.push(err),
    },
  );
  t.after(() => server.destroy());
  await rawExchange(path, Buffer.from('zzzz'), { end: true });
  await rawExchange(path, encodeMessage('this is too long'), { end: true });
  const stalled = await rawConnect(path);
  stalled.on('error', () => {});
  const stalledClosed = new Promise((resolve) => stalled.once('close', resolve));
  stalled.write('0010half');
  await stalledClosed;
  await assert.rejects(sendCommand(path, 'fail'), { code: 'ERR_IPC_TRUNCATED' });
  (await rawConnect(path)).end(); // a probe is not a bad client: no line
  await until('the probe', () => server.stats().probes === 1);
  assert.equal(lines.length, 3, lines.join('\n'));
  assert.match(lines[0]!, /^dropped a bad request: .*length/);
  assert.match(lines[1]!, /^dropped a bad request: .*(large|max)/i);
  assert.equal(lines[2], 'closed a stalled client');
  assert.equal(failures.length, 1);
  assert.equal((failures[0] as Error).message, 'handler broke');
});

test(
  'backlog sets how many connections wait unaccepted before connects fail',
  {
    skip:
      process.platform !== 'linux' && 'a full listen queue fails a connect with EAGAIN on Linux',
  },
  async (t) => {
    const dir = tempDir(t);
    // A server in a child process that blocks its event loop once listening: it never accepts,
    // so every connect lands in the listen queue until the queue is full (EAGAIN).
    const script = `
    const { startServer } = await import(process.argv[1]);
    await startServer(process.argv[2], () => undefined, { backlog: Number(process.argv[3]) });
    process.stdout.write('ready\\n');
    for (;;);`;
    const library = new URL('../src/index.js', import.meta.url).href;
    const queued = async (backlog: number): Promise<number> => {
      const path = join(dir, `b${backlog}`);
      const child = spawn(
        process.execPath,
        ['--input-type=module', '-e', script, library, path, String(backlog)],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      t.after(() => child.kill('SIGKILL'));
      await new Promise((resolve) => child.stdout.once('data', resolve));
      const sockets: Socket[] = [];
      t.after(() => sockets.forEach((s) => s.destroy()));
      for (;;) {
        const socket = netConnect({ path });
        sockets.push(socket);
        const full = await new Promise<boolean>((resolve) => {
          socket.once('connect', () => resolve(false));
          socket.once('error', (err: Error & { code?: string }) => resolve(err.code === 'EAGAIN'));
        });
        if (full) return sockets.length - 1;
        assert.ok(sockets.length < 1000, 'the listen queue never filled');
      }
    };
    const small = await queued(2);
    const large = await queued(40);
    t.diagnostic(`backlog 2: ${small} queued; backlog 40: ${large} queued`);
    assert.ok(small >= 1 && small <= 4, `backlog 2 queued ${small}`);
    assert.ok(large >= 40 && large <= 42, `backlog 40 queued ${large}`);
  },
);

test(
  'lockTimeout: start-up waits that long for a live lock holder, and goes on when it is released',
  { skip: LOCK_FILE_ONLY },
  async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 's');
    // Our own pid: a live holder that is never broken.
    writeFileSync(`${path}.lock`, `${process.pid}\n`);
    const t0 = performance.now();
    await assert.rejects(
      startServer(path, () => undefined, { lockTimeout: 400 }),
      {
        code: 'ERR_IPC_LOCKED',
      },
    );
    const waited = performance.now() - t0;
    assert.ok(waited >= 390, `gave up after ${waited.toFixed(0)} ms`);
    await assert.rejects(
      startServer(path, () => undefined, { lockTimeout: 0 }),
      {
        code: 'ERR_IPC_LOCKED',
      },
    );
    // A long timeout: the start waits, and finishes once the holder lets go.
    let settled = false;
    const starting = startServer(path, (_r, reply) => reply('ok'), { lockTimeout: 60_000 });
    void starting.then(
      () => (settled = true),
      () => (settled = true),
    );
    t.after(async () => (await starting).destroy());
    // Start-up must not finish while the lock is held: a fixed wait shows that absence.
    await delay(300);
    assert.equal(settled, false, 'still waiting for the lock');
    unlinkSync(`${path}.lock`);
    const server = await starting;
    assert.equal((await sendCommand(path, 'x')).toString(), 'ok');
    assert.equal(server.path, path);
  },
);

/** `promise`'s value, or a failure naming `what` if it has not settled within `ms`. */
async function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

test('stop(): a client that has read its whole answer but keeps its end open does not hold it up', async (t) => {
  const path = join(tempDir(t), 's');
  // No sweeper, and a stop bound far beyond the deadline below: only the rule can end it.
  const server = await startServer(path, (_request, reply) => reply('pong'), {
    responseTimeout: 0,
    requestTimeout: 0,
    stopTimeout: 60_000,
  });
  t.after(() => server.destroy());
  // A client that keeps its end open after the server's FIN (Node's own would close it).
  const socket = netConnect({ path: netAddress(path), allowHalfOpen: true });
  t.after(() => socket.destroy());
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  const ended = new Promise((resolve) => socket.once('end', resolve));
  socket.write('0006go0000');
  await until('the whole answer', () => received.endsWith('0000'));
  assert.equal(received, '0008pong0000');
  // The client never sends its FIN (a half-open socket).
  await within('stop()', 5000, server.stop());
  await within('the client to see the server hang up', 5000, ended);
  assert.equal(server.stats().responses, 1);
});

test('stopTimeout bounds stop(): a handler that never settles is cut off; destroy() cuts it at once', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, () => new Promise<undefined>(() => {}), {
    stopTimeout: 300,
  });
  t.after(() => server.destroy());
  const answer = assert.rejects(sendCommand(path, 'x'), { code: 'ERR_IPC_TRUNCATED' });
  await until('running', () => server.stats().running === 1);
  const t0 = performance.now();
  await within('stop()', 5000, server.stop());
  const took = performance.now() - t0;
  assert.ok(took >= 250, `stop() waited ${took.toFixed(0)} ms for the handler`);
  await answer;
  assert.ok(await socketGone(path), 'the socket is gone');

  const other = join(tempDir(t), 's');
  const again = await startServer(other, () => new Promise<undefined>(() => {}), {
    stopTimeout: 60_000,
  });
  t.after(() => again.destroy());
  const cut = assert.rejects(sendCommand(other, 'x'), { code: 'ERR_IPC_TRUNCATED' });
  await until('running', () => again.stats().running === 1);
  void again.stop();
  await within('destroy() during a stop', 5000, again.destroy());
  await cut;
});

test('stats() counts bytesIn / bytesOut on the wire: payloads, pkt-line headers and flushes', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (request, reply) =>
    reply(request.length === 5 ? 'world' : 'ok'),
  );
  t.after(() => server.destroy());
  // Both are added when a connection closes, together: wait for bytesOut to move.
  const closed = (before: number) => () => server.stats().bytesOut !== before;
  // A 5-byte request in one packet: 4 + 5, then the flush's 4. The answer is the same shape.
  const { response } = await rawExchange(path, Buffer.from('0009hello0000'));
  assert.equal(response.toString(), '0009world0000');
  await until('the connection to be counted', closed(0));
  assert.deepEqual(pick(server.stats()), { bytesIn: 4 + 5 + 4, bytesOut: 4 + 5 + 4 });
  // 70000 bytes take two packets (65516 + 4484): two headers and a flush on top.
  assert.equal((await sendCommand(path, Buffer.alloc(70_000))).toString(), 'ok');
  await until('the second connection to be counted', closed(13));
  assert.deepEqual(pick(server.stats()), {
    bytesIn: 13 + (4 + 65_516) + (4 + 4484) + 4,
    bytesOut: 13 + 4 + 2 + 4,
  });
  // A probe (connect, hang up) sends and receives nothing.
  assert.equal(await getActiveState(path), 'listening');
  await until('the probe to be counted', () => server.stats().probes === 1);
  assert.deepEqual(pick(server.stats()), { bytesIn: 70_025, bytesOut: 23 });

  function pick({ bytesIn, bytesOut }: { bytesIn: number; bytesOut: number }) {
    return { bytesIn, bytesOut };
  }
});

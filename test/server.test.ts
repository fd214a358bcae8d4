import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect, QUIT, type SimpleIpcError, sendCommand, startServer } from '../src/index.js';
import { delay, rawConnect, rawExchange, socketGone, tempDir } from './helpers.js';

/** A promise and its resolver, to hold handlers at a known point. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) assert.fail(`timed out waiting for ${what}`);
    await delay(5);
  }
}

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

test('probes and malformed requests never reach the handler; the server keeps serving', async (t) => {
  const path = join(tempDir(t), 's');
  let calls = 0;
  const server = await startServer(path, async (_request, reply) => {
    calls++;
    await reply('ok');
  });
  t.after(() => server.destroy());
  (await rawConnect(path)).end();
  for (const bad of ['zzzz', '0003', '0002', '0001', 'fff1', '0008pi', '0008ping', '-001']) {
    const { response } = await rawExchange(path, Buffer.from(bad), { end: true });
    assert.equal(response.length, 0, `no reply to ${bad}`);
  }
  // A message cut short by the client hanging up.
  const cut = await rawConnect(path);
  cut.end('0009hello');
  await until(() => server.stats().badRequests >= 9, 'bad requests counted');
  assert.equal(calls, 0);
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
        await delay(10);
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
    await until(() => server.stats().queued + server.stats().running === i + 1, `request ${i}`);
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
  const path = join(tempDir(t), 's');
  const hold = gate();
  const server = await startServer(
    path,
    async (_request, reply) => {
      await hold.promise;
      await reply('ok');
    },
    { threads: 1, queueSize: 2 },
  );
  t.after(() => server.destroy());
  const first = sendCommand(path, 'a'); // runs
  await until(() => server.stats().running === 1, 'first running');
  const queued = [sendCommand(path, 'b'), sendCommand(path, 'c')];
  await until(() => server.stats().queued === 2, 'queue full');
  await assert.rejects(sendCommand(path, 'd'), (err: SimpleIpcError) =>
    ['ERR_IPC_TRUNCATED', 'ERR_IPC_CONNECTION_CLOSED'].includes(err.code),
  );
  assert.equal(server.stats().rejected, 1);
  hold.open();
  assert.deepEqual((await Promise.all([first, ...queued])).map(String), ['ok', 'ok', 'ok']);
});

test('stop lets running conversations finish, drops queued ones, and is idempotent', async (t) => {
  const path = join(tempDir(t), 's');
  const hold = gate();
  const server = await startServer(
    path,
    async (_request, reply) => {
      await hold.promise;
      await reply('finished');
    },
    { threads: 1 },
  );
  const running = sendCommand(path, 'a');
  await until(() => server.stats().running === 1, 'running');
  const queued = assert.rejects(sendCommand(path, 'b'), (err: SimpleIpcError) =>
    ['ERR_IPC_TRUNCATED', 'ERR_IPC_CONNECTION_CLOSED'].includes(err.code),
  );
  await until(() => server.stats().queued === 1, 'queued');
  const stopped = server.stop();
  assert.equal(server.stopping, true);
  await queued;
  await assert.rejects(sendCommand(path, 'c'));
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
  const answer = assert.rejects(sendCommand(path, 'x'));
  await until(() => server.stats().running === 1, 'running');
  await server.destroy();
  await answer;
  assert.equal(aborted, true);
});

test('an AbortSignal in the options stops the server', async (t) => {
  const path = join(tempDir(t), 's');
  const controller = new AbortController();
  const server = await startServer(path, () => undefined, { signal: controller.signal });
  controller.abort();
  await server.closed;
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
      await delay(1);
      await reply(Buffer.concat([Buffer.from('echo:'), request]));
    },
    { threads: 4 },
  );
  t.after(() => server.destroy());
  const answers = await Promise.all(
    Array.from({ length: 200 }, (_, i) => sendCommand(path, `client-${i}`, { waitIfBusy: true })),
  );
  answers.forEach((a, i) => {
    assert.equal(a.toString(), `echo:client-${i}`);
  });
  assert.equal(server.stats().responses, 200);
});

test('a streaming handler reads a large request in pieces with bounded buffering', async (t) => {
  const path = join(tempDir(t), 's');
  let pieces = 0;
  const server = await startServer(path, {
    async stream(request, reply) {
      let total = 0;
      for await (const piece of request) {
        total += piece.length;
        pieces++;
        await delay(0);
      }
      await reply(`total=${total}`);
    },
  });
  t.after(() => server.destroy());
  const block = Buffer.alloc(1 << 20, 1);
  function* body() {
    for (let i = 0; i < 32; i++) yield block;
  }
  assert.equal((await sendCommand(path, body())).toString(), `total=${32 << 20}`);
  assert.ok(pieces > 32);
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
    await delay(50); // the handler runs and asks four times; only one piece is there
    socket.write('0007two');
    await delay(50);
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
    const socket = await rawConnect(path);
    socket.on('error', () => {});
    socket.write('0007one');
    await delay(50); // the first next() gets 'one', the other two wait
    socket.destroy();
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
  await assert.rejects(sendCommand(path, Buffer.alloc(1001)));
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

test('reply applies backpressure to a client that reads slowly', async (t) => {
  const path = join(tempDir(t), 's');
  let waited = 0;
  const server = await startServer(path, async (_request, reply) => {
    const piece = Buffer.alloc(256 * 1024, 3);
    for (let i = 0; i < 64; i++) {
      const before = performance.now();
      await reply(piece);
      if (performance.now() - before > 5) waited++;
    }
  });
  t.after(() => server.destroy());
  const connection = await connect(path);
  let total = 0;
  for await (const chunk of connection.stream('go')) {
    total += chunk.length;
    if (total < 4 << 20) await delay(2);
  }
  assert.equal(total, 64 * 256 * 1024);
  assert.ok(waited > 0, 'some replies waited for the slow reader');
});

import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import diagnosticsChannel from 'node:diagnostics_channel';
import { readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import {
  type ClientRequestContext,
  connect,
  type Connection,
  DiagnosticsChannel,
  encodeMessage,
  sendCommand,
  type ServerRequestContext,
  type SimpleIpcError,
  startServer,
} from '../src/index.js';
import { serverListener } from '../src/server.js';
import {
  CLOSED_UNANSWERED,
  deadSocket,
  gate,
  heldServer,
  rawConnect,
  rawExchange,
  ROOT,
  runProcess,
  tempDir,
  test,
  until,
} from './helpers.js';

const WINDOWS = process.platform === 'win32';

const TRACING = [DiagnosticsChannel.CLIENT_REQUEST, DiagnosticsChannel.SERVER_REQUEST] as const;
const POINT = Object.values(DiagnosticsChannel).filter(
  (name) => !(TRACING as readonly string[]).includes(name),
);

interface Event {
  readonly channel: string;
  readonly event: string;
  readonly message: Record<string, unknown>;
}

/**
 * Records every event of every simple-ipc channel whose message is about `path`, in order,
 * until the test ends.
 */
function record(t: TestContext, path: string): Event[] {
  const events: Event[] = [];
  for (const name of TRACING) {
    const channel = diagnosticsChannel.tracingChannel(name);
    const on = (event: string) => (message: unknown) => {
      const m = message as Record<string, unknown>;
      if (m.path === path) events.push({ channel: name, event, message: m });
    };
    const handlers = {
      start: on('start'),
      end: on('end'),
      asyncStart: on('asyncStart'),
      asyncEnd: on('asyncEnd'),
      error: on('error'),
    };
    channel.subscribe(handlers);
    t.after(() => channel.unsubscribe(handlers));
  }
  for (const name of POINT) {
    const listener = (message: unknown): void => {
      const m = message as Record<string, unknown>;
      if (m.path === path) events.push({ channel: name, event: 'publish', message: m });
    };
    diagnosticsChannel.subscribe(name, listener);
    t.after(() => diagnosticsChannel.unsubscribe(name, listener));
  }
  return events;
}

/** The events of one tracing channel, as `event` or `event outcome` strings. */
function trace(events: Event[], name: string): string[] {
  return events.filter((e) => e.channel === name).map((e) => e.event);
}

/** The point events, as `channel-suffix` strings. */
function points(events: Event[]): string[] {
  return events
    .filter((e) => e.event === 'publish')
    .map((e) => e.channel.slice('simple-ipc:'.length));
}

/**
 * What `store` holds when `channel` publishes asyncStart and asyncEnd (subscribed until the test
 * ends); other keys may be added by the test.
 */
function storeAtEnd(
  t: TestContext,
  channel: diagnosticsChannel.TracingChannel<unknown, object>,
  store: AsyncLocalStorage<string>,
): Record<string, unknown> {
  const seen: Record<string, unknown> = {};
  const ignore = (): void => {};
  const atEnd = {
    start: ignore,
    end: ignore,
    asyncStart: () => {
      seen.asyncStart = store.getStore();
    },
    asyncEnd: () => {
      seen.asyncEnd = store.getStore();
    },
    error: ignore,
  };
  channel.subscribe(atEnd);
  t.after(() => channel.unsubscribe(atEnd));
  return seen;
}

const COMPLETE = ['start', 'end', 'asyncStart', 'asyncEnd'];
const FAILED = ['start', 'end', 'error', 'asyncStart', 'asyncEnd'];

test('a successful request: start, end, asyncStart, asyncEnd on both sides, with sizes', async (t) => {
  const path = join(tempDir(t), 's');
  const events = record(t, path);
  const server = await startServer(path, async (_request, reply) => {
    await reply('pong');
  });
  t.after(() => server.destroy());
  assert.equal(String(await sendCommand(path, 'ping')), 'pong');
  await until(
    'the server side to end',
    () => trace(events, DiagnosticsChannel.SERVER_REQUEST).length === 4,
  );
  assert.deepEqual(trace(events, DiagnosticsChannel.CLIENT_REQUEST), COMPLETE);
  assert.deepEqual(trace(events, DiagnosticsChannel.SERVER_REQUEST), COMPLETE);
  const client = events.find((e) => e.channel === DiagnosticsChannel.CLIENT_REQUEST)!
    .message as unknown as ClientRequestContext;
  // 0008ping0000 out, 0008pong0000 in: the wire bytes, framing included.
  assert.equal(client.operation, 'sendCommand');
  assert.equal(client.outcome, 'ok');
  assert.equal(client.requestBytes, 12);
  assert.equal(client.responseBytes, 12);
  assert.equal(client.retries, 0);
  assert.equal(client.error, undefined);
  const served = events.find((e) => e.channel === DiagnosticsChannel.SERVER_REQUEST)!
    .message as unknown as ServerRequestContext;
  assert.equal(served.outcome, 'ok');
  assert.equal(served.requestBytes, 12);
  assert.equal(served.responseBytes, 12);
  assert.equal(typeof served.queueWait, 'number');
  assert.equal(served.quit, false);
  // Never the payload.
  assert.equal(JSON.stringify({ ...client, ...served }).includes('pong'), false);
  assert.deepEqual(points(events), ['server:listening']);
});

test('a connection traced with send() and stream()', async (t) => {
  const path = join(tempDir(t), 's');
  const events = record(t, path);
  const server = await startServer(path, async (request, reply) => {
    await reply(request);
  });
  t.after(() => server.destroy());
  const one = await connect(path);
  assert.equal(String(await one.send('a')), 'a');
  const two = await connect(path);
  const pieces: Buffer[] = [];
  for await (const piece of two.stream('b')) pieces.push(piece);
  assert.equal(String(Buffer.concat(pieces)), 'b');
  const client = events.filter(
    (e) => e.channel === DiagnosticsChannel.CLIENT_REQUEST && e.event === 'asyncEnd',
  );
  assert.deepEqual(
    client.map((e) => [e.message.operation, e.message.outcome, e.message.responseBytes]),
    [
      ['send', 'ok', 9],
      ['stream', 'ok', 9],
    ],
  );
});

// send() and stream() alike: a second request on a connection fails before it is under way.
for (const [name, second] of [
  ['send()', (c: Connection) => c.send('b')],
  ['stream()', (c: Connection) => c.stream('b')[Symbol.asyncIterator]().next()],
] as const) {
  test(`a second ${name} on a connection: start, error, end, and nothing asynchronous`, async (t) => {
    const path = join(tempDir(t), 's');
    const server = await startServer(path, (request, reply) => reply(request));
    t.after(() => server.destroy());
    const connection = await connect(path);
    t.after(() => connection.destroy());
    const first = connection.send('a');
    const events = record(t, path);
    await assert.rejects(second(connection), { code: 'ERR_IPC_INVALID_ARGUMENT' });
    assert.deepEqual(trace(events, DiagnosticsChannel.CLIENT_REQUEST), ['start', 'error', 'end']);
    assert.equal((events[1]!.message.error as SimpleIpcError).code, 'ERR_IPC_INVALID_ARGUMENT');
    assert.equal(String(await first), 'a');
  });
}

test('a handler that throws: error fires on both sides before asyncStart', async (t) => {
  const path = join(tempDir(t), 's');
  const events = record(t, path);
  const server = await startServer(
    path,
    () => {
      throw new Error('handler broke');
    },
    { onHandlerError: () => {} },
  );
  t.after(() => server.destroy());
  await assert.rejects(sendCommand(path, 'x'), { code: 'ERR_IPC_TRUNCATED' });
  await until(
    'the server side to end',
    () => trace(events, DiagnosticsChannel.SERVER_REQUEST).length === 5,
  );
  assert.deepEqual(trace(events, DiagnosticsChannel.CLIENT_REQUEST), FAILED);
  assert.deepEqual(trace(events, DiagnosticsChannel.SERVER_REQUEST), FAILED);
  const served = events.find((e) => e.channel === DiagnosticsChannel.SERVER_REQUEST)!.message;
  assert.equal(served.outcome, 'handler-error');
  assert.equal((served.error as Error).message, 'handler broke');
  const client = events.find((e) => e.channel === DiagnosticsChannel.CLIENT_REQUEST)!.message;
  assert.equal(client.outcome, 'error');
  assert.equal((client.error as SimpleIpcError).code, 'ERR_IPC_TRUNCATED');
});

test('a client that times out: error on its side; the server sees the client gone', async (t) => {
  const path = join(tempDir(t), 's');
  const events = record(t, path);
  const hold = gate();
  const server = await startServer(path, async (_request, reply) => {
    await hold.promise;
    await reply('late').catch(() => {});
  });
  t.after(() => server.destroy());
  t.after(() => hold.open());
  await assert.rejects(sendCommand(path, 'x', { timeout: 100 }), { code: 'ERR_IPC_TIMEOUT' });
  await until(
    'the server side to end',
    () => trace(events, DiagnosticsChannel.SERVER_REQUEST).length === 5,
  );
  assert.deepEqual(trace(events, DiagnosticsChannel.CLIENT_REQUEST), FAILED);
  assert.deepEqual(trace(events, DiagnosticsChannel.SERVER_REQUEST), FAILED);
  const client = events.find((e) => e.channel === DiagnosticsChannel.CLIENT_REQUEST)!.message;
  assert.equal((client.error as SimpleIpcError).code, 'ERR_IPC_TIMEOUT');
  const served = events.find((e) => e.channel === DiagnosticsChannel.SERVER_REQUEST)!.message;
  assert.equal(served.outcome, 'client-gone');
  assert.equal((served.error as SimpleIpcError).code, 'ERR_IPC_CONNECTION_CLOSED');
});

test('a full queue: the refused request is traced as rejected, and rejected is published', async (t) => {
  const { path, server, hold } = await heldServer(t, 'ok', { threads: 1, queueSize: 1 });
  const first = sendCommand(path, 'a');
  await until('first running', () => server.stats().running === 1);
  const second = sendCommand(path, 'b');
  await until('queue full', () => server.stats().queued === 1);
  const events = record(t, path);
  await assert.rejects(sendCommand(path, 'c'), CLOSED_UNANSWERED);
  const served = events.filter((e) => e.channel === DiagnosticsChannel.SERVER_REQUEST);
  assert.deepEqual(
    served.map((e) => e.event),
    FAILED,
  );
  assert.equal(served[0]!.message.outcome, 'rejected');
  assert.equal((served[0]!.message.error as SimpleIpcError).code, 'ERR_IPC_REJECTED');
  const rejected = events.filter((e) => e.channel === DiagnosticsChannel.SERVER_REJECTED);
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0]!.message.reason, 'queue-full');
  // The rejected event comes before the request's trace.
  assert.equal(events.indexOf(rejected[0]!) < events.indexOf(served[0]!), true);
  hold.open();
  await Promise.all([first, second]);
});

test('a stop: closing with the reason, then closed', async (t) => {
  const path = join(tempDir(t), 's');
  const events = record(t, path);
  const server = await startServer(path, () => undefined);
  await server.stop();
  assert.deepEqual(points(events), ['server:listening', 'server:closing', 'server:closed']);
  assert.deepEqual(events[1]!.message.reason, { kind: 'requested' });
  assert.deepEqual(events[2]!.message.reason, { kind: 'requested' });
});

test('bad requests and stalled clients are published as rejected, with their reason', async (t) => {
  const path = join(tempDir(t), 's');
  const events = record(t, path);
  const server = await startServer(path, () => undefined, {
    maxRequestSize: 4,
    requestTimeout: 500,
  });
  t.after(() => server.destroy());
  await rawExchange(path, Buffer.from('zzzz'), { end: true });
  await rawExchange(path, encodeMessage('too long'), { end: true });
  await rawExchange(path, Buffer.from('0009ab'), { end: true });
  const stalled = await rawConnect(path);
  stalled.on('error', () => {});
  stalled.write('0010half');
  await new Promise((resolve) => stalled.once('close', resolve));
  await until(
    'four outcomes',
    () =>
      events.filter(
        (e) => e.channel === DiagnosticsChannel.SERVER_REQUEST && e.event === 'asyncEnd',
      ).length === 4,
  );
  const rejected = events.filter((e) => e.channel === DiagnosticsChannel.SERVER_REJECTED);
  assert.deepEqual(
    rejected.map((e) => e.message.reason),
    ['malformed', 'too-large', 'cut-short', 'timeout'],
  );
  const outcomes = events
    .filter((e) => e.channel === DiagnosticsChannel.SERVER_REQUEST && e.event === 'asyncEnd')
    .map((e) => e.message.outcome);
  assert.deepEqual(outcomes, ['bad-request', 'bad-request', 'bad-request', 'timeout']);
});

test('AsyncLocalStorage bound to the start channels: inside the handler, and in the client continuation', async (t) => {
  const path = join(tempDir(t), 's');
  const serverStore = new AsyncLocalStorage<string>();
  const clientStore = new AsyncLocalStorage<string>();
  const serverStart = diagnosticsChannel.tracingChannel(DiagnosticsChannel.SERVER_REQUEST).start;
  const clientChannel = diagnosticsChannel.tracingChannel(DiagnosticsChannel.CLIENT_REQUEST);
  serverStart.bindStore(serverStore, () => 'server-span');
  clientChannel.start.bindStore(
    clientStore,
    (context) => `client-span ${(context as ClientRequestContext).operation}`,
  );
  t.after(() => {
    serverStart.unbindStore(serverStore);
    clientChannel.start.unbindStore(clientStore);
  });
  const seen = storeAtEnd(t, clientChannel, clientStore);
  const server = await startServer(path, async (_request, reply) => {
    seen.handler = serverStore.getStore();
    await Promise.resolve();
    seen.handlerAfterAwait = serverStore.getStore();
    seen.clientInHandler = clientStore.getStore();
    await reply('ok');
  });
  t.after(() => server.destroy());
  assert.equal(String(await sendCommand(path, 'x')), 'ok');
  assert.equal(seen.handler, 'server-span');
  assert.equal(seen.handlerAfterAwait, 'server-span');
  // The server's accept does not run in the client's context, even in one process.
  assert.equal(seen.clientInHandler, undefined);
  assert.equal(seen.asyncStart, 'client-span sendCommand');
  assert.equal(seen.asyncEnd, 'client-span sendCommand');
  // Nothing leaks out of the request.
  assert.equal(clientStore.getStore(), undefined);
  assert.equal(serverStore.getStore(), undefined);
});

test('a connect retry is published, and counted in the request context', async (t) => {
  const path = join(tempDir(t), 's');
  const events = record(t, path);
  // A dead socket is refused and retried; a named pipe leaves nothing behind, so on Windows the
  // retries are those of waitIfNotFound on a missing pipe (which Git, too, calls not listening).
  const code = 'ERR_IPC_NOT_LISTENING';
  if (!WINDOWS) await deadSocket(path);
  await assert.rejects(
    sendCommand(path, 'x', {
      waitIfBusy: true,
      waitIfNotFound: WINDOWS,
      timeout: 120,
      retryInterval: 20,
    }),
    { code },
  );
  const retries = events.filter((e) => e.channel === DiagnosticsChannel.CLIENT_RETRY);
  assert.ok(retries.length >= 2, `${retries.length} retries`);
  assert.deepEqual(
    retries.map((e) => e.message.attempt),
    retries.map((_e, i) => i + 1),
  );
  // Each retry names why that attempt failed: refused, or (a missing pipe) not found.
  assert.equal(
    (retries[0]!.message.error as SimpleIpcError).code,
    WINDOWS ? 'ERR_IPC_PATH_NOT_FOUND' : 'ERR_IPC_NOT_LISTENING',
  );
  const client = events.find((e) => e.channel === DiagnosticsChannel.CLIENT_REQUEST)!.message;
  assert.equal(client.retries, retries.length);
  assert.deepEqual(trace(events, DiagnosticsChannel.CLIENT_REQUEST), FAILED);
});

test('every channel named in docs/observability.md fires, and every channel is named there', async (t) => {
  const doc = readFileSync(join(ROOT, 'docs', 'observability.md'), 'utf8');
  const documented = new Set([...doc.matchAll(/`(simple-ipc:[a-z:-]+)`/g)].map((m) => m[1]!));
  assert.deepEqual([...documented].sort(), Object.values(DiagnosticsChannel).sort());
  const path = join(tempDir(t), 's');
  const events = record(t, path);
  if (!WINDOWS) await deadSocket(path);
  await assert.rejects(
    sendCommand(path, 'x', {
      waitIfBusy: true,
      waitIfNotFound: WINDOWS,
      timeout: 60,
      retryInterval: 20,
    }),
    { code: 'ERR_IPC_NOT_LISTENING' },
  );
  const server = await startServer(path, () => undefined, { threads: 1, queueSize: 1 });
  t.after(() => server.destroy());
  await sendCommand(path, 'x');
  await rawExchange(path, Buffer.from('zzzz'), { end: true });
  // An accept error (EMFILE and the like) as the listening socket reports it.
  serverListener(server)!.emit(
    'error',
    Object.assign(new Error('too many open files'), { code: 'EMFILE' }),
  );
  if (WINDOWS) await server.stop();
  else unlinkSync(path);
  await server.closed;
  const fired = new Set(events.map((e) => e.channel));
  const silent = [...documented].filter((name) => !fired.has(name));
  // As docs/observability.md says: a pipe leaves nothing to take over, and nobody can remove
  // or replace it, so those two never fire on Windows.
  const never = WINDOWS
    ? [DiagnosticsChannel.SERVER_TAKEOVER, DiagnosticsChannel.SERVER_STOLEN]
    : [];
  assert.deepEqual(silent, never);
});

test('NODE_DEBUG=simple-ipc prints the life of each request', async (t) => {
  const path = join(tempDir(t), 's');
  const library = new URL('../src/index.js', import.meta.url).href;
  const script = `
    const { startServer, sendCommand } = await import(${JSON.stringify(library)});
    const server = await startServer(process.argv[1], async (request, reply) => { await reply('pong'); });
    await sendCommand(process.argv[1], 'ping');
    await server.stop();`;
  const run = await runProcess(process.execPath, ['--input-type=module', '-e', script, path], {
    env: { ...process.env, NODE_DEBUG: 'simple-ipc' },
  });
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stderr.split('\n').filter((line) => line !== '');
  const pid = /^SIMPLE-IPC (\d+): /.exec(lines[0] ?? '')?.[1];
  assert.ok(pid !== undefined, run.stderr);
  for (const line of lines) assert.ok(line.startsWith(`SIMPLE-IPC ${pid}: `), line);
  const text = lines.map((line) => line.slice(`SIMPLE-IPC ${pid}: `.length));
  const expected = [
    `server ${path}: listening`,
    `client ${path}: sendCommand started`,
    `server ${path}: connection accepted`,
    `client ${path}: sendCommand done (12 bytes out, 12 bytes in, 0 retries)`,
    `server ${path}: closing (requested)`,
    `server ${path}: closed (requested)`,
  ];
  for (const line of expected)
    assert.ok(text.includes(line), `${line}\n--- in ---\n${text.join('\n')}`);
  assert.ok(
    text.some((line) =>
      line.startsWith(`server ${path}: connection ended: ok (12 bytes in, 12 bytes out, waited`),
    ),
    text.join('\n'),
  );
  // Without NODE_DEBUG: nothing.
  const quiet = await runProcess(process.execPath, ['--input-type=module', '-e', script, path], {
    env: { ...process.env, NODE_DEBUG: '' },
  });
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.equal(quiet.stderr, '');
});

test('AsyncLocalStorage bound to the server start: its store in asyncStart and asyncEnd', async (t) => {
  const path = join(tempDir(t), 's');
  const store = new AsyncLocalStorage<string>();
  const channel = diagnosticsChannel.tracingChannel(DiagnosticsChannel.SERVER_REQUEST);
  channel.start.bindStore(store, () => 'server-span');
  t.after(() => channel.start.unbindStore(store));
  const seen = storeAtEnd(t, channel, store);
  const server = await startServer(path, (request, reply) => reply(request));
  t.after(() => server.destroy());
  await sendCommand(path, 'x');
  await until('the server side to end', () => 'asyncEnd' in seen);
  assert.deepEqual(seen, { asyncStart: 'server-span', asyncEnd: 'server-span' });
});

test('a request that fails while its call runs (an aborted signal): end before asyncStart', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, (request, reply) => reply(request));
  t.after(() => server.destroy());
  const events = record(t, path);
  const one = await connect(path);
  await assert.rejects(one.send('a', { signal: AbortSignal.abort() }), { name: 'AbortError' });
  const two = await connect(path);
  await assert.rejects(
    two.stream('b', { signal: AbortSignal.abort() })[Symbol.asyncIterator]().next(),
    {
      name: 'AbortError',
    },
  );
  assert.deepEqual(trace(events, DiagnosticsChannel.CLIENT_REQUEST), [...FAILED, ...FAILED]);
});

test('a stream() left early: the trace says closed by this side, not cut short by the server', async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, async (_request, reply) => {
    await reply('a'.repeat(100_000));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await reply('b');
  });
  t.after(() => server.destroy());
  const events = record(t, path);
  const connection = await connect(path);
  const pieces = connection.stream('x')[Symbol.asyncIterator]();
  await pieces.next();
  await pieces.return!();
  await until(
    'the client side to end',
    () => trace(events, DiagnosticsChannel.CLIENT_REQUEST).length === 5,
  );
  assert.deepEqual(trace(events, DiagnosticsChannel.CLIENT_REQUEST), FAILED);
  const client = events.find((e) => e.channel === DiagnosticsChannel.CLIENT_REQUEST)!.message;
  assert.equal((client.error as SimpleIpcError).code, 'ERR_IPC_CONNECTION_CLOSED');
});

test('NODE_DEBUG=simple-ipc: a handler error whose getters throw is printed, not thrown', async (t) => {
  const path = join(tempDir(t), 's');
  const library = new URL('../src/index.js', import.meta.url).href;
  const script = `
    const { startServer, sendCommand } = await import(${JSON.stringify(library)});
    class Odd extends Error { get message() { throw new Error('no message'); } }
    const server = await startServer(process.argv[1], () => { throw new Odd(); }, { onHandlerError: () => {} });
    await sendCommand(process.argv[1], 'ping').catch(() => {});
    await server.stop();`;
  const run = await runProcess(process.execPath, ['--input-type=module', '-e', script, path], {
    env: { ...process.env, NODE_DEBUG: 'simple-ipc' },
  });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /connection ended: handler-error .*: an unreadable error/);
});

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { getEventListeners } from 'node:events';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import {
  encodeMessage,
  type RequestContext,
  type Server,
  type ServerOptions,
  type SimpleIpcError,
  sendCommand,
  startServer,
} from '../src/index.js';
import { workerHandler } from '../src/workers.js';
import {
  LIBRARY,
  PROCESS_SLOWNESS,
  rawConnect,
  runProcess,
  settlesAtMost,
  tempDir,
  test,
  until,
  writeModule,
} from './helpers.js';

// Worker modules reach the workers module as they reach the library (LIBRARY).
const WORKERS = new URL('../src/workers.js', import.meta.url).href;

/**
 * A server at `<dir>/s` whose handler runs the worker module `source` (written to `<dir>/<name>`)
 * in `workers` workers, with the other options given to the server. After the test the server
 * is destroyed, then the handler closed.
 */
async function workerServer(
  t: TestContext,
  dir: string,
  name: string,
  source: string,
  { workers, ...options }: ServerOptions & { workers: number },
): Promise<Server> {
  const handler = workerHandler(writeModule(dir, name, source), { workers });
  t.after(() => handler[Symbol.asyncDispose]());
  const server = await startServer(join(dir, 's'), handler, options);
  t.after(() => server.destroy());
  return server;
}

test('many concurrent requests: every client gets its own answer', async (t) => {
  const dir = tempDir(t);
  const server = await workerServer(
    t,
    dir,
    'hash.mjs',
    `import { createHash } from 'node:crypto';
     export default async (request) => {
       if (request[0] === 0x73) await new Promise((resolve) => setTimeout(resolve, 2)); // 's'
       return createHash('sha256').update(request).digest('hex') + ':' + request.length;
     };`,
    { workers: 2, threads: 4 },
  );
  // Sizes from empty to several packets (a request assembled from packets is transferred).
  const requests = Array.from({ length: 60 }, (_, i) =>
    Buffer.alloc((i * 7919) % 150_000, i % 2 === 0 ? 's' : String.fromCharCode(65 + (i % 26))),
  );
  const answers = await Promise.all(
    requests.map((request) =>
      sendCommand(server.path, request, { waitIfBusy: true, timeout: 30_000 }),
    ),
  );
  answers.forEach((answer, i) => {
    const request = requests[i]!;
    const expected = `${createHash('sha256').update(request).digest('hex')}:${request.length}`;
    assert.equal(answer.toString(), expected, `request ${i}`);
  });
  assert.equal(server.stats().handlerErrors, 0);
});

test('two workers run two requests at the same time', async (t) => {
  const dir = tempDir(t);
  // Each request marks that it started, then waits (blocking its thread) until the other has
  // started too. With one request at a time the first would wait out its deadline.
  const server = await workerServer(
    t,
    dir,
    'barrier.mjs',
    `import { existsSync, writeFileSync } from 'node:fs';
     const nap = new Int32Array(new SharedArrayBuffer(4));
     export default (request) => {
       const [mine, other] = request.toString().split(' ');
       writeFileSync(mine, '');
       const end = Date.now() + 10000;
       while (!existsSync(other)) {
         if (Date.now() > end) return 'alone';
         Atomics.wait(nap, 0, 0, 5);
       }
       return 'together';
     };`,
    { workers: 2, threads: 2 },
  );
  const [a, b] = [join(dir, 'a'), join(dir, 'b')];
  const answers = await Promise.all([
    sendCommand(server.path, `${a} ${b}`),
    sendCommand(server.path, `${b} ${a}`),
  ]);
  assert.deepEqual(answers.map(String), ['together', 'together']);
});

test('chunked replies arrive whole and in order, from sync and async generators', async (t) => {
  const dir = tempDir(t);
  const server = await workerServer(
    t,
    dir,
    'chunks.mjs',
    `export default (request) => {
       const kind = request.toString();
       if (kind === 'one') return Buffer.alloc(100_000, 'w'); // owns its buffer: transferred
       if (kind === 'view') return Buffer.alloc(100_000, 'v').subarray(10, 20); // copied
       if (kind === 'empty') return '';
       if (kind === 'nothing') return undefined;
       if (kind === 'async') return (async function* () {
         for (let i = 0; i < 100; i++) {
           if (i % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
           yield i % 2 ? 'a' + i + ',' : Buffer.from('b' + i + ',');
         }
       })();
       return (function* () {
         for (let i = 0; i < 10000; i++) yield 'line ' + i + '\\n';
         yield Buffer.alloc(300_000, 'x');
         yield new Uint8Array(0);
         yield Buffer.from('pooled');
         yield Buffer.alloc(70_000, 'y').subarray(1, 69_999);
       })();
     };`,
    { workers: 1 },
  );
  const lines = Array.from({ length: 10000 }, (_, i) => `line ${i}\n`).join('');
  const expected = Buffer.concat([
    Buffer.from(lines),
    Buffer.alloc(300_000, 'x'),
    Buffer.from('pooled'),
    Buffer.alloc(69_998, 'y'),
  ]);
  assert.ok((await sendCommand(server.path, 'many')).equals(expected));
  const asyncExpected = Array.from({ length: 100 }, (_, i) => `${i % 2 ? 'a' : 'b'}${i},`).join('');
  assert.equal((await sendCommand(server.path, 'async')).toString(), asyncExpected);
  assert.ok((await sendCommand(server.path, 'one')).equals(Buffer.alloc(100_000, 'w')));
  assert.equal((await sendCommand(server.path, 'view')).toString(), 'v'.repeat(10));
  assert.equal((await sendCommand(server.path, 'empty')).length, 0);
  assert.equal((await sendCommand(server.path, 'nothing')).length, 0);
});

test('a worker is held back while its client does not read', async (t) => {
  const dir = tempDir(t);
  const progress = join(dir, 'progress');
  const server = await workerServer(
    t,
    dir,
    'flood.mjs',
    `import { writeFileSync } from 'node:fs';
     export default function* () {
       for (let i = 1; i <= 512; i++) {
         yield Buffer.alloc(65536, i & 0xff);
         writeFileSync(${JSON.stringify(progress)}, String(i));
       }
     }`,
    { workers: 1 },
  );
  const socket = await rawConnect(server.path);
  t.after(() => socket.destroy());
  socket.pause();
  socket.write(encodeMessage('go'));
  // 32 MiB are due; the socket buffers and the worker's window hold about 1 MiB of it. The
  // worker must stop well short of it (a worker nothing holds back passes the bound).
  const progressNow = (): number =>
    existsSync(progress) ? Number(readFileSync(progress, 'utf8')) : 0;
  await until('the worker to start', () => progressNow() >= 1, 30_000);
  const produced = await settlesAtMost('chunks the worker produced', progressNow, 127);
  t.diagnostic(`the worker was held after ${produced} of 512 chunks`);
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.resume();
  await new Promise((resolve) => socket.on('close', resolve));
  // Decode the pkt-lines: the payload must be the 512 chunks in order, then a flush.
  const wire = Buffer.concat(chunks);
  const payload: Buffer[] = [];
  let at = 0;
  for (;;) {
    const length = Number.parseInt(wire.subarray(at, at + 4).toString('latin1'), 16);
    if (length === 0) break;
    payload.push(wire.subarray(at + 4, at + length));
    at += length;
  }
  assert.equal(at + 4, wire.length, 'nothing after the flush');
  const all = Buffer.concat(payload);
  assert.equal(all.length, 512 * 65536);
  for (let i = 1; i <= 512; i++) assert.equal(all[(i - 1) * 65536 + 100], i & 0xff);
});

test('a client that hangs up stops its generator; the worker serves the next request', async (t) => {
  const dir = tempDir(t);
  const stopped = join(dir, 'stopped');
  const server = await workerServer(
    t,
    dir,
    'endless.mjs',
    `import { writeFileSync } from 'node:fs';
     export default function* (request) {
       if (request.toString() === 'short') {
         yield 'short';
         return;
       }
       try {
         for (;;) yield Buffer.alloc(65536, 'e');
       } finally {
         writeFileSync(${JSON.stringify(stopped)}, 'stopped');
       }
     }`,
    { workers: 1 },
  );
  const socket = await rawConnect(server.path);
  socket.write(encodeMessage('endless'));
  await new Promise((resolve) => socket.once('data', resolve));
  socket.destroy();
  await until('the generator to be stopped', () => existsSync(stopped));
  assert.equal((await sendCommand(server.path, 'short')).toString(), 'short');
});

test('a throwing worker module fails its request only; the server and worker go on', async (t) => {
  const dir = tempDir(t);
  const errors: unknown[] = [];
  const server = await workerServer(
    t,
    dir,
    'throws.mjs',
    `import { threadId } from 'node:worker_threads';
     export default (request) => {
       switch (request.toString()) {
         case 'throw': throw Object.assign(new Error('thrown'), { code: 'E_APP' });
         case 'reject': return Promise.reject(new Error('rejected'));
         case 'midway': return (function* () { yield 'half'; throw new Error('midway'); })();
         case 'number': return 42;
         default: return 'ok ' + threadId;
       }
     };`,
    { workers: 1, onHandlerError: (err) => errors.push(err) },
  );
  const first = (await sendCommand(server.path, 'hello')).toString();
  assert.match(first, /^ok \d+$/);
  for (const request of ['throw', 'reject', 'midway', 'number']) {
    await assert.rejects(sendCommand(server.path, request), { code: 'ERR_IPC_TRUNCATED' });
  }
  // The same worker still answers: a thrown error does not cost a thread.
  assert.equal((await sendCommand(server.path, 'hello')).toString(), first);
  assert.equal(errors.length, 4);
  const [thrown, rejected, midway, number] = errors as SimpleIpcError[];
  for (const err of errors) assert.equal((err as SimpleIpcError).code, 'ERR_IPC_HANDLER_FAILED');
  assert.equal((thrown!.cause as Error).message, 'thrown');
  assert.equal((thrown!.cause as { code?: string }).code, 'E_APP');
  assert.equal((rejected!.cause as Error).message, 'rejected');
  assert.equal((midway!.cause as Error).message, 'midway');
  assert.match((number!.cause as Error).message, /must return a string/);
  assert.equal(server.stats().handlerErrors, 4);
});

test('a worker that dies is replaced; its request fails, the next one is served', async (t) => {
  const dir = tempDir(t);
  const errors: SimpleIpcError[] = [];
  const server = await workerServer(
    t,
    dir,
    'dies.mjs',
    `import { threadId } from 'node:worker_threads';
     export default (request) => {
       switch (request.toString()) {
         case 'exit': process.exit(3);
         case 'uncaught':
           return new Promise(() => setTimeout(() => { throw new Error('uncaught boom'); }, 1));
         default: return String(threadId);
       }
     };`,
    { workers: 1, onHandlerError: (err) => errors.push(err as SimpleIpcError) },
  );
  const seen = new Set<string>();
  const id = async (): Promise<string> => {
    const thread = (await sendCommand(server.path, 'id')).toString();
    assert.ok(!seen.has(thread), `thread ${thread} answered after it died`);
    seen.add(thread);
    return thread;
  };
  await id();
  await assert.rejects(sendCommand(server.path, 'exit'), { code: 'ERR_IPC_TRUNCATED' });
  const second = await id();
  // Several in a row: still one worker, the replacement.
  assert.equal((await sendCommand(server.path, 'id')).toString(), second);
  await assert.rejects(sendCommand(server.path, 'uncaught'), { code: 'ERR_IPC_TRUNCATED' });
  await id();
  assert.deepEqual(
    errors.map((err) => err.code),
    ['ERR_IPC_HANDLER_FAILED', 'ERR_IPC_HANDLER_FAILED'],
  );
  assert.match(errors[0]!.message, /exited with code 3/);
  assert.equal((errors[1]!.cause as Error).message, 'uncaught boom');
});

test('a worker module can return QUIT, alone or after its chunks', async (t) => {
  const dir = tempDir(t);
  const module = writeModule(
    dir,
    'quit.mjs',
    `import { QUIT } from ${JSON.stringify(LIBRARY)};
     export default (request) => {
       if (request.toString() === 'quit') return QUIT;
       return (function* () { yield 'bye'; yield ' now'; return QUIT; })();
     };`,
  );
  // One pool serving two servers in turn.
  await using handler = workerHandler(module, { workers: 1 });
  for (const [request, answer] of [
    ['bye', 'bye now'],
    ['quit', ''],
  ] as const) {
    const server = await startServer(join(dir, request), handler);
    t.after(() => server.destroy());
    assert.equal((await sendCommand(server.path, request)).toString(), answer);
    await server.closed;
    assert.equal(server.stopReason?.kind, 'quit');
  }
});

test('close() lets running requests finish; destroy() fails them; both are final', async (t) => {
  const dir = tempDir(t);
  const module = writeModule(
    dir,
    'slow.mjs',
    `export default async (request) => {
       await new Promise((resolve) => setTimeout(resolve, Number(request.toString())));
       return 'done';
     };`,
  );
  const gentle = workerHandler(module, { workers: 1 });
  const server = await startServer(join(dir, 'a'), gentle, { threads: 4 });
  t.after(() => server.destroy());
  await gentle.ready();
  const running = [sendCommand(server.path, '300'), sendCommand(server.path, '10')];
  await until('both requests to run', () => server.stats().running === 2);
  await gentle.close();
  assert.deepEqual((await Promise.all(running)).map(String), ['done', 'done']);
  await assert.rejects(sendCommand(server.path, '1'), { code: 'ERR_IPC_TRUNCATED' });
  await assert.rejects(gentle.ready(), { code: 'ERR_IPC_HANDLER_FAILED' });

  const abrupt = workerHandler(module, { workers: 1 });
  const other = await startServer(join(dir, 'b'), abrupt);
  t.after(() => other.destroy());
  const cut = assert.rejects(sendCommand(other.path, '10000'), { code: 'ERR_IPC_TRUNCATED' });
  await until('the request to run', () => other.stats().running === 1);
  const started = performance.now();
  // A close() would wait for the request; a destroy() while it waits ends both at once.
  const closing = abrupt.close();
  await abrupt.destroy();
  await closing;
  await cut;
  assert.ok(performance.now() - started < 5000, 'destroy did not wait for the request');
  await assert.rejects(sendCommand(other.path, '1'), { code: 'ERR_IPC_TRUNCATED' });
});

test('a module that cannot be loaded fails ready() and its requests, without respawning', async (t) => {
  const dir = tempDir(t);
  const noDefault = writeModule(dir, 'named.mjs', 'export const handler = () => "x";');
  const exits = writeModule(dir, 'exits.mjs', 'process.exit(7);');
  for (const module of [join(dir, 'missing.mjs'), noDefault, exits]) {
    await using handler = workerHandler(module, { workers: 2 });
    await assert.rejects(handler.ready(), { code: 'ERR_IPC_HANDLER_FAILED' });
    const server = await startServer(join(dir, 's'), handler);
    t.after(() => server.destroy());
    const results = await Promise.allSettled(
      Array.from({ length: 4 }, () => sendCommand(server.path, 'x')),
    );
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      assert.equal((result.reason as SimpleIpcError).code, 'ERR_IPC_TRUNCATED');
    }
    await server.stop();
  }
});

test('bad arguments are refused at once', () => {
  for (const workers of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => workerHandler('/x.mjs', { workers }), { code: 'ERR_IPC_INVALID_ARGUMENT' });
  }
  assert.throws(() => workerHandler('https://example.com/x.mjs'), {
    code: 'ERR_IPC_INVALID_ARGUMENT',
  });
  assert.throws(() => workerHandler(''), { code: 'ERR_IPC_INVALID_ARGUMENT' });
  const handler = workerHandler(new URL('file:///x.mjs'));
  assert.ok(handler.workers >= 1);
});

test('the pool never keeps the process alive after the server stops', async (t) => {
  const dir = tempDir(t);
  // The module keeps a timer running in its worker: only the pool's unref lets the process go.
  const module = writeModule(
    dir,
    'busy.mjs',
    `setInterval(() => {}, 1000);
     export default (request) => 'echo ' + request;`,
  );
  const script = writeModule(
    dir,
    'app.mjs',
    `import { sendCommand, startServer } from ${JSON.stringify(LIBRARY)};
     import { workerHandler } from ${JSON.stringify(WORKERS)};
     // Each step is logged before its await: if the process ends early (exit 13, a top-level
     // await pending when nothing keeps the event loop alive; Node 20 emits no 'exit' event
     // then), the last line of stderr names the await. That is how a pool that unref'd a late
     // worker showed itself; the next test makes that case happen on purpose.
     const step = (name) => process.stderr.write('waiting for ' + name + '\\n');
     step('startServer');
     const handler = workerHandler(${JSON.stringify(module)}, { workers: 2 });
     const server = await startServer(${JSON.stringify(join(dir, 's'))}, handler);
     step('the answers');
     const answers = await Promise.all([1, 2, 3, 4].map((i) => sendCommand(server.path, String(i))));
     step('server.stop()');
     await server.stop();
     console.log(answers.join(','));
     step('handler.close()');
     if (process.argv[2] === 'close') await handler.close();
     // No close() otherwise: idle workers must not hold the process.`,
  );
  for (const mode of ['leave', 'close']) {
    const result = await runProcess(process.execPath, [script, mode], { timeoutMs: 15_000 });
    assert.equal(result.signal, null, `${mode}: the process had to be killed`);
    assert.equal(result.code, 0, `${mode}: exit ${result.code}; stderr:\n${String(result.stderr)}`);
    assert.equal(result.stdout.toString().trim(), 'echo 1,echo 2,echo 3,echo 4');
  }
});

test('close() waits for a worker whose module finished loading as the pool closed', async (t) => {
  const dir = tempDir(t);
  // ready() starts both workers; the first serves the requests while the second (threadId 2)
  // is held loading until the script lets it go, after the server has stopped. It then finishes
  // loading (its 'ready' is posted) and blocks in native code, where a terminate() cannot stop
  // it at once. The script calls close() before its event loop sees that 'ready'. A pool that
  // unref'd the worker on that late 'ready' let the process end with close() pending (exit 13,
  // seen in CI): the worker's exit, still to come, kept nothing alive. Whether that bug shows
  // in one run depends on timing (it did in most runs, not all), so the script runs three times.
  const module = writeModule(
    dir,
    'late.mjs',
    `import { spawnSync } from 'node:child_process';
     import { existsSync, writeFileSync } from 'node:fs';
     import { join } from 'node:path';
     import { threadId } from 'node:worker_threads';
     const flags = process.env.LATE_FLAGS;
     if (threadId === 2) {
       while (!existsSync(join(flags, 'go'))) await new Promise((resolve) => setTimeout(resolve, 5));
       setImmediate(() => {
         writeFileSync(join(flags, 'loaded'), '');
         spawnSync(process.execPath, ['-e', 'setTimeout(() => {}, 300)']);
       });
     }
     export default (request) => 'echo ' + request;`,
  );
  const script = writeModule(
    dir,
    'app.mjs',
    `import { existsSync, writeFileSync } from 'node:fs';
     import { join } from 'node:path';
     import { sendCommand, startServer } from ${JSON.stringify(LIBRARY)};
     import { workerHandler } from ${JSON.stringify(WORKERS)};
     const flags = process.env.LATE_FLAGS;
     const handler = workerHandler(${JSON.stringify(module)}, { workers: 2 });
     handler.ready().catch(() => {}); // both workers start now, whatever order requests come in
     const server = await startServer(join(flags, 's'), handler);
     const answers = await Promise.all([1, 2].map((i) => sendCommand(server.path, String(i))));
     await server.stop();
     writeFileSync(join(flags, 'go'), '');
     while (!existsSync(join(flags, 'loaded'))) {} // the event loop must not run meanwhile
     await handler.close();
     console.log(answers.join(','));`,
  );
  for (const run of [1, 2, 3]) {
    const flags = join(dir, String(run));
    mkdirSync(flags);
    const result = await runProcess(process.execPath, [script], {
      timeoutMs: 15_000 * PROCESS_SLOWNESS,
      env: { ...process.env, LATE_FLAGS: flags },
    });
    assert.equal(result.signal, null, `run ${run}: the process had to be killed`);
    assert.equal(
      result.code,
      0,
      `run ${run}: exit ${result.code}; stderr:\n${String(result.stderr)}`,
    );
    assert.equal(result.stdout.toString().trim(), 'echo 1,echo 2', `run ${run}`);
    assert.ok(existsSync(join(flags, 'loaded')), `run ${run}: the second worker never loaded`);
  }
});

// Worker jobs do not outlive their clients (issue 21, defect 6).

/** A task that records each request it runs; 'first' then waits for the file 'gate'. */
function gatedModule(dir: string): string {
  return writeModule(
    dir,
    'gated.mjs',
    `import { existsSync, writeFileSync } from 'node:fs';
     import { join } from 'node:path';
     const dir = ${JSON.stringify(dir)};
     export default async (request) => {
       const name = request.toString();
       writeFileSync(join(dir, 'ran-' + name), '');
       while (name === 'first' && !existsSync(join(dir, 'gate'))) {
         await new Promise((resolve) => setTimeout(resolve, 5));
       }
       return name;
     };`,
  );
}

test('a request queued behind a busy worker is dropped when its client hangs up', async (t) => {
  const dir = tempDir(t);
  // Destroyed, not closed: a close() would wait for 'first' if the test failed before the gate.
  const handler = workerHandler(gatedModule(dir), { workers: 1 });
  t.after(() => handler.destroy());
  const left = new Set<string>();
  const outcomes = new Map<string, Promise<string>>();
  const server = await startServer(
    join(dir, 's'),
    (request, reply, context) => {
      const name = request.toString();
      context.signal.addEventListener('abort', () => left.add(name));
      const result = Promise.resolve(handler(request, reply, context));
      outcomes.set(
        name,
        result.then(
          () => 'resolved',
          (err: SimpleIpcError) => err.code,
        ),
      );
      return result;
    },
    { threads: 4 },
  );
  t.after(() => server.destroy());
  const first = sendCommand(server.path, 'first');
  await until('the first request to run', () => existsSync(join(dir, 'ran-first')));
  const second = await rawConnect(server.path);
  t.after(() => second.destroy());
  second.write(encodeMessage('second'));
  await until('the second request to wait for the worker', () => server.stats().running === 2);
  second.destroy();
  await until('the server to see the second client leave', () => left.has('second'));
  writeFileSync(join(dir, 'gate'), '');
  assert.equal((await first).toString(), 'first');
  // The one worker takes jobs in order: had the second waited on, it would have run by now.
  assert.equal((await sendCommand(server.path, 'third')).toString(), 'third');
  assert.equal(existsSync(join(dir, 'ran-second')), false, 'the dropped request never ran');
  assert.equal(await outcomes.get('second'), 'ERR_IPC_CONNECTION_CLOSED');
  await until('the server to count the client gone', () => server.stats().clientGone === 1);
  assert.equal(server.stats().handlerErrors, 0);
});

test('called directly: a queued job is dropped when its signal aborts; no listener outlives a job', async (t) => {
  const dir = tempDir(t);
  // Destroyed, not closed: a close() would wait for 'first' if the test failed before the gate.
  const handler = workerHandler(gatedModule(dir), { workers: 1 });
  t.after(() => handler.destroy());
  const reply = (): Promise<void> => Promise.resolve();
  const contextOf = (controller: AbortController): RequestContext =>
    ({ signal: controller.signal }) as RequestContext;
  const firstController = new AbortController();
  const first = Promise.resolve(handler(Buffer.from('first'), reply, contextOf(firstController)));
  await until('the first job to run', () => existsSync(join(dir, 'ran-first')));
  const queuedController = new AbortController();
  const queued = Promise.resolve(
    handler(Buffer.from('second'), reply, contextOf(queuedController)),
  );
  const queuedDropped = assert.rejects(queued, { code: 'ERR_IPC_CONNECTION_CLOSED' });
  queuedController.abort(new Error('gone'));
  const never = Promise.resolve(
    handler(Buffer.from('never'), reply, { signal: AbortSignal.abort() } as RequestContext),
  );
  const neverRun = assert.rejects(never, { code: 'ERR_IPC_CONNECTION_CLOSED' });
  writeFileSync(join(dir, 'gate'), '');
  await first;
  await queuedDropped;
  await neverRun;
  assert.equal(existsSync(join(dir, 'ran-second')), false, 'the queued job never ran');
  assert.equal(existsSync(join(dir, 'ran-never')), false, 'the aborted job never ran');
  assert.equal(getEventListeners(firstController.signal, 'abort').length, 0, 'after a job ran');
  assert.equal(getEventListeners(queuedController.signal, 'abort').length, 0, 'after a drop');
});

test('a running task gets a signal that aborts when its client hangs up', async (t) => {
  const dir = tempDir(t);
  const started = join(dir, 'started');
  const left = join(dir, 'left');
  const server = await workerServer(
    t,
    dir,
    'waits.mjs',
    `import { writeFileSync } from 'node:fs';
     export default async (request, { signal }) => {
       if (request.toString() === 'short') return 'aborted: ' + signal.aborted;
       writeFileSync(${JSON.stringify(started)}, '');
       const reason = await new Promise((resolve) => {
         signal.addEventListener('abort', () => resolve(signal.reason), { once: true });
       });
       writeFileSync(${JSON.stringify(left)}, reason.code);
       return 'too late';
     };`,
    { workers: 1, threads: 4 },
  );
  const socket = await rawConnect(server.path);
  t.after(() => socket.destroy());
  socket.write(encodeMessage('wait'));
  await until('the task to start', () => existsSync(started));
  socket.destroy();
  // The file exists as soon as writeFileSync creates it, before its bytes are in: wait for them.
  await until(
    'the task to learn that its client left',
    () => existsSync(left) && readFileSync(left, 'utf8') !== '',
  );
  assert.equal(readFileSync(left, 'utf8'), 'ERR_IPC_CONNECTION_CLOSED');
  // The worker goes on, and the next task gets a signal of its own.
  assert.equal((await sendCommand(server.path, 'short')).toString(), 'aborted: false');
  await until('the server to count the client gone', () => server.stats().clientGone === 1);
});

// A workerHandler is "an ordinary handler": an application may call it from its own handler,
// passing a reply of its own (to log, count or transform chunks). That reply is the
// application's callback: a throw from it must be contained, not end the process.
test('a workerHandler given a reply that throws does not crash the process', async (t) => {
  const dir = tempDir(t);
  const task = writeModule(dir, 'task.mjs', `export default (request) => 'answer:' + request;\n`);
  const script = writeModule(
    dir,
    'main.mjs',
    `
import { startServer, workerHandler, sendCommand } from ${JSON.stringify(LIBRARY)};
import { join } from 'node:path';
const path = join(${JSON.stringify(dir)}, 's.sock');
const wh = workerHandler(${JSON.stringify(task)}, { workers: 1 });
const server = await startServer(
  path,
  (request, reply, context) =>
    wh(request, () => { throw new Error('my reply wrapper broke'); }, context),
  { onHandlerError: () => {} },
);
let outcome;
try {
  outcome = 'resolved ' + (await sendCommand(path, 'x', { timeout: 5000 })).toString();
} catch (err) {
  outcome = 'rejected ' + err.code;
}
await server.stop();
await wh.close();
console.log('survived: ' + outcome);
`,
  );
  const result = await runProcess(process.execPath, [script], { timeoutMs: 30_000 });
  assert.equal(
    result.code,
    0,
    `the process died (code ${result.code}, signal ${result.signal}): ${result.stderr}`,
  );
  // The handler fails (its reply threw): the client is told the answer is cut short.
  assert.match(result.stdout.toString(), /survived: rejected ERR_IPC_TRUNCATED/);
});

test('called directly: a reply that throws or returns no Promise fails that job only', async (t) => {
  const dir = tempDir(t);
  const module = writeModule(
    dir,
    'chunks.mjs',
    `export default function* (request) { yield 'one:' + request; yield 'two:' + request; }\n`,
  );
  const handler = workerHandler(module, { workers: 1 });
  t.after(() => handler.destroy());
  const context = { signal: new AbortController().signal } as RequestContext;
  const broke = new Error('my reply broke');
  const throwing = (): Promise<void> => {
    throw broke;
  };
  await assert.rejects(
    Promise.resolve(handler(Buffer.from('a'), throwing, context)),
    (err) => err === broke,
  );
  const noPromise = (() => undefined) as unknown as (chunk: unknown) => Promise<void>;
  await assert.rejects(Promise.resolve(handler(Buffer.from('b'), noPromise, context)), {
    code: 'ERR_IPC_HANDLER_FAILED',
    message: /reply\(\) returned no Promise/,
  });
  const badThen = {
    then: () => {
      throw broke;
    },
  } as unknown as Promise<void>;
  await assert.rejects(
    Promise.resolve(handler(Buffer.from('c'), () => badThen, context)),
    (err) => err === broke,
  );
  // The worker goes on: the next job, with a reply that works, gets every chunk.
  const chunks: string[] = [];
  await handler(
    Buffer.from('d'),
    (chunk) => {
      chunks.push(String(chunk));
      return Promise.resolve();
    },
    context,
  );
  assert.equal(getEventListeners(context.signal, 'abort').length, 0);
  assert.deepEqual(chunks, ['one:d', 'two:d']);
});

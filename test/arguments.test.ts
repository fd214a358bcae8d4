import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  connect,
  connectOrStart,
  encodeMessage,
  encodePacket,
  getActiveState,
  MessageDecoder,
  PacketBuilder,
  PktLineDecoder,
  parsePacketLength,
  type SimpleIpcError,
  sendCommand,
  startClusteredServer,
  startDaemon,
  startServer,
  stopOnSignals,
  stopWhenIdle,
  tryConnect,
  workerHandler,
  writePacketLength,
} from '../src/index.js';
import { show } from '../src/validate.js';
import { countingServer, tempDir, test } from './helpers.js';

/** Asserts that `run` fails with ERR_IPC_INVALID_ARGUMENT naming `name` and showing `value`. */
async function rejectsArgument(run: () => unknown, name: string, value: unknown): Promise<void> {
  await assert.rejects(
    () => Promise.resolve().then(run),
    (err: SimpleIpcError) => {
      assert.equal(
        err.code,
        'ERR_IPC_INVALID_ARGUMENT',
        `${name} = ${show(value)}: ${err.message}`,
      );
      assert.ok(err.message.startsWith(`${name} must be `), err.message);
      assert.ok(err.message.endsWith(`, not ${show(value)}`), err.message);
      return true;
    },
  );
}

const NOT_NUMBERS = [NaN, Infinity, -Infinity, '8', null, true, {}, 10n];
const NOT_DURATIONS = [NaN, Infinity, -1, 2 ** 31, '10', null];
const NOT_COUNTS = [0, -1, 1.5, NaN, Infinity, '2', null];
const NOT_BOOLEANS = ['true', 1, 0, null, {}];
const NOT_FUNCTIONS = ['f', 1, {}, null, true];
const NOT_SIGNALS = [{}, 'signal', 1, null, new AbortController()];
const NOT_OPTIONS = [null, 1, 'x', true, []];

test('the reproductions from the review now fail at once', async (t) => {
  const dir = tempDir(t);
  // A server that accepted and never answered.
  await rejectsArgument(
    () => startServer(join(dir, 's'), () => {}, { threads: NaN }),
    'options.threads',
    NaN,
  );
  assert.deepEqual(readdirSync(dir), [], 'nothing is created for a bad option');
  // A connect that retried forever.
  await rejectsArgument(
    () => tryConnect(join(dir, 'missing'), { waitIfNotFound: true, timeout: NaN }),
    'options.timeout',
    NaN,
  );
});

test('startServer checks its path, its handler and every option', async (t) => {
  const path = join(tempDir(t), 's');
  const handler = (): void => {};
  for (const bad of [undefined, '', 1, null, 'a\0b']) {
    await rejectsArgument(() => startServer(bad as string, handler), 'path', bad);
  }
  for (const bad of [undefined, null, 1, {}, { stream: 1 }]) {
    await rejectsArgument(() => startServer(path, bad as typeof handler), 'handler', bad);
  }
  for (const bad of NOT_OPTIONS) {
    await rejectsArgument(() => startServer(path, handler, bad as object), 'options', bad);
  }
  const cases: [string, readonly unknown[]][] = [
    ['threads', [...NOT_COUNTS, ...NOT_NUMBERS]],
    ['queueSize', NOT_COUNTS],
    ['backlog', [-1, 1.5, 2 ** 31, ...NOT_NUMBERS]],
    ['maxRequestSize', [-1, 1.5, NaN, -Infinity, '1', null]],
    ['streamThreshold', [-1, 1.5, Infinity, NaN, '1']],
    ['requestTimeout', NOT_DURATIONS],
    ['responseTimeout', NOT_DURATIONS],
    ['stopTimeout', NOT_DURATIONS],
    ['mode', [-1, 0o1000, 1.5, '600', NaN]],
    ['disallowChdir', NOT_BOOLEANS],
    ['lockTimeout', NOT_DURATIONS],
    ['signal', NOT_SIGNALS],
    ['onHandlerError', NOT_FUNCTIONS],
    ['debug', NOT_FUNCTIONS],
  ];
  for (const [option, values] of cases) {
    for (const value of values) {
      await rejectsArgument(
        () => startServer(path, handler, { [option]: value }),
        `options.${option}`,
        value,
      );
    }
  }
  assert.equal(existsSync(path), false);
  // The edges of each range are taken. -0 is 0 (fs.chmod(path, -0) aborts Node 20).
  const server = await startServer(path, handler, {
    mode: -0,
    threads: 1,
    queueSize: 1,
    backlog: 0,
    maxRequestSize: Infinity,
    streamThreshold: 0,
    requestTimeout: 0,
    responseTimeout: 2 ** 31 - 1,
    stopTimeout: 0,
    lockTimeout: -0,
  });
  await server.stop();
});

test('startClusteredServer checks processes and the server options before loading anything', async (t) => {
  const path = join(tempDir(t), 's');
  const module = new URL('./fixtures/never-loaded.js', import.meta.url);
  for (const value of [...NOT_COUNTS, 1025]) {
    await rejectsArgument(
      () => startClusteredServer(path, module, { processes: value as number }),
      'options.processes',
      value,
    );
  }
  await rejectsArgument(
    () => startClusteredServer(path, module, { threads: NaN }),
    'options.threads',
    NaN,
  );
  await rejectsArgument(() => startClusteredServer('', module), 'path', '');
});

test('the client functions check their path and every option', async (t) => {
  const path = join(tempDir(t), 'missing');
  const connects = [tryConnect, connect, (p: string, o: object) => sendCommand(p, 'x', o)];
  for (const call of connects) {
    for (const bad of NOT_OPTIONS)
      await rejectsArgument(() => call(path, bad as object), 'options', bad);
    await rejectsArgument(() => call('', {}), 'path', '');
    const cases: [string, readonly unknown[]][] = [
      ['waitIfBusy', NOT_BOOLEANS],
      ['waitIfNotFound', NOT_BOOLEANS],
      ['disallowChdir', NOT_BOOLEANS],
      ['timeout', NOT_DURATIONS],
      ['retryInterval', NOT_DURATIONS],
      ['signal', NOT_SIGNALS],
    ];
    for (const [option, values] of cases) {
      for (const value of values) {
        await rejectsArgument(() => call(path, { [option]: value }), `options.${option}`, value);
      }
    }
  }
  for (const value of [-1, 1.5, NaN, '1']) {
    await rejectsArgument(
      () => sendCommand(path, 'x', { maxResponseSize: value as number }),
      'options.maxResponseSize',
      value,
    );
  }
  for (const value of [1, null, undefined, {}, true]) {
    await rejectsArgument(() => sendCommand(path, value as string), 'request', value);
  }
  for (const value of NOT_SIGNALS) {
    await rejectsArgument(
      () => getActiveState(path, { signal: value as AbortSignal }),
      'options.signal',
      value,
    );
  }
  await rejectsArgument(() => getActiveState(1 as unknown as string), 'path', 1);
});

test('Connection.send and stream check the request and options before sending anything', async (t) => {
  const { path, calls } = await countingServer(t);
  const connection = await connect(path);
  t.after(() => connection.destroy());
  assert.throws(() => connection.stream('x', { timeout: -5 }), {
    code: 'ERR_IPC_INVALID_ARGUMENT',
  });
  assert.throws(() => connection.stream(5 as unknown as string), {
    code: 'ERR_IPC_INVALID_ARGUMENT',
  });
  await rejectsArgument(
    () => connection.send('x', { signal: 'no' as unknown as AbortSignal }),
    'options.signal',
    'no',
  );
  assert.equal(calls(), 0);
});

test('daemons on demand: every option is checked before anything is spawned', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's');
  const marker = join(dir, 'spawned');
  const good = {
    command: process.execPath,
    args: ['-e', `require('node:fs').writeFileSync(${JSON.stringify(marker)}, '')`],
  };
  const cases: [string, readonly unknown[]][] = [
    ['command', [undefined, '', 1, null]],
    ['args', ['x', [1], null]],
    ['cwd', [1, '', null]],
    ['env', [1, { A: 1 }, null]],
    ['logFile', [1, '']],
    ['timeout', NOT_DURATIONS],
    ['pollInterval', NOT_DURATIONS],
    ['signal', NOT_SIGNALS],
  ];
  for (const start of [startDaemon, connectOrStart]) {
    await rejectsArgument(
      () => start(path, undefined as unknown as typeof good),
      'options.command',
      undefined,
    );
    await rejectsArgument(() => start('', good), 'path', '');
    for (const [option, values] of cases) {
      for (const value of values) {
        await rejectsArgument(
          () => start(path, { ...good, [option]: value }),
          `options.${option}`,
          value,
        );
      }
    }
  }
  for (const value of NOT_BOOLEANS) {
    await rejectsArgument(
      () => connectOrStart(path, { ...good, disallowChdir: value as boolean }),
      'options.disallowChdir',
      value,
    );
  }
  assert.equal(existsSync(marker), false, 'nothing was spawned');
});

test('policies check their server and options, and install nothing when one is bad', async (t) => {
  const server = await startServer(join(tempDir(t), 's'), () => {});
  t.after(() => server.destroy());
  for (const bad of [undefined, null, {}, 'server']) {
    await rejectsArgument(() => stopWhenIdle(bad as typeof server, 1000), 'server', bad);
    await rejectsArgument(() => stopOnSignals(bad as typeof server), 'server', bad);
  }
  for (const bad of [0, ...NOT_DURATIONS, undefined]) {
    await rejectsArgument(() => stopWhenIdle(server, bad as number), 'timeout', bad);
  }
  for (const bad of [0, ...NOT_DURATIONS]) {
    await rejectsArgument(
      () => stopWhenIdle(server, 1000, { checkInterval: bad as number }),
      'options.checkInterval',
      bad,
    );
  }
  for (const bad of NOT_FUNCTIONS) {
    await rejectsArgument(
      () => stopWhenIdle(server, 1000, { onIdle: bad as () => void }),
      'options.onIdle',
      bad,
    );
    await rejectsArgument(
      () => stopOnSignals(server, { onSignal: bad as () => void }),
      'options.onSignal',
      bad,
    );
  }
  const listeners = process.listenerCount('SIGINT');
  for (const bad of ['SIGINT', ['SIGKILL'], ['SIGSTOP'], ['NOPE'], [2], null]) {
    await rejectsArgument(
      () => stopOnSignals(server, { signals: bad as NodeJS.Signals[] }),
      'options.signals',
      bad,
    );
  }
  for (const bad of NOT_DURATIONS) {
    await rejectsArgument(
      () => stopOnSignals(server, { forceAfter: bad as number }),
      'options.forceAfter',
      bad,
    );
  }
  for (const bad of NOT_OPTIONS) {
    await rejectsArgument(() => stopOnSignals(server, bad as object), 'options', bad);
    await rejectsArgument(() => stopWhenIdle(server, 1000, bad as object), 'options', bad);
  }
  assert.equal(process.listenerCount('SIGINT'), listeners, 'no listener was left behind');
});

test('workerHandler checks its module and options', async () => {
  const module = new URL('./fixtures/never-loaded.js', import.meta.url);
  for (const bad of [...NOT_COUNTS, 1025]) {
    await rejectsArgument(
      () => workerHandler(module, { workers: bad as number }),
      'options.workers',
      bad,
    );
  }
  for (const bad of [1, 'x', null]) {
    await rejectsArgument(
      () => workerHandler(module, { resourceLimits: bad as never }),
      'options.resourceLimits',
      bad,
    );
  }
  for (const bad of [-1, 0, NaN, Infinity, '8']) {
    await rejectsArgument(
      () => workerHandler(module, { resourceLimits: { maxOldGenerationSizeMb: bad as number } }),
      'options.resourceLimits.maxOldGenerationSizeMb',
      bad,
    );
  }
  for (const bad of NOT_OPTIONS) {
    await rejectsArgument(() => workerHandler(module, bad as object), 'options', bad);
  }
  await rejectsArgument(() => workerHandler(1 as unknown as string), 'the worker module', 1);
  await rejectsArgument(
    () => workerHandler('http://example.com/w.js'),
    'the worker module',
    'http://example.com/w.js',
  );
});

test('the codec checks its arguments: never a wrong answer or a TypeError from inside', async () => {
  await rejectsArgument(() => encodePacket(1 as unknown as string), 'payload', 1);
  await rejectsArgument(() => encodeMessage(null as unknown as string), 'payload', null);
  await rejectsArgument(() => parsePacketLength('0004' as unknown as Uint8Array), 'bytes', '0004');
  await rejectsArgument(() => parsePacketLength(Buffer.from('00040004'), 1.5), 'offset', 1.5);
  const target = Buffer.alloc(8);
  await rejectsArgument(() => writePacketLength(target, 1.5, 4), 'offset', 1.5);
  await rejectsArgument(() => writePacketLength(target, 5, 4), 'offset', 5);
  await rejectsArgument(() => writePacketLength(target, 0, 65521), 'length', 65521);
  await rejectsArgument(() => writePacketLength(target, 0, -1), 'length', -1);
  await rejectsArgument(() => writePacketLength('x' as unknown as Buffer, 0, 4), 'target', 'x');
  await rejectsArgument(
    () => new PktLineDecoder().push('0000' as unknown as Buffer),
    'chunk',
    '0000',
  );
  await rejectsArgument(
    () => new MessageDecoder().push(Buffer.from('0000'), null as never),
    'sink',
    null,
  );
  await rejectsArgument(
    () => new MessageDecoder().push('0000' as never, { onPiece() {} }),
    'chunk',
    '0000',
  );
  await rejectsArgument(() => new PacketBuilder().add('x' as unknown as Buffer), 'data', 'x');
  await rejectsArgument(() => new PacketBuilder().addString(1 as unknown as string), 'text', 1);
});

import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as api from '../src/index.js';
import {
  Connection,
  connect,
  MessageDecoder,
  PacketBuilder,
  PktLineDecoder,
  type RequestContext,
  Server,
  sendCommand,
  tryConnect,
  startDaemon,
  startServer,
  stopOnSignals,
  stopWhenIdle,
  workerHandler,
} from '../src/index.js';
import { ROOT, tempDir, test } from './helpers.js';

test('a handler gets a context of its own: the signal and the server, nothing of the connection', async (t) => {
  const path = join(tempDir(t), 's');
  const seen: RequestContext[] = [];
  const server = await startServer(path, async (_request, reply, context) => {
    seen.push(context);
    await reply('ok');
  });
  t.after(() => server.destroy());
  await sendCommand(path, 'a');
  await sendCommand(path, 'b');
  const [context, other] = seen as [RequestContext, RequestContext];
  assert.notEqual(context, other, 'one per request');
  assert.equal(context.server, server);
  assert.ok(context.signal instanceof AbortSignal);
  const record = context as unknown as Record<string, unknown>;
  for (const name of [
    'socket',
    'fail',
    'inbound',
    'outbound',
    'phase',
    'finish',
    'reply',
    'closed',
  ]) {
    assert.equal(name in context, false, `context.${name} is not reachable`);
    assert.equal(record[name], undefined);
  }
  assert.deepEqual(Object.keys(context), ['server']);
});

test('Server and Connection are made only by startServer and connect', () => {
  const NewServer = Server as unknown as new (...args: unknown[]) => unknown;
  const NewConnection = Connection as unknown as new (...args: unknown[]) => unknown;
  assert.throws(() => new NewServer('/tmp/x', () => {}, {}), { code: 'ERR_IPC_INVALID_ARGUMENT' });
  assert.throws(() => new NewConnection({}, '/tmp/x'), { code: 'ERR_IPC_INVALID_ARGUMENT' });
});

test('the published types hold only the public API', () => {
  // What `npm run build` emits for the package (tsconfig.json has stripInternal).
  const published = (name: string): string =>
    readFileSync(new URL(`../src/${name}.d.ts`, import.meta.url), 'utf8');
  const server = published('server');
  const connection = published('connection');
  assert.match(server, /private constructor\(\);/);
  assert.match(connection, /private constructor\(\);/);
  // The server's modules: its options and plain types, and its conversations (all internal).
  const serverModules = { server, options: published('server-options') };
  const conversation = published('conversation');
  assert.equal(
    /^export (?!\{\};$)/m.test(conversation),
    false,
    'conversation.d.ts exports nothing',
  );
  for (const internal of [
    'start(',
    'attach(',
    'setGroup(',
    'stopFor(',
    'sweep(',
    'requestProgress(',
    'conversationClosed(',
    'get listener',
    'get tick',
    'requestLimits',
    'static create',
    'ServerSettings',
    'serverSettings',
    'checkHandler',
    'ServerGroup',
    'Conversation',
    'Phase',
    'kConversation',
  ]) {
    for (const [name, text] of Object.entries(serverModules)) {
      assert.equal(text.includes(internal), false, `${name}.d.ts has ${internal}`);
    }
  }
  assert.equal(connection.includes('static create'), false);
});

test('the client (src/client.ts) loads no server, daemon, cluster or worker code', () => {
  // What its source imports, followed through, type-only imports left out (tsc drops them).
  const loaded = new Set<string>();
  const walk = (file: string): void => {
    if (loaded.has(file)) return;
    loaded.add(file);
    const text = readFileSync(join(ROOT, 'src', file.replace(/\.js$/, '.ts')), 'utf8');
    const imports = /^(?:import|export)(?!\s+type\b)[^;]*?\sfrom\s+'\.\/([\w-]+\.js)'/gm;
    for (const [, target] of text.matchAll(imports)) walk(target!);
  };
  walk('client.js');
  // The build puts exactly those modules in one file (scripts/bundle-client.mjs), which is all
  // that the client entry loads: its source map names them (all but client.ts, which only
  // re-exports).
  const map = JSON.parse(readFileSync(join(ROOT, 'dist', 'src', 'client-core.js.map'), 'utf8')) as {
    sources: string[];
  };
  assert.deepEqual(
    map.sources.map((source) => basename(source).replace(/\.ts$/, '.js')).sort(),
    [...loaded].filter((file) => file !== 'client.js').sort(),
  );
  assert.match(
    readFileSync(join(ROOT, 'dist', 'src', 'client.js'), 'utf8'),
    /^(\/\/[^\n]*\n)*export \{[^}]*\} from '\.\/client-core\.js';\n$/,
  );
  // Exactly these: a new import must be one a client-only program can afford.
  assert.deepEqual([...loaded].sort(), [
    'address.js',
    'client.js',
    'connect-attempt.js',
    'connect.js',
    'connection.js',
    'diagnostics.js',
    'errors.js',
    'exchange.js',
    'inbound-message.js',
    'outbound-message.js',
    'pkt-line-decoder.js',
    'pkt-line.js',
    'refusal.js',
    'send-command.js',
    'trust.js',
    'validate.js',
  ]);
  // Which built-ins it loads: test/client-entry.test.ts, against a plain node:net script.
});

/**
 * The members the API report (etc/simple-ipc.api.md) gives each class and interface, by name:
 * `[Symbol.asyncIterator]` for a symbol, statics apart. An interface gets those of what it
 * extends.
 */
function reportedMembers(): Map<string, { instance: Set<string>; statics: Set<string> }> {
  const report = readFileSync(join(ROOT, 'etc', 'simple-ipc.api.md'), 'utf8').replace(
    /\r\n/g,
    '\n',
  );
  const blocks = new Map<string, { members: string[]; statics: string[]; extends: string[] }>();
  const block =
    /^export (?:declare )?(?:class|interface) (\w+)(?:<[^>]*>)?(?: extends ([^{]+?))?(?: implements [^{]+?)? \{\n([\s\S]*?)^\}/gm;
  for (const [, name, parents, body] of report.matchAll(block)) {
    const members: string[] = [];
    const statics: string[] = [];
    for (const line of body!.split('\n')) {
      const member = /^ {4}(static )?(?:readonly |get |set )*(\[[^\]]+\]|\w+)/.exec(line);
      if (member === null || member[2] === 'constructor') continue;
      (member[1] === undefined ? members : statics).push(member[2]!);
    }
    const extended = (parents ?? '').split(',').map((parent) => parent.trim().replace(/<.*/, ''));
    blocks.set(name!, { members, statics, extends: extended.filter((p) => p !== '') });
  }
  const builtIn: Record<string, string[]> = {
    AsyncDisposable: ['[Symbol.asyncDispose]'],
    Disposable: ['[Symbol.dispose]'],
  };
  const resolve = (name: string): string[] => {
    const found = blocks.get(name);
    if (found === undefined) return builtIn[name] ?? [];
    return [...found.members, ...found.extends.flatMap(resolve)];
  };
  const result = new Map<string, { instance: Set<string>; statics: Set<string> }>();
  for (const [name, found] of blocks) {
    result.set(name, { instance: new Set(resolve(name)), statics: new Set(found.statics) });
  }
  return result;
}

// Symbols by the names the report gives them: the well-known ones (Node 20 adds
// Symbol.asyncDispose itself, with a description of its own), and the error brand.
const SYMBOL_NAMES = new Map<symbol, string>([
  ...Object.getOwnPropertyNames(Symbol)
    .filter((name) => typeof Symbol[name as keyof SymbolConstructor] === 'symbol')
    .map((name): [symbol, string] => [Symbol[name as 'iterator'], `Symbol.${name}`]),
  [Symbol.for('simple-ipc.error'), 'kSimpleIpcError'],
]);

function nameOf(key: string | symbol): string {
  if (typeof key === 'string') return key;
  const known = SYMBOL_NAMES.get(key);
  if (known !== undefined) return `[${known}]`;
  return `[${key.description ?? 'unnamed symbol'}]`;
}

// Where a walk up the prototype chain stops: what every object, function or error has.
const BASES: readonly unknown[] = [Object.prototype, Function.prototype, Error.prototype, Error];
// Own names every function, class or error has by the language.
const LANGUAGE = new Set([
  'constructor',
  'length',
  'name',
  'prototype',
  'stack',
  'message',
  'cause',
]);

/** Every property name reachable on `value`: its own, and its prototypes' up to the bases. */
function reachable(value: object): string[] {
  const names = new Set<string>();
  for (
    let o: object | null = value;
    o !== null && !BASES.includes(o);
    o = Object.getPrototypeOf(o) as object | null
  ) {
    for (const key of Reflect.ownKeys(o)) {
      const name = nameOf(key);
      if (!LANGUAGE.has(name)) names.add(name);
    }
  }
  return [...names].sort();
}

function isClass(value: unknown): value is new (...args: never[]) => object {
  return typeof value === 'function' && /^class\b/.test(Function.prototype.toString.call(value));
}

test('what is reachable at run time is what the API report lists', async (t) => {
  const dir = tempDir(t);
  const reported = reportedMembers();
  const documented = (type: string, kind: 'instance' | 'statics' = 'instance'): string[] => {
    const found = reported.get(type);
    assert.ok(found !== undefined, `the API report has ${type}`);
    return [...found[kind]].sort();
  };

  // Everything a server hands its handlers, for a whole and a streamed request.
  const handed: { context?: RequestContext; reply?: unknown } = {};
  const streamed: { request?: AsyncIterable<Buffer>; iterator?: AsyncIterator<Buffer> } = {};
  const path = join(dir, 's');
  const server = await startServer(path, async (_request, reply, context) => {
    handed.context = context;
    handed.reply = reply;
    await reply('ok');
  });
  t.after(() => server.destroy());
  const streamPath = join(dir, 'stream');
  const streamServer = await startServer(streamPath, {
    stream: async (request, reply) => {
      streamed.request = request;
      streamed.iterator = request[Symbol.asyncIterator]();
      while (!(await streamed.iterator.next()).done);
      await reply('ok');
    },
  });
  t.after(() => streamServer.destroy());
  // The context objects the tracing channels hand their subscribers, one of each side.
  const traced: { client?: object; server?: object } = {};
  const ignore = (): void => {};
  const only = (start: (c: object) => void) => ({
    start,
    end: ignore,
    asyncStart: ignore,
    asyncEnd: ignore,
    error: ignore,
  });
  const onClient = only((c) => (traced.client = c));
  const onServer = only((c) => (traced.server = c));
  diagnosticsChannel.tracingChannel(api.DiagnosticsChannel.CLIENT_REQUEST).subscribe(onClient);
  diagnosticsChannel.tracingChannel(api.DiagnosticsChannel.SERVER_REQUEST).subscribe(onServer);
  try {
    await sendCommand(path, 'a');
  } finally {
    diagnosticsChannel.tracingChannel(api.DiagnosticsChannel.CLIENT_REQUEST).unsubscribe(onClient);
    diagnosticsChannel.tracingChannel(api.DiagnosticsChannel.SERVER_REQUEST).unsubscribe(onServer);
  }
  await sendCommand(streamPath, 'b');

  const connection = await connect(path);
  t.after(() => connection.destroy());
  const response = connection.stream('c');
  const responseIterator = response[Symbol.asyncIterator]();
  while (!(await responseIterator.next()).done);

  const workers = workerHandler(new URL('./fixtures/never-loaded.js', import.meta.url));
  t.after(() => workers.destroy());
  const idle = stopWhenIdle(server, 60_000);
  t.after(() => idle.cancel());
  const signals = stopOnSignals(server, { signals: ['SIGHUP'] });
  t.after(() => signals.cancel());
  // A daemon whose server already listens: its process just exits.
  const daemon = await startDaemon(path, { command: process.execPath, args: ['-e', ''] });
  const error = await sendCommand(join(dir, 'none'), 'x').catch((err: unknown) => err as object);

  const decoder = new PktLineDecoder();
  const instances: [string, object, string[]][] = [
    ['Server', server, documented('Server')],
    ['Connection', connection, documented('Connection')],
    ['SimpleIpcError', error, documented('SimpleIpcError')],
    ['MessageDecoder', new MessageDecoder(), documented('MessageDecoder')],
    ['PacketBuilder', new PacketBuilder(), documented('PacketBuilder')],
    ['PktLineDecoder', decoder, documented('PktLineDecoder')],
  ];
  const objects: [string, object, string[]][] = [
    ...instances,
    ['a handler context', handed.context!, documented('RequestContext')],
    ['reply', handed.reply as object, []],
    ['a streaming handler request', streamed.request!, ['[Symbol.asyncIterator]']],
    ['the request iterator', streamed.iterator!, ['next', 'return']],
    ['Connection.stream()', response, ['[Symbol.asyncIterator]']],
    ['the response iterator', responseIterator, ['next', 'return']],
    ['workerHandler()', workers, documented('WorkerHandler')],
    ['stopWhenIdle()', idle, documented('ServerPolicy')],
    ['stopOnSignals()', signals, documented('ServerPolicy')],
    ['startDaemon()', daemon, documented('StartedDaemon')],
    ['server.stats()', server.stats(), documented('ServerStats')],
    ['a client request trace', traced.client!, documented('ClientRequestContext')],
    ['a server request trace', traced.server!, documented('ServerRequestContext')],
  ];
  // All at once, so that a failure shows every difference.
  const actual: Record<string, string[]> = {};
  const expected: Record<string, string[]> = {};
  for (const [what, value, members] of objects) {
    actual[what] = reachable(value);
    expected[what] = members;
  }
  // Every exported class: its statics, and an instance above.
  for (const [name, value] of Object.entries(api)) {
    if (!isClass(value)) continue;
    actual[`${name} (statics)`] = reachable(value);
    expected[`${name} (statics)`] = documented(name, 'statics');
    assert.ok(
      instances.some(([, instance]) => instance instanceof value),
      `an instance of ${name} is looked at`,
    );
  }
  // Only the differences, so that a failure names each member reachable but not reported
  // (`+`), or reported but not there (`-`).
  const differences: Record<string, string[]> = {};
  for (const [what, members] of Object.entries(actual)) {
    const want = expected[what]!;
    const diff = [
      ...members.filter((m) => !want.includes(m)).map((m) => `+${m}`),
      ...want.filter((m) => !members.includes(m)).map((m) => `-${m}`),
    ];
    if (diff.length > 0) differences[what] = diff;
  }
  assert.deepEqual(differences, {}, `members not as reported: ${JSON.stringify(differences)}`);
});

/** The report's text, with Unix line ends. */
function report(): string {
  return readFileSync(join(ROOT, 'etc', 'simple-ipc.api.md'), 'utf8').replace(/\r\n/g, '\n');
}

/** The variants of a union of object types the report gives, each as its sorted member names. */
function reportedVariants(type: string): string[][] {
  const body = new RegExp(`^export type ${type} = (\\{[\\s\\S]*?\\});$`, 'm').exec(report());
  assert.ok(body !== null, `the API report has type ${type}`);
  return body[1]!
    .split(/\} \| \{/)
    .map((variant) => [...variant.matchAll(/readonly (\w+)\??:/g)].map((m) => m[1]!).sort());
}

test('the plain objects the library hands out have the members of one variant of their type', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's');
  const server = await startServer(path, (_request, reply) => reply('ok'));
  t.after(() => server.destroy());
  const listening = await tryConnect(path);
  t.after(() => (listening.state === 'listening' ? listening.connection.destroy() : undefined));
  const missing = await tryConnect(join(dir, 'none'));
  await server.stop();
  const objects: [string, string, object][] = [
    ['tryConnect() to a server', 'ConnectResult', listening],
    ['tryConnect() to nothing', 'ConnectResult', missing],
    ['server.stopReason', 'StopReason', server.stopReason!],
  ];
  for (const [what, type, value] of objects) {
    const members = reachable(value);
    assert.ok(
      reportedVariants(type).some((variant) => variant.join() === members.join()),
      `${what}: ${members.join(', ')} is no variant of ${type}`,
    );
  }
  assert.equal(listening.state, 'listening');
  assert.equal(missing.state, 'path-not-found');
});

test('the exported constant objects are frozen and hold exactly what the report lists', () => {
  const constants = [...report().matchAll(/^export const (\w+): \{\n([\s\S]*?)^\};$/gm)].map(
    ([, name, body]) => [
      name!,
      Object.fromEntries(
        [...body!.matchAll(/^ {4}readonly (\w+): "([^"]*)";$/gm)].map((m) => [m[1]!, m[2]!]),
      ),
    ],
  );
  assert.deepEqual(
    constants.map(([name]) => name).sort(),
    ['ActiveState', 'DiagnosticsChannel', 'ErrorCode'],
    'the report lists these constant objects',
  );
  for (const [name, members] of constants) {
    const value = (api as Record<string, unknown>)[name as string];
    assert.ok(Object.isFrozen(value), `${name as string} is frozen`);
    assert.deepEqual({ ...(value as object) }, members, name as string);
  }
});

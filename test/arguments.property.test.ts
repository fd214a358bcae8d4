/**
 * Property test of the argument checks: fast-check throws arbitrary values (NaN, Infinity,
 * negative and fractional numbers, strings, objects, functions, symbols, ...) at every option of
 * every public function, and checks against a model of the rules written here, apart from the
 * library's:
 * - a value the model calls bad fails with `ERR_IPC_INVALID_ARGUMENT`, naming a bad option;
 * - with only good values the function does its job (a server answers, a client gets its
 *   answer, a policy installs and cancels), or fails with the coded error the situation calls for;
 * - never a hang (each call has a deadline), never an uncaught exception or unhandled rejection.
 *
 * Each property runs for a bounded time (SIMPLE_IPC_ARGS_MS per property, default 700 ms: a few
 * seconds in all) and reports how many runs it made. For a longer hunt:
 * `SIMPLE_IPC_ARGS_MS=60000 node --test dist/test/arguments.property.test.js`; to replay a
 * failure, set `SIMPLE_IPC_ARGS_SEED` to the seed fast-check printed.
 */

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { after, before, type TestContext } from 'node:test';
import fc from 'fast-check';
import {
  CONNECT_TIMEOUT_MS,
  connect,
  connectOrStart,
  encodeMessage,
  encodePacket,
  getActiveState,
  MessageDecoder,
  PacketBuilder,
  PktLineDecoder,
  parsePacketLength,
  type Server,
  SimpleIpcError,
  sendCommand,
  startClusteredServer,
  startDaemon,
  startServer,
  stopOnSignals,
  stopWhenIdle,
  tryConnect,
  USES_NAMED_PIPES,
  workerHandler,
  writePacketLength,
} from '../src/index.js';
import { rawExchange, tempDir, test, until, warnings } from './helpers.js';

const TIME_MS = Number.parseInt(process.env.SIMPLE_IPC_ARGS_MS ?? '', 10) || 700;
const SEED = Number.parseInt(process.env.SIMPLE_IPC_ARGS_SEED ?? '', 10);
// However loaded the machine, each property makes at least this many runs.
const MIN_RUNS = 10;
// A call that takes longer than this hangs (the generated waits are far shorter).
const DEADLINE_MS = 5000;

// Anything thrown or rejected outside a call's own Promise is a defect.
const escaped: unknown[] = [];
const onEscape = (err: unknown): void => void escaped.push(err);
before(() => {
  process.on('uncaughtException', onEscape);
  process.on('unhandledRejection', onEscape);
});
after(() => {
  process.off('uncaughtException', onEscape);
  process.off('unhandledRejection', onEscape);
  assert.deepEqual(escaped, [], 'nothing escaped as an uncaught exception');
});

// ---------------------------------------------------------------------------------------------
// The model: what each kind of option accepts, in the plainest terms.

type Rule = (value: unknown) => boolean;
const MAX_MS = 2 ** 31 - 1;
const count =
  (min: number, max = 2 ** 32 - 1): Rule =>
  (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const ms: Rule = (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_MS;
const positiveMs: Rule = (v) => ms(v) && (v as number) > 0;
const size: Rule = (v) =>
  typeof v === 'number' && ((Number.isSafeInteger(v) && v >= 0) || v === Infinity);
const flag: Rule = (v) => typeof v === 'boolean';
const fn: Rule = (v) => typeof v === 'function';
const signal: Rule = (v) => v instanceof AbortSignal;
const text: Rule = (v) => typeof v === 'string' && v !== '';
const optional =
  (rule: Rule): Rule =>
  (v) =>
    v === undefined || rule(v);

// ---------------------------------------------------------------------------------------------
// The generators: mostly good values (so that whole calls succeed often), some arbitrary ones.

const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.anything({ withBigInt: true, withNullPrototype: true, withBoxedValues: true }),
  fc.constantFrom(NaN, Infinity, -Infinity, -0, -1, 0.5, 2 ** 31, 2 ** 32, 2 ** 53 + 2, ''),
  fc.constantFrom('1', 'true', null, true, false, [], {}, Symbol('x'), () => 1),
  fc.double(),
  fc.integer(),
);

function maybe<T>(good: fc.Arbitrary<T>): fc.Arbitrary<unknown> {
  return fc.oneof(
    { arbitrary: good, weight: 8 },
    { arbitrary: fc.constant(undefined), weight: 4 },
    { arbitrary: junk, weight: 1 },
  );
}

const goodSignal = fc.constantFrom('live', 'aborted').map((kind) => {
  const controller = new AbortController();
  if (kind === 'aborted') controller.abort(new Error('generated'));
  return controller.signal;
});
const shortMs = fc.oneof(
  fc.integer({ min: 0, max: 100 }),
  fc.double({ min: 0, max: 100, noNaN: true }),
);
const callback = fc.func(fc.anything());

/**
 * Options whose keys have these generators: as often as not, good values but for one key that
 * gets an arbitrary one; sometimes not an object at all.
 */
function optionsOf(
  shape: Record<string, fc.Arbitrary<unknown>>,
): fc.Arbitrary<Record<string, unknown> | undefined> {
  const good = Object.fromEntries(
    Object.entries(shape).map(([k, a]) => [
      k,
      fc.oneof({ arbitrary: a, weight: 2 }, fc.constant(undefined)),
    ]),
  );
  const mixed = fc.record(
    Object.fromEntries(Object.entries(shape).map(([k, a]) => [k, maybe(a)])),
    { requiredKeys: [] },
  );
  const oneBad = fc
    .constantFrom(...Object.keys(shape))
    .chain((key) => fc.record({ ...good, [key]: junk }, { requiredKeys: [key] }));
  return fc.oneof(
    { arbitrary: mixed, weight: 6 },
    { arbitrary: oneBad, weight: 6 },
    { arbitrary: fc.constant(undefined), weight: 1 },
    { arbitrary: junk as fc.Arbitrary<Record<string, unknown>>, weight: 1 },
  );
}

/** The options (by name) that break `rules`; `options` itself when it is not an object. */
function badOptions(options: unknown, rules: Record<string, Rule>): string[] {
  if (options === undefined) return [];
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    return ['options'];
  }
  const o = options as Record<string, unknown>;
  return Object.keys(rules)
    .filter((key) => !rules[key]!(o[key]))
    .map((key) => `options.${key}`);
}

// ---------------------------------------------------------------------------------------------
// Running a call.

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

async function outcomeOf(run: () => unknown, what: string): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} hung (${DEADLINE_MS} ms)`)), DEADLINE_MS);
  });
  try {
    const value = await Promise.race([Promise.resolve().then(run), deadline]);
    return { ok: true, value };
  } catch (error) {
    if (error instanceof Error && error.message.endsWith(`hung (${DEADLINE_MS} ms)`)) throw error;
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Checks the rule every call obeys: bad arguments, and only they, give ERR_IPC_INVALID_ARGUMENT
 * naming one of them. Returns the outcome for the caller's own checks when all were good.
 */
function judge(outcome: Outcome, bad: readonly string[], what: string): Outcome | undefined {
  if (bad.length > 0) {
    assert.equal(outcome.ok, false, `${what}: accepted bad ${bad.join(', ')}`);
    const err = (outcome as { error: unknown }).error;
    assert.ok(err instanceof SimpleIpcError, `${what}: threw ${String(err)}`);
    assert.equal(err.code, 'ERR_IPC_INVALID_ARGUMENT', `${what}: ${err.message}`);
    assert.ok(
      bad.some(
        (name) => err.message.startsWith(`${name} must be `) || err.message.startsWith(`${name}.`),
      ),
      `${what}: '${err.message}' names none of ${bad.join(', ')}`,
    );
    return undefined;
  }
  if (!outcome.ok) {
    const err = outcome.error;
    assert.ok(err instanceof SimpleIpcError, `${what}: threw ${String(err)}`);
    assert.notEqual(
      err.code,
      'ERR_IPC_INVALID_ARGUMENT',
      `${what}: refused good arguments: ${err.message}`,
    );
  }
  return outcome;
}

function fail<T>(details: fc.RunDetails<T>): never {
  const cause = details.errorInstance;
  assert.fail(
    `${fc.defaultReportMessage(details) ?? 'failed'}\n${cause instanceof Error ? cause.message : String(cause)}`,
  );
}

/** Runs `property` MIN_RUNS times, then for the time budget, and says how many runs it made. */
async function hold<T>(
  t: TestContext,
  arbitrary: fc.Arbitrary<T>,
  property: (value: T) => Promise<void>,
): Promise<void> {
  const seed = Number.isSafeInteger(SEED) ? { seed: SEED } : {};
  const started = performance.now();
  const first = await fc.check(fc.asyncProperty(arbitrary, property), {
    numRuns: MIN_RUNS,
    ...seed,
  });
  if (first.failed) fail(first);
  // More runs while time is left (fast-check counts a run interrupted before any test as a
  // failure, so none is started on a budget already spent).
  const left = TIME_MS - (performance.now() - started);
  const more =
    left < 50
      ? { numRuns: 0, seed: 'none' }
      : await fc.check(fc.asyncProperty(arbitrary, property), {
          numRuns: 1_000_000,
          interruptAfterTimeLimit: left,
          markInterruptAsFailure: false,
          ...seed,
        });
  // A budget that ran out before the first extra run ended is no failure (fast-check reports it
  // as one after 0 tests on a loaded machine); a counterexample is never an interruption.
  if ('failed' in more && more.failed && !more.interrupted) fail(more);
  const elapsed = Math.round(performance.now() - started);
  t.diagnostic(
    `${first.numRuns + more.numRuns} runs in ${elapsed} ms (seeds ${first.seed}, ${more.seed})`,
  );
}

// ---------------------------------------------------------------------------------------------

const SERVER_SHAPE = {
  threads: fc.integer({ min: 1, max: 64 }),
  queueSize: fc.integer({ min: 1, max: 1000 }),
  backlog: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  maxRequestSize: fc.oneof(fc.integer({ min: 0, max: 1 << 20 }), fc.constant(Infinity)),
  streamThreshold: fc.integer({ min: 0, max: 1 << 20 }),
  requestTimeout: fc.integer({ min: 0, max: MAX_MS }),
  responseTimeout: fc.integer({ min: 0, max: MAX_MS }),
  stopTimeout: fc.integer({ min: 0, max: MAX_MS }),
  mode: fc.constantFrom(0o600, 0o660, 0o666, 0o700, 0o777),
  disallowChdir: fc.boolean(),
  lockTimeout: shortMs,
  signal: goodSignal,
  onHandlerError: callback,
  debug: callback,
};
const SERVER_RULES: Record<string, Rule> = {
  threads: optional(count(1)),
  queueSize: optional(count(1, Number.MAX_SAFE_INTEGER)),
  backlog: optional(count(0, 2 ** 31 - 1)),
  maxRequestSize: optional(size),
  streamThreshold: optional(count(0, Number.MAX_SAFE_INTEGER)),
  requestTimeout: optional(ms),
  responseTimeout: optional(ms),
  stopTimeout: optional(ms),
  mode: optional(count(0, 0o777)),
  disallowChdir: optional(flag),
  lockTimeout: optional(ms),
  signal: optional(signal),
  onHandlerError: optional(fn),
  debug: optional(fn),
};

function pathMaker(t: TestContext): () => string {
  const dir = tempDir(t);
  let n = 0;
  return () => join(dir, `s${n++}`);
}

test('startServer: any options give a clear error or a server that answers', async (t) => {
  const nextPath = pathMaker(t);
  const handler = async (
    _request: Buffer,
    reply: (chunk: string) => Promise<void>,
  ): Promise<void> => {
    await reply('pong');
  };
  await hold(
    t,
    fc.tuple(optionsOf(SERVER_SHAPE), fc.oneof(fc.constant('stream'), fc.constant('whole'))),
    async ([options, kind]) => {
      const path = nextPath();
      const outcome = await outcomeOf(
        () =>
          startServer(
            path,
            kind === 'stream' ? { stream: (_r, reply) => reply('pong') } : handler,
            options,
          ),
        'startServer',
      );
      const result = judge(outcome, badOptions(options, SERVER_RULES), 'startServer');
      if (result === undefined) return;
      assert.ok(result.ok, `startServer failed: ${String((result as { error: unknown }).error)}`);
      const server = result.value as Server;
      try {
        const o = options ?? {};
        const aborted = (o.signal as AbortSignal | undefined)?.aborted === true;
        const fits =
          o.maxRequestSize === undefined || (o.maxRequestSize as number) >= 4 || kind === 'stream';
        if (!aborted && fits) {
          const answer = await outcomeOf(
            () => sendCommand(path, 'ping', { timeout: DEADLINE_MS - 1000 }),
            'the exchange',
          );
          assert.ok(answer.ok, `no answer: ${String((answer as { error: unknown }).error)}`);
          assert.equal(String(answer.value), 'pong');
        }
      } finally {
        await server.destroy();
      }
    },
  );
});

const CONNECT_SHAPE = {
  waitIfBusy: fc.boolean(),
  waitIfNotFound: fc.boolean(),
  disallowChdir: fc.boolean(),
  timeout: shortMs,
  retryInterval: shortMs,
  signal: goodSignal,
};
const CONNECT_RULES: Record<string, Rule> = {
  waitIfBusy: optional(flag),
  waitIfNotFound: optional(flag),
  disallowChdir: optional(flag),
  timeout: optional(ms),
  retryInterval: optional(ms),
  signal: optional(signal),
};
const SEND_SHAPE = {
  maxResponseSize: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.constant(Infinity)),
  timeout: shortMs.map((v) => v * 20),
  signal: goodSignal,
};
const SEND_RULES: Record<string, Rule> = {
  maxResponseSize: optional(size),
  timeout: optional(ms),
  signal: optional(signal),
};

/** The longest good timeout the client shapes generate (SEND_SHAPE's, which wins). */
const LONGEST_GENERATED_WAIT_MS = 2000;

/**
 * Whether `options` holds a `timeout` that is a number over `ms`, or, for a call that waits for
 * a missing path, none while the default is over `ms` (30 s with named pipes, as in Git).
 */
function waitsLongerThan(options: unknown, ms: number, missing: boolean): boolean {
  if (typeof options !== 'object' || options === null) return false;
  const { timeout, waitIfNotFound } = options as { timeout?: unknown; waitIfNotFound?: unknown };
  if (timeout === undefined) return missing && waitIfNotFound === true && CONNECT_TIMEOUT_MS > ms;
  return typeof timeout === 'number' && timeout > ms;
}

test('the client functions: any options give a clear error or the right answer, never a hang', async (t) => {
  const nextPath = pathMaker(t);
  const live = nextPath();
  const server = await startServer(live, (_request, reply) => reply('pong'));
  t.after(() => server.destroy());
  const missing = nextPath();
  const calls = ['tryConnect', 'connect', 'sendCommand', 'getActiveState'] as const;
  await hold(
    t,
    fc.tuple(
      fc.constantFrom(...calls),
      fc.boolean(),
      optionsOf({ ...CONNECT_SHAPE, ...SEND_SHAPE }),
    ),
    async ([call, toLive, options]) => {
      const path = toLive ? live : missing;
      const rules: Record<string, Rule> =
        call === 'sendCommand'
          ? { ...CONNECT_RULES, ...SEND_RULES, timeout: optional(ms) }
          : call === 'getActiveState'
            ? { signal: optional(signal) }
            : CONNECT_RULES;
      const run = {
        tryConnect: () => tryConnect(path, options),
        connect: () => connect(path, options),
        sendCommand: () => sendCommand(path, 'ping', options),
        getActiveState: () => getActiveState(path, options),
      }[call];
      const bad = badOptions(options, rules);
      // Junk may be a good but long timeout (fc.integer() reaches 2^31 - 1 ms): a call that
      // waits that long for a missing path is slow, not hung, and would outlast the deadline.
      // So may the default with named pipes (30 s). Such waits are client.test.ts's; here every
      // good wait is a generated one, of 2 s at most.
      fc.pre(bad.length > 0 || !waitsLongerThan(options, LONGEST_GENERATED_WAIT_MS, !toLive));
      const result = judge(await outcomeOf(run, call), bad, call);
      if (result === undefined) return;
      const o = options ?? {};
      const aborted = (o.signal as AbortSignal | undefined)?.aborted === true;
      if (!result.ok) {
        const code = (result.error as SimpleIpcError).code;
        const expected = aborted
          ? ['ABORT_ERR']
          : toLive
            ? ['ERR_IPC_TOO_LARGE', 'ERR_IPC_TIMEOUT']
            : ['ERR_IPC_PATH_NOT_FOUND', 'ERR_IPC_NOT_LISTENING'];
        assert.ok(
          expected.includes(code),
          `${call} to ${toLive ? 'a live server' : 'nothing'}: ${code}`,
        );
        return;
      }
      const value = result.value;
      if (call === 'sendCommand') assert.equal(String(value), 'pong');
      else if (call === 'getActiveState')
        // Nothing at the path: a Unix socket path is not-listening, a pipe name path-not-found
        // (Git's rules for each).
        assert.equal(
          value,
          toLive ? 'listening' : USES_NAMED_PIPES ? 'path-not-found' : 'not-listening',
        );
      else {
        const connection =
          call === 'connect' ? value : (value as { connection?: { destroy(): void } }).connection;
        assert.equal(
          connection !== undefined,
          toLive,
          `${call}: ${String((value as { state?: string }).state)}`,
        );
        (connection as { destroy(): void } | undefined)?.destroy();
      }
    },
  );
});

test('Connection.send and stream: any request and options give a clear error or the answer', async (t) => {
  const path = pathMaker(t)();
  const server = await startServer(path, (_request, reply) => reply('pong'));
  t.after(() => server.destroy());
  const request = fc.oneof(
    { arbitrary: fc.string(), weight: 4 },
    { arbitrary: fc.uint8Array(), weight: 2 },
    { arbitrary: fc.array(fc.string()), weight: 1 },
    { arbitrary: junk, weight: 1 },
  );
  const isChunk = (v: unknown): boolean => typeof v === 'string' || v instanceof Uint8Array;
  const isIterable = (v: unknown): v is Iterable<unknown> =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Iterable<unknown>)[Symbol.iterator] === 'function';
  // What is wrong with a request: itself, one of its chunks (found as it is sent), or nothing.
  const badRequest = (v: unknown): string[] =>
    isChunk(v) ? [] : !isIterable(v) ? ['request'] : [...v].every(isChunk) ? [] : ['chunk'];
  await hold(
    t,
    fc.tuple(fc.boolean(), request, optionsOf(SEND_SHAPE)),
    async ([streamed, message, options]) => {
      const connection = await connect(path);
      try {
        const run = streamed
          ? async () => {
              const pieces: Buffer[] = [];
              for await (const piece of connection.stream(message as string, options))
                pieces.push(piece);
              return Buffer.concat(pieces);
            }
          : () => connection.send(message as string, options);
        // An aborted signal fails the exchange before a bad chunk is reached.
        const aborted = (options?.signal as AbortSignal | undefined)?.aborted === true;
        const chunks = badRequest(message);
        const bad = [
          ...(aborted && chunks[0] === 'chunk' ? [] : chunks),
          ...badOptions(options, SEND_RULES),
        ];
        const result = judge(await outcomeOf(run, streamed ? 'stream' : 'send'), bad, 'send');
        if (result === undefined || !result.ok) {
          if (result !== undefined && !result.ok) {
            const code = (result.error as SimpleIpcError).code;
            // An iterable of non-strings fails as it is read; the others as the situation says.
            assert.ok(
              [
                'ERR_IPC_TOO_LARGE',
                'ERR_IPC_TIMEOUT',
                'ABORT_ERR',
                'ERR_IPC_CONNECTION_CLOSED',
                'ERR_IPC_TRUNCATED',
              ].includes(code),
              code,
            );
          }
          return;
        }
        assert.equal(String(result.value), 'pong');
      } finally {
        connection.destroy();
      }
    },
  );
});

// The generated signal names that can be caught here: Windows names no SIGUSR2.
const CATCHABLE = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR2'].filter((name) =>
  Object.hasOwn(osConstants.signals, name),
);

test('policies: any timeout and options give a clear error or a policy that cancels', async (t) => {
  const server = await startServer(pathMaker(t)(), () => {});
  t.after(() => server.destroy());
  const signalNames = fc.subarray([
    'SIGINT',
    'SIGTERM',
    'SIGHUP',
    'SIGUSR2',
    'SIGKILL',
    'SIGSTOP',
    'NOPE',
  ]);
  await hold(
    t,
    fc.tuple(
      fc.boolean(),
      maybe(fc.integer({ min: 1, max: MAX_MS })),
      optionsOf({ checkInterval: fc.integer({ min: 1, max: MAX_MS }), onIdle: callback }),
      optionsOf({
        signals: signalNames,
        forceAfter: fc.integer({ min: 0, max: MAX_MS }),
        onSignal: callback,
      }),
    ),
    async ([idle, timeout, idleOptions, signalOptions]) => {
      const listeners = process.listenerCount('SIGHUP');
      const outcome = await outcomeOf(
        () =>
          idle
            ? stopWhenIdle(server, timeout as number, idleOptions)
            : stopOnSignals(server, signalOptions),
        idle ? 'stopWhenIdle' : 'stopOnSignals',
      );
      const bad = idle
        ? [
            ...(positiveMs(timeout) ? [] : ['timeout']),
            ...badOptions(idleOptions, {
              checkInterval: optional(positiveMs),
              onIdle: optional(fn),
            }),
          ]
        : badOptions(signalOptions, {
            signals: optional(
              (v) => Array.isArray(v) && v.every((s) => CATCHABLE.includes(s as string)),
            ),
            forceAfter: optional(ms),
            onSignal: optional(fn),
          });
      const result = judge(outcome, bad, idle ? 'stopWhenIdle' : 'stopOnSignals');
      if (result !== undefined) {
        assert.ok(result.ok);
        (result.value as { cancel(): void }).cancel();
      }
      assert.equal(process.listenerCount('SIGHUP'), listeners, 'no listener left behind');
      assert.equal(server.stopping, false);
    },
  );
});

// ---------------------------------------------------------------------------------------------
// Hostile callbacks: every callback option may throw (anything), reject, return a thenable
// whose `then` throws, return any value, or never settle. None of that may change what a client
// gets or whether a server stops; each failure (not an odd value) is reported once, as a
// process warning ERR_IPC_CALLBACK_FAILED naming the option, with what it threw as the cause.

const BEHAVIOURS = {
  throws: (v: unknown) => () => {
    throw v;
  },
  rejects: (v: unknown) => () => Promise.reject(v),
  'async throws': (v: unknown) => async () => {
    await Promise.resolve();
    throw v;
  },
  'then throws': (v: unknown) => () => ({
    then() {
      throw v;
    },
  }),
  returns: (v: unknown) => () => v,
  'never settles': () => () => new Promise(() => {}),
  'then never calls back': () => () => ({ then() {} }),
} as const;
type Behaviour = keyof typeof BEHAVIOURS;
const FAILING: readonly Behaviour[] = ['throws', 'rejects', 'async throws', 'then throws'];

const behaviour = fc.tuple(
  fc.constantFrom(...(Object.keys(BEHAVIOURS) as Behaviour[])),
  fc.oneof(fc.anything(), fc.constant(new Error('callback broke'))),
);

/** A fresh callback doing `how` with `value`, counting its calls. */
function hostile(option: string, [how, value]: [Behaviour, unknown]) {
  const body = BEHAVIOURS[how](value);
  const made = {
    option,
    how,
    value,
    calls: 0,
    fn: (..._args: unknown[]): unknown => {
      made.calls++;
      return body();
    },
  };
  return made;
}

const MARK = 'SIMPLE_IPC_TEST_MARK';

/**
 * Collects the ERR_IPC_CALLBACK_FAILED warnings of a test, without Node printing them (one a
 * run would flood the output); `settled()` resolves with those seen so far once every warning
 * already emitted has arrived (they come on a later tick: a mark emitted now comes after them).
 */
function callbackWarnings(t: TestContext): { settled(): Promise<(Error & { code?: string })[]> } {
  const printers = process.listeners('warning');
  process.removeAllListeners('warning');
  t.after(() => {
    for (const printer of printers) process.on('warning', printer);
  });
  const seen = warnings(t, 'ERR_IPC_CALLBACK_FAILED', MARK);
  return {
    async settled() {
      const marks = seen.filter((w) => w.code === MARK).length;
      process.emitWarning('mark', { code: MARK });
      await until('the mark warning', () => seen.filter((w) => w.code === MARK).length > marks);
      return seen.splice(0).filter((w) => w.code !== MARK);
    },
  };
}

/** Asserts that `reported` holds one warning for each of `callbacks` that failed, and no more. */
function assertReportedOnce(
  reported: (Error & { code?: string })[],
  callbacks: readonly ReturnType<typeof hostile>[],
): void {
  const failed = callbacks.filter((c) => c.calls > 0 && FAILING.includes(c.how));
  // Only the options under test: a server of an earlier test or run may still report a callback
  // of its own while it closes (seen under Wine: options.debug in the onIdle test, which has none).
  const options = new Set(callbacks.map((c) => c.option));
  reported = reported.filter((w) =>
    options.has(/^(options\.\w+) failed/.exec(w.message)?.[1] ?? ''),
  );
  assert.deepEqual(
    reported.map((w) => /^(options\.\w+) failed/.exec(w.message)?.[1]).sort(),
    failed.map((c) => c.option).sort(),
    `warnings: ${reported.map((w) => w.message).join(' | ')}`,
  );
  for (const c of failed) {
    const warning = reported.find((w) => w.message.startsWith(`${c.option} failed`))!;
    assert.ok(Object.is(warning.cause, c.value), `${c.option}: the cause is what it threw`);
  }
}

test('hostile onHandlerError and debug: clients get what they would, each failure is reported once', async (t) => {
  const nextPath = pathMaker(t);
  const reports = callbackWarnings(t);
  await hold(t, fc.tuple(behaviour, behaviour), async ([onError, onDebug]) => {
    const path = nextPath();
    const onHandlerError = hostile('options.onHandlerError', onError);
    const debug = hostile('options.debug', onDebug);
    const server = await startServer(
      path,
      (request, reply) => {
        if (request.toString() === 'fail') throw new Error('handler broke');
        return reply('pong');
      },
      { onHandlerError: onHandlerError.fn, debug: debug.fn },
    );
    try {
      for (let i = 0; i < 2; i++) {
        await assert.rejects(sendCommand(path, 'fail', { timeout: DEADLINE_MS }), {
          code: 'ERR_IPC_TRUNCATED',
        });
        // Not a pkt-line: closed unanswered, and debug hears of it.
        const bad = await rawExchange(path, Buffer.from('zzzz'));
        assert.equal(bad.response.length, 0);
      }
      assert.equal(String(await sendCommand(path, 'ping', { timeout: DEADLINE_MS })), 'pong');
      await until('both callbacks called for each failure', () => debug.calls >= 2);
      assert.equal(onHandlerError.calls, 2);
      const stats = server.stats();
      assert.equal(stats.handlerErrors, 2);
      assert.equal(stats.badRequests, 2);
      assertReportedOnce(await reports.settled(), [onHandlerError, debug]);
    } finally {
      await server.destroy();
    }
  });
});

test('hostile onIdle and onSignal: the server still stops, each failure is reported once', async (t) => {
  const nextPath = pathMaker(t);
  const reports = callbackWarnings(t);
  await hold(t, fc.tuple(fc.boolean(), behaviour), async ([idle, how]) => {
    const server = await startServer(nextPath(), (_request, reply) => reply('pong'));
    const callback = hostile(idle ? 'options.onIdle' : 'options.onSignal', how);
    try {
      if (idle) stopWhenIdle(server, 10, { checkInterval: 5, onIdle: callback.fn });
      else {
        stopOnSignals(server, { signals: ['SIGHUP'], onSignal: callback.fn });
        // Twice: the second forces the stop, and a second failure is not reported again.
        process.emit('SIGHUP', 'SIGHUP');
        process.emit('SIGHUP', 'SIGHUP');
      }
      const closed = await outcomeOf(() => server.closed, 'server.closed');
      assert.ok(closed.ok, 'the server stopped');
      assert.deepEqual(server.stopReason, { kind: idle ? 'idle' : 'requested' });
      assert.equal(callback.calls, idle ? 1 : 2);
      assert.equal(process.listenerCount('SIGHUP'), 0, 'no listener left behind');
      assertReportedOnce(await reports.settled(), [callback]);
    } finally {
      await server.destroy();
    }
  });
});

test('startClusteredServer and workerHandler: any options give a clear error or something that works', async (t) => {
  const nextPath = pathMaker(t);
  const module = join(tempDir(t), 'handler.mjs');
  writeFileSync(module, 'export default (request, reply) => reply("pong");\n');
  const limits = fc.record(
    {
      maxOldGenerationSizeMb: maybe(fc.integer({ min: 16, max: 256 })),
      stackSizeMb: maybe(fc.integer({ min: 1, max: 8 })),
    },
    { requiredKeys: [] },
  );
  await hold(
    t,
    fc.tuple(
      fc.boolean(),
      optionsOf({ ...SERVER_SHAPE, signal: fc.constant(undefined) }),
      // More than one process would fork for every run: 1 is the good value here.
      fc.oneof(fc.constant(1), fc.constant(undefined), junk, fc.integer({ min: 1025 })),
      optionsOf({ workers: fc.integer({ min: 1, max: 1024 }), resourceLimits: limits }),
    ),
    async ([clustered, serverOptions, processes, workerOptions]) => {
      if (clustered) {
        const options =
          typeof serverOptions === 'object' &&
          serverOptions !== null &&
          !Array.isArray(serverOptions)
            ? { ...serverOptions, processes }
            : serverOptions;
        // A named pipe is served by one process only (src/cluster.ts).
        const most = USES_NAMED_PIPES ? 1 : 1024;
        const bad = badOptions(options, { ...SERVER_RULES, processes: optional(count(1, most)) });
        const path = nextPath();
        const result = judge(
          await outcomeOf(
            () => startClusteredServer(path, module, options as object),
            'startClusteredServer',
          ),
          bad,
          'startClusteredServer',
        );
        if (result === undefined) return;
        assert.ok(result.ok, String((result as { error: unknown }).error));
        await (result.value as Server).destroy();
      } else {
        const LIMITS = [
          'maxYoungGenerationSizeMb',
          'maxOldGenerationSizeMb',
          'codeRangeSizeMb',
          'stackSizeMb',
        ];
        const limitRule: Rule = (v) =>
          typeof v === 'object' &&
          v !== null &&
          !Array.isArray(v) &&
          LIMITS.every((key) => {
            const x = (v as Record<string, unknown>)[key];
            return x === undefined || (typeof x === 'number' && Number.isFinite(x) && x > 0);
          });
        const bad = badOptions(workerOptions, {
          workers: optional(count(1, 1024)),
          resourceLimits: optional(limitRule),
        });
        const result = judge(
          await outcomeOf(() => workerHandler(module, workerOptions), 'workerHandler'),
          bad,
          'workerHandler',
        );
        if (result === undefined) return;
        assert.ok(result.ok);
        await (result.value as { destroy(): Promise<void> }).destroy();
      }
    },
  );
});

test('startDaemon and connectOrStart: any options give a clear error, never a spawn of junk', async (t) => {
  const nextPath = pathMaker(t);
  const dir = tempDir(t);
  await hold(
    t,
    fc.tuple(
      fc.boolean(),
      optionsOf({
        // A program that does not exist: a good command here must fail to start, and nothing runs.
        command: fc.constant(join(dir, 'no-such-program')),
        args: fc.array(fc.string()),
        cwd: fc.constant(dir),
        env: fc.dictionary(
          fc.string().filter((k) => k !== '' && !k.includes('=') && !k.includes('\0')),
          fc.string().filter((v) => !v.includes('\0')),
        ),
        logFile: fc.constant(join(dir, 'log')),
        timeout: shortMs,
        pollInterval: shortMs,
        signal: goodSignal,
        disallowChdir: fc.boolean(),
      }),
    ),
    async ([orStart, generated]) => {
      // A good command is spawned, and a good log file opened (created): whatever string was
      // generated, run only a program that does not exist and log in the temp dir. Both stay
      // non-empty strings, so the rules judge them the same.
      let options = generated;
      if (typeof options?.command === 'string' && options.command !== '') {
        options = { ...options, command: join(dir, 'no-such-program') };
      }
      if (typeof options?.logFile === 'string' && options.logFile !== '') {
        options = { ...options, logFile: join(dir, 'log') };
      }
      const rules: Record<string, Rule> = {
        command: text,
        args: optional((v) => Array.isArray(v) && v.every((a) => typeof a === 'string')),
        cwd: optional(text),
        env: optional(
          (v) =>
            typeof v === 'object' &&
            v !== null &&
            !Array.isArray(v) &&
            Object.values(v).every((x) => x === undefined || typeof x === 'string'),
        ),
        logFile: optional(text),
        timeout: optional(ms),
        pollInterval: optional(ms),
        signal: optional(signal),
        ...(orStart ? { disallowChdir: optional(flag) } : {}),
      };
      const bad = options === undefined ? ['options.command'] : badOptions(options, rules);
      const path = nextPath();
      const what = orStart ? 'connectOrStart' : 'startDaemon';
      const result = judge(
        await outcomeOf(
          () => (orStart ? connectOrStart : startDaemon)(path, options as { command: string }),
          what,
        ),
        bad,
        what,
      );
      if (result === undefined) return;
      assert.equal(result.ok, false, `${what} started a program that does not exist`);
      const code = (result as { error: SimpleIpcError }).error.code;
      assert.ok(['ERR_IPC_DAEMON_FAILED', 'ABORT_ERR'].includes(code), code);
    },
  );
});

test('the codec: any arguments give a clear error or the right bytes, never a TypeError', async (t) => {
  const bytes = fc.oneof(
    { arbitrary: fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a)), weight: 4 },
    { arbitrary: junk, weight: 1 },
  );
  const index = fc.oneof(
    { arbitrary: fc.integer({ min: -2, max: 20 }), weight: 4 },
    { arbitrary: junk, weight: 1 },
  );
  const calls = fc.oneof(
    fc.tuple(fc.constant('encodePacket'), fc.oneof(fc.string(), bytes)),
    fc.tuple(fc.constant('encodeMessage'), fc.oneof(fc.string(), bytes)),
    fc.tuple(fc.constant('parsePacketLength'), bytes, index),
    fc.tuple(
      fc.constant('writePacketLength'),
      bytes,
      index,
      fc.oneof(fc.integer({ min: -1, max: 65521 }), junk),
    ),
    fc.tuple(fc.constant('PktLineDecoder.push'), bytes),
    fc.tuple(
      fc.constant('MessageDecoder.push'),
      bytes,
      fc.oneof(fc.constant({ onPiece() {} }), junk),
    ),
    fc.tuple(fc.constant('PacketBuilder.add'), bytes),
    fc.tuple(fc.constant('PacketBuilder.addString'), fc.oneof(fc.string(), junk)),
  );
  const CODES = [
    'ERR_IPC_INVALID_ARGUMENT',
    'ERR_PKT_LINE_LENGTH',
    'ERR_PKT_LINE_TOO_LONG',
    'ERR_PKT_LINE_UNEXPECTED',
  ];
  await hold(t, calls, async (call) => {
    const [name, a, b, c] = call as [string, unknown, unknown, unknown];
    const run = {
      encodePacket: () => encodePacket(a as string),
      encodeMessage: () => encodeMessage(a as string),
      parsePacketLength: () => parsePacketLength(a as Buffer, b as number),
      writePacketLength: () => writePacketLength(a as Buffer, b as number, c as number),
      'PktLineDecoder.push': () => new PktLineDecoder().push(a as Buffer),
      'MessageDecoder.push': () => new MessageDecoder().push(a as Buffer, b as { onPiece(): void }),
      'PacketBuilder.add': () => new PacketBuilder().add(a as Buffer),
      'PacketBuilder.addString': () => new PacketBuilder().addString(a as string),
    }[name]!;
    const outcome = await outcomeOf(run, name);
    if (!outcome.ok) {
      assert.ok(outcome.error instanceof SimpleIpcError, `${name} threw ${String(outcome.error)}`);
      assert.ok(CODES.includes(outcome.error.code), outcome.error.code);
      return;
    }
    if (name === 'encodePacket' || name === 'encodeMessage') {
      const payload = typeof a === 'string' ? Buffer.from(a) : (a as Buffer);
      const out = outcome.value as Buffer;
      assert.ok(out.includes(payload));
    }
  });
});

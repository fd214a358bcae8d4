/**
 * Shutdown policies for a {@link Server}: stop when idle, stop gracefully on a signal. Git leaves
 * shutdown to the application; these are the two every daemon writes, built on
 * the server's public `stats()`, `stop()` and `destroy()`.
 *
 * @module
 */

import { callObserver } from './guard.js';
import { Server, stopServerFor } from './server.js';
import {
  callback,
  duration,
  invalidArgument,
  optionsObject,
  positiveDuration,
} from './validate.js';

// Node built-ins: taken, not imported, the heavy ones where first used (trust.ts says why).
const os = (): typeof import('node:os') => process.getBuiltinModule('node:os');

// Signals a listener can never be installed for.
const UNCATCHABLE = new Set(['SIGKILL', 'SIGSTOP']);

function checkServer(server: unknown): Server {
  const s = server as Partial<Server> | null;
  if (
    typeof s !== 'object' ||
    s === null ||
    typeof s.stats !== 'function' ||
    typeof s.stop !== 'function' ||
    typeof s.destroy !== 'function' ||
    !(s.closed instanceof Promise)
  ) {
    throw invalidArgument('server', server, 'a Server (from startServer)');
  }
  return s as Server;
}

function checkSignals(value: unknown): readonly NodeJS.Signals[] | undefined {
  if (value === undefined) return undefined;
  if (
    !Array.isArray(value) ||
    !value.every(
      (name) =>
        typeof name === 'string' &&
        Object.hasOwn(os().constants.signals, name) &&
        !UNCATCHABLE.has(name),
    )
  ) {
    throw invalidArgument(
      'options.signals',
      value,
      'an array of signal names that can be caught (such as SIGINT)',
    );
  }
  return value as NodeJS.Signals[];
}

/** A policy attached to a server. It ends by itself when the server has closed. */
export interface ServerPolicy extends Disposable {
  /** Detaches the policy (timers cleared, signal listeners removed). Idempotent. */
  cancel(): void;
}

/** Options of {@link stopWhenIdle}. */
export interface IdleOptions {
  /**
   * How often the server's counters are looked at, in ms (above 0, to 2^31 - 1). Default: a
   * tenth of the timeout, at least 50 and at most 1000. The server stops at most this much
   * later than due.
   */
  checkInterval?: number | undefined;
  /**
   * Called once, just before the server is stopped for being idle, with the idle time in ms.
   * If it throws or rejects, the server is stopped all the same, and the failure is reported
   * once as a process warning (`ERR_IPC_CALLBACK_FAILED`).
   */
  onIdle?: ((idleMs: number) => void) | undefined;
}

/**
 * Stops `server` (gracefully, as {@link Server.stop}: its socket is removed) once no connection
 * has arrived for `timeout` ms and none is in progress. Its `stopReason` is then
 * `{ kind: 'idle' }`.
 *
 * Every accepted connection counts as activity, including liveness probes such as
 * `getActiveState()` or `simple-ipc status`: someone asking whether the daemon is there is
 * interest in it. A long-running conversation keeps the server alive for as long as it runs.
 *
 * The check runs on an unref'd timer (it never keeps the process alive by itself) and reads
 * only the server's counters.
 *
 * @example
 * ```ts
 * const server = await startServer(path, handler);
 * stopWhenIdle(server, 5 * 60_000); // a daemon started on demand goes away when unused
 * await server.closed;
 * ```
 * @throws {@link SimpleIpcError} `ERR_IPC_INVALID_ARGUMENT` if `server` is not a server, `timeout`
 *   is not a number of ms above 0 (to 2^31 - 1), or an option is bad.
 */
export function stopWhenIdle(
  server: Server,
  timeout: number,
  options: IdleOptions = {},
): ServerPolicy {
  checkServer(server);
  if (positiveDuration(timeout, 'timeout') === undefined) {
    throw invalidArgument('timeout', timeout, 'a number of ms');
  }
  const o = optionsObject(options);
  const onIdle = callback(o.onIdle, 'options.onIdle');
  const interval =
    positiveDuration(o.checkInterval, 'options.checkInterval') ??
    Math.min(1000, Math.max(50, timeout / 10));
  let seen = server.stats().connections;
  let since = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const cancel = (): void => {
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
  };
  const check = (): void => {
    if (server.stopping) {
      cancel();
      return;
    }
    const stats = server.stats();
    const now = performance.now();
    if (stats.connections !== seen || stats.running > 0 || stats.queued > 0) {
      seen = stats.connections;
      since = now;
      return;
    }
    if (now - since < timeout) return;
    cancel();
    callObserver('options.onIdle', onIdle, now - since);
    // A server of this package says why it stopped; a look-alike only has stop().
    if (server instanceof Server) stopServerFor(server, { kind: 'idle' });
    else void (server as Pick<Server, 'stop'>).stop();
  };
  timer = setInterval(check, Math.max(1, interval));
  timer.unref();
  void server.closed.then(cancel); // closed never rejects
  return { cancel, [Symbol.dispose]: cancel };
}

/** Options of {@link stopOnSignals}. */
export interface SignalOptions {
  /** The signals to handle (names such as `'SIGHUP'`; not SIGKILL or SIGSTOP). Default `['SIGINT', 'SIGTERM']`. */
  signals?: readonly NodeJS.Signals[] | undefined;
  /**
   * After the first signal, conversations still running this many ms later are cut off (as
   * {@link Server.destroy}); 0 to 2^31 - 1. Default: none of its own; the server's
   * `stopTimeout` (default 30000 ms) still bounds the stop.
   */
  forceAfter?: number | undefined;
  /**
   * Called on each signal with the signal and whether it cut running conversations off (a
   * second signal does). For a log line; the server is stopped either way, also if it throws
   * or rejects (reported once as a process warning, `ERR_IPC_CALLBACK_FAILED`).
   */
  onSignal?: ((signal: NodeJS.Signals, forced: boolean) => void) | undefined;
}

/**
 * Stops `server` gracefully when the process receives SIGINT or SIGTERM: no new connections,
 * queued conversations (request not yet handed to the handler) dropped, running ones finished,
 * then the socket removed (see {@link Server.stop}). A second signal cuts the running ones off
 * ({@link Server.destroy}). Once the server has closed the listeners are removed, so a later
 * signal has its default effect again.
 *
 * While the listeners are installed the signals no longer end the process by themselves:
 * the process ends when the server has closed and nothing else keeps it alive.
 *
 * @example
 * ```ts
 * const server = await startServer(path, handler);
 * stopOnSignals(server, { onSignal: (sig) => console.error(`${sig}: stopping`) });
 * await server.closed; // then exit as usual
 * ```
 * @throws {@link SimpleIpcError} `ERR_IPC_INVALID_ARGUMENT` if `server` is not a server or an option
 *   is bad (nothing is installed then).
 */
export function stopOnSignals(server: Server, options: SignalOptions = {}): ServerPolicy {
  checkServer(server);
  const o = optionsObject(options);
  const signals = checkSignals(o.signals) ?? (['SIGINT', 'SIGTERM'] as const);
  const forceAfter = duration(o.forceAfter, 'options.forceAfter');
  const onSignalOption = callback(o.onSignal, 'options.onSignal');
  let received = 0;
  let force: NodeJS.Timeout | undefined;
  let attached = true;
  const onSignal = (signal: NodeJS.Signals): void => {
    received++;
    const forced = received > 1;
    callObserver('options.onSignal', onSignalOption, signal, forced);
    if (forced) {
      void server.destroy();
      return;
    }
    void server.stop();
    if (forceAfter !== undefined && force === undefined) {
      force = setTimeout(() => void server.destroy(), forceAfter);
      force.unref();
    }
  };
  const cancel = (): void => {
    if (!attached) return;
    attached = false;
    for (const signal of signals) process.off(signal, onSignal);
    if (force !== undefined) clearTimeout(force);
  };
  for (const signal of signals) process.on(signal, onSignal);
  void server.closed.then(cancel); // closed never rejects
  return { cancel, [Symbol.dispose]: cancel };
}

/**
 * Daemons on demand: start a server process detached (no terminal, outliving its starter),
 * wait until it listens, and connect to it. Mirrors the `start-daemon` logic of Git's
 * `t/helper/test-simple-ipc.c`: poll the active state; `not-listening` and `path-not-found`
 * mean "keep waiting", any other state means "give up".
 *
 * Several starters may race, in one process or in many. Within a process they share one start.
 * Across processes each may spawn a server, and the servers' start-up lock (`<path>.lock`, see
 * docs/lifecycle.md and src/lock.ts) lets exactly one of them listen; the others exit with
 * "already in use" and their starters connect to the winner.
 *
 * @module
 */

import type { Stats } from 'node:fs';
import { ActiveState, CONNECT_TIMEOUT_MS, getActiveState, tryConnectToTrusted } from './connect.js';
import type { Connection } from './connection.js';
import { abortError, ErrorCode, SimpleIpcError, systemCode } from './errors.js';
import { isLockHeld } from './lock.js';
import { REFUSAL_CONFIRM_INTERVAL_MS, REFUSAL_CONFIRM_PROBES, refusal } from './refusal.js';
import { checkOwners } from './trust.js';
import {
  abortSignal,
  boolean,
  duration,
  invalidArgument,
  optionsObject,
  socketPath,
  string,
  stringArray,
  stringRecord,
} from './validate.js';

// Node built-ins: taken, not imported, the heavy ones where first used (trust.ts says why).
const { closeSync, constants, fstatSync, lstatSync, openSync } =
  process.getBuiltinModule('node:fs');
// eslint-disable-next-line @typescript-eslint/unbound-method -- node:path's functions take no `this`
const { resolve: resolvePath } = process.getBuiltinModule('node:path');
const timers = (): typeof import('node:timers/promises') =>
  process.getBuiltinModule('node:timers/promises');

/**
 * How to start a daemon, for {@link startDaemon} and {@link connectOrStart}. A value of the
 * wrong type or out of range fails with `ERR_IPC_INVALID_ARGUMENT`, naming the option.
 */
export interface DaemonOptions {
  /** The program to run (for a Node script: `process.execPath`). */
  command: string;
  /** Its arguments. */
  args?: readonly string[] | undefined;
  /** Its working directory. Default: this process's. */
  cwd?: string | undefined;
  /** Its environment. Default: this process's. */
  env?: NodeJS.ProcessEnv | undefined;
  /**
   * A file that receives the daemon's standard output and error (appended; created with mode
   * 0600). It must be a regular file of yours or not exist yet: a symbolic link there is not
   * followed (another user may have put it there), and anything else is refused (see
   * {@link startDaemon}). Default: none, both go to the null device, as with Git's
   * `start-daemon`.
   */
  logFile?: string | undefined;
  /** How long to wait for the daemon to listen, in ms (0 to 2^31 - 1). Default 60000 (Git's 60 s). */
  timeout?: number | undefined;
  /** How often to look, in ms (0 to 2^31 - 1; at least 1 is waited). Default 20. */
  pollInterval?: number | undefined;
  /** Aborts the wait (the daemon, once spawned, is left running). */
  signal?: AbortSignal | undefined;
}

/** Options of {@link connectOrStart}: how to start the daemon, and how to reach it. */
export interface ConnectOrStartOptions extends DaemonOptions {
  /** Never change directory to reach a long path. Default false. */
  disallowChdir?: boolean | undefined;
}

/** A daemon started by {@link startDaemon}. */
export interface StartedDaemon {
  /**
   * The process id of the program that was spawned. When starters race, the server that
   * listens may be another starter's, and this process may already have exited.
   */
  readonly pid: number;
}

/**
 * Starts `options.command` detached (its own process group, no terminal, standard input from
 * the null device, output to `options.logFile`) and resolves once a server listens at `path`.
 *
 * The process is spawned even when a server already listens, as Git's `start-daemon` does; it
 * is expected to exit on its own with "already in use", and the call succeeds.
 *
 * If the process exits before anything listens, the call keeps waiting while another
 * process holds the start-up lock `<path>.lock` (a racing server that won it is still
 * binding), and fails otherwise.
 *
 * @throws {@link SimpleIpcError} `ERR_IPC_DAEMON_FAILED` (the spawn failed, the log file cannot be
 *   opened or is not a regular file of yours, or the path is unusable: `invalid-path` /
 *   `other-error`; in that case nothing is spawned when the path was already unusable),
 *   `ERR_IPC_DAEMON_NOT_ONLINE` (deadline passed; the process is left running),
 *   `ERR_IPC_DAEMON_TERMINATED` (it exited before listening), `ERR_IPC_UNTRUSTED_OWNER` (the
 *   directory of `path`, a socket there, the start-up lock file `<path>.lock`, or the log file
 *   (or a symbolic link there) belongs to another user: nothing is spawned), `ABORT_ERR`
 *   (aborted before the spawn: nothing is spawned; after it: the process is left running),
 *   `ERR_IPC_INVALID_ARGUMENT` (a bad `path` or option;
 *   nothing is spawned).
 */
export async function startDaemon(path: string, options: DaemonOptions): Promise<StartedDaemon> {
  socketPath(path);
  const settings = daemonSettings(options);
  const { signal } = settings;
  if (signal?.aborted) throw abortError(signal);
  const timeout = settings.timeout;
  const interval = Math.max(1, settings.pollInterval);
  const deadline = performance.now() + timeout;

  // A server of another user's, or one in their directory, could be posing as ours; a lock
  // file of theirs would make the daemon fail (and this wait for nothing).
  await checkOwners(path);
  isLockHeld(`${path}.lock`);
  const before = await getActiveState(path, { signal });
  if (before === ActiveState.INVALID_PATH || before === ActiveState.OTHER_ERROR) {
    throw unusable(path, before);
  }

  const child = await spawnDetached(path, settings);
  const pid = child.pid;
  for (;;) {
    // Read before looking: an exit seen here happened before the look below.
    const exited = child.exit;
    const lockBusy = exited !== undefined && isLockHeld(`${path}.lock`);
    const state = await getActiveState(path, { signal });
    if (state === ActiveState.LISTENING) return { pid };
    if (state !== ActiveState.NOT_LISTENING && state !== ActiveState.PATH_NOT_FOUND) {
      throw unusable(path, state);
    }
    if (exited !== undefined && !lockBusy) {
      const log = settings.logFile === undefined ? '' : ` (see ${settings.logFile})`;
      throw new SimpleIpcError(
        ErrorCode.DAEMON_TERMINATED,
        `daemon terminated: it ${exited} before listening at '${path}'${log}`,
        { path },
      );
    }
    if (performance.now() >= deadline) {
      const left = exited === undefined ? ` (process ${pid} left running)` : '';
      throw new SimpleIpcError(
        ErrorCode.DAEMON_NOT_ONLINE,
        `daemon not online yet: nothing listens at '${path}' after ${timeout} ms${left}`,
        { path },
      );
    }
    try {
      await timers().setTimeout(interval, undefined, { signal });
    } catch {
      throw abortError(signal!);
    }
  }
}

/** {@link DaemonOptions} checked, with their defaults. */
interface DaemonSettings {
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string | undefined;
  readonly env: NodeJS.ProcessEnv | undefined;
  readonly logFile: string | undefined;
  readonly timeout: number;
  readonly pollInterval: number;
  readonly signal: AbortSignal | undefined;
}

function daemonSettings(options: DaemonOptions | undefined): DaemonSettings {
  const o = optionsObject(options);
  const command = string(o.command, 'options.command');
  if (command === undefined)
    throw invalidArgument('options.command', command, 'a non-empty string');
  return {
    command,
    args: stringArray(o.args, 'options.args') ?? [],
    cwd: string(o.cwd, 'options.cwd'),
    env: stringRecord(o.env, 'options.env'),
    logFile: string(o.logFile, 'options.logFile'),
    timeout: duration(o.timeout, 'options.timeout') ?? 60_000,
    pollInterval: duration(o.pollInterval, 'options.pollInterval') ?? 20,
    signal: abortSignal(o.signal),
  };
}

/** A spawned daemon and, once it has exited, how. */
interface Spawned {
  readonly pid: number;
  /** `exited with code N` or `was killed by SIGNAL`; undefined while it runs. */
  exit: string | undefined;
}

async function spawnDetached(path: string, options: DaemonSettings): Promise<Spawned> {
  const logFd = options.logFile === undefined ? undefined : openLog(options.logFile, path);
  try {
    const child = process
      .getBuiltinModule('node:child_process')
      .spawn(options.command, options.args, {
        cwd: options.cwd,
        env: options.env,
        // A process group of its own: a Ctrl-C meant for the starter does not reach it.
        detached: true,
        stdio: ['ignore', logFd ?? 'ignore', logFd ?? 'ignore'],
        windowsHide: true,
      });
    const failure = await new Promise<Error | undefined>((resolve) => {
      child.once('spawn', () => resolve(undefined));
      child.once('error', resolve);
    });
    if (failure !== undefined || child.pid === undefined) {
      throw new SimpleIpcError(
        ErrorCode.DAEMON_FAILED,
        `daemon failed to start: cannot run '${options.command}': ${failure?.message ?? 'no process id'}`,
        { cause: failure, path },
      );
    }
    const spawned: Spawned = { pid: child.pid, exit: undefined };
    child.once('exit', (code, signal) => {
      spawned.exit = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
    });
    // The starter may exit while the daemon lives on.
    child.unref();
    return spawned;
  } finally {
    // The child has its own copy of the descriptor.
    if (logFd !== undefined) closeSync(logFd);
  }
}

// Opening the log must not follow a symbolic link (in a shared directory another user may have
// put one there, pointing at a file of ours), block on a FIFO, or take a terminal.
const LOG_FLAGS =
  constants.O_WRONLY |
  constants.O_APPEND |
  constants.O_CREAT |
  (constants.O_NOFOLLOW ?? 0) |
  (constants.O_NONBLOCK ?? 0) |
  (constants.O_NOCTTY ?? 0);

/**
 * Opens `logFile` for appending (created with mode 0600): it must be a regular file of this
 * user's, not a symbolic link.
 */
function openLog(logFile: string, path: string): number {
  let fd: number;
  try {
    fd = openSync(logFile, LOG_FLAGS, 0o600);
  } catch (cause) {
    // O_NOFOLLOW met a symbolic link: ELOOP (EMLINK on FreeBSD), or EACCES where the system
    // protects links in sticky directories (Linux's protected_symlinks). ENXIO: a FIFO that
    // nobody reads.
    const link = lstatOrUndefined(logFile);
    if (link?.isSymbolicLink()) refuseLog(logFile, path, link.uid, 'is a symbolic link', cause);
    if (systemCode(cause) === 'ENXIO') {
      refuseLog(logFile, path, undefined, 'is not a regular file', cause);
    }
    throw new SimpleIpcError(
      ErrorCode.DAEMON_FAILED,
      `daemon failed to start: cannot open the log file '${logFile}': ${(cause as Error).message}`,
      { cause, path },
    );
  }
  const stats = fstatSync(fd);
  const uid = process.geteuid?.();
  if (!stats.isFile() || (uid !== undefined && stats.uid !== uid)) {
    closeSync(fd);
    refuseLog(logFile, path, stats.uid, stats.isFile() ? 'is not yours' : 'is not a regular file');
  }
  return fd;
}

function lstatOrUndefined(file: string): Stats | undefined {
  try {
    return lstatSync(file);
  } catch {
    return undefined;
  }
}

// A log file that is another user's (a file, or a link to follow) is refused as untrusted;
// anything else that is not a regular file of ours, as unusable.
function refuseLog(
  logFile: string,
  path: string,
  owner: number | undefined,
  why: string,
  cause?: unknown,
): never {
  const uid = process.geteuid?.();
  const theirs = owner !== undefined && uid !== undefined && owner !== uid;
  const whose = theirs ? ` and belongs to user ${owner}, not to you (user ${uid})` : '';
  throw new SimpleIpcError(
    theirs ? ErrorCode.UNTRUSTED_OWNER : ErrorCode.DAEMON_FAILED,
    `daemon failed to start: the log file '${logFile}' ${why}${whose}; it is not opened (the log must be a regular file of yours, or not exist yet: choose a path in a directory of your own, such as userSocketDirectory())`,
    { path, ...(cause === undefined ? {} : { cause }) },
  );
}

function unusable(path: string, state: ActiveState): SimpleIpcError {
  return new SimpleIpcError(
    ErrorCode.DAEMON_FAILED,
    `daemon failed to start: '${path}' is ${state === ActiveState.INVALID_PATH ? 'not a usable socket path' : 'unreachable'} (${state})`,
    { path },
  );
}

// True when a live process holds the start-up lock: a server is between taking the lock and
// listening. Our servers write their pid in the lock; Git's write nothing, so a lock without
// an owner counts until it is as old as a stale one.
// Starts in progress in this process, by absolute path, so that concurrent callers share one.
const starting = new Map<string, Promise<unknown>>();

/**
 * Returns a connection to the server at `path`, starting it first with {@link startDaemon} if
 * none listens.
 *
 * Concurrent callers in one process share one start (the options of the first one are used).
 * Callers in different processes may each spawn a server; the start-up lock lets exactly one
 * of them listen, the others must exit when `startServer()` fails (with `ERR_IPC_IN_USE` or
 * `ERR_IPC_LOCKED`; an unhandled rejection does that), and every caller connects to the one.
 *
 * @example
 * ```ts
 * const conn = await connectOrStart(sock, {
 *   command: process.execPath, args: ['my-daemon.js', sock], logFile: `${sock}.log`,
 * });
 * const answer = await conn.send('status');
 * ```
 * @throws {@link SimpleIpcError} the errors of {@link startDaemon}; `ERR_IPC_INVALID_PATH` or
 *   `ERR_IPC_OTHER` when the path cannot be connected to for a reason a new daemon would not
 *   fix; `ERR_IPC_NOT_LISTENING` if the started daemon does not accept within 1 s of listening
 *   (it is busy); `ERR_IPC_UNTRUSTED_OWNER` when the socket or its directory belongs to
 *   another user (it could be posing as your server: nothing is sent to it, nothing is
 *   started; use {@link userSocketDirectory}); `ERR_IPC_INVALID_ARGUMENT` (a bad `path` or
 *   option, before anything is tried).
 */
export async function connectOrStart(
  path: string,
  options: ConnectOrStartOptions,
): Promise<Connection> {
  socketPath(path);
  daemonSettings(options);
  const disallowChdir = boolean(options.disallowChdir, 'options.disallowChdir');
  const signal = options.signal;
  // Every connect checks whose socket it is, and connects only to a socket of ours or root's
  // seen at the path just before: the request must not go to another user's.
  let first = await tryConnectToTrusted(path, { disallowChdir, signal });
  if (first.state === ActiveState.NOT_LISTENING && isAmbiguousRefusal(first.error)) {
    // macOS and the BSDs: a live server with a full listen queue refuses too (src/refusal.ts).
    // Retry as for a busy server for a moment before starting a daemon beside it.
    first = await tryConnectToTrusted(path, {
      waitIfBusy: true,
      timeout: REFUSAL_CONFIRM_PROBES * REFUSAL_CONFIRM_INTERVAL_MS,
      retryInterval: REFUSAL_CONFIRM_INTERVAL_MS,
      disallowChdir,
      signal,
    });
  }
  if (first.state === ActiveState.LISTENING) return first.connection;
  if (first.state === ActiveState.INVALID_PATH || first.state === ActiveState.OTHER_ERROR) {
    throw first.error;
  }
  const key = resolvePath(path);
  let start = starting.get(key);
  if (start === undefined) {
    // Shared, so no caller's signal may abort it; each caller stops waiting on its own.
    start = startDaemon(path, { ...options, signal: undefined }).finally(() =>
      starting.delete(key),
    );
    start.catch(noop); // a rejection nobody awaits any more (all aborted) is not a crash
    starting.set(key, start);
  }
  await untilAborted(start, signal);
  const result = await tryConnectToTrusted(path, {
    waitIfBusy: true,
    waitIfNotFound: true,
    timeout: CONNECT_TIMEOUT_MS,
    disallowChdir,
    signal,
  });
  if (result.state === ActiveState.LISTENING) return result.connection;
  throw result.error;
}

// True for a refusal that may come from a busy server rather than a dead socket.
function isAmbiguousRefusal(err: SimpleIpcError): boolean {
  return refusal.ambiguous && systemCode(err.cause) === 'ECONNREFUSED';
}

// Waits for `promise`, or rejects with ABORT_ERR as soon as `signal` aborts.
function untilAborted(
  promise: Promise<unknown>,
  signal: AbortSignal | undefined,
): Promise<unknown> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function noop(): void {}

/**
 * Connecting, the client's first half: probe a path ({@link getActiveState}), and connect with
 * Git's retry rules ({@link tryConnect}, {@link connect}), with the owner checks of `checkOwner`
 * around each attempt. One attempt is connect-attempt.ts's; the {@link Connection} it makes is
 * connection.ts's.
 *
 * Mirrors Git's `compat/simple-ipc/ipc-unix-socket.c` (`ipc_get_active_state()`,
 * `ipc_client_try_connect()`).
 *
 * @module
 */

import { Socket } from 'node:net';
import { USES_NAMED_PIPES } from './address.js';
import { connectError, connectOnce } from './connect-attempt.js';
import { type ClientTrace, clientRetry } from './diagnostics.js';
import { type Connection, makeConnection } from './connection.js';
import { abortError, ErrorCode, SimpleIpcError, systemCode } from './errors.js';
import type { SocketIdentity } from './trust.js';
import { lookBeforeConnect, lstat } from './trust.js';
import { abortSignal, boolean, duration, optionsObject, socketPath } from './validate.js';

/**
 * What is at a path, in Git's words (`enum ipc_active_state`).
 *
 * - `listening`: a server accepted a connection.
 * - `not-listening`: nothing there, a dead socket, or a server too busy to accept (note: a
 *   missing path is `not-listening` for {@link getActiveState}, as in Git).
 * - `invalid-path`: the path can never be a socket (a regular file, a directory, ...).
 * - `path-not-found`: the socket vanished between the look and the connect.
 * - `other-error`: anything else.
 */
export const ActiveState = {
  LISTENING: 'listening',
  NOT_LISTENING: 'not-listening',
  INVALID_PATH: 'invalid-path',
  PATH_NOT_FOUND: 'path-not-found',
  OTHER_ERROR: 'other-error',
} as const;

// Frozen: the library compares with and returns these values.
Object.freeze(ActiveState);

/** One of the `ActiveState` values. */
export type ActiveState = (typeof ActiveState)[keyof typeof ActiveState];

/** Git's connect retry step and deadline (`ipc-unix-socket.c`). */
export const CONNECT_RETRY_INTERVAL_MS = 50;
/**
 * Git's connect deadline: 1000 ms with Unix sockets (`ipc-unix-socket.c`), 30000 ms with
 * Windows named pipes (`WINDOWS_CONNECTION_TIMEOUT_MS` in `ipc-win32.c`), where a burst of
 * clients waits for the server's few pipe instances.
 */
export const CONNECT_TIMEOUT_MS = USES_NAMED_PIPES ? 30_000 : 1000;

/**
 * Options of {@link tryConnect}, {@link connect} and {@link sendCommand}. A value of the wrong
 * type or out of range fails with `ERR_IPC_INVALID_ARGUMENT`, naming the option.
 */
export interface ConnectOptions {
  /** Retry while the server exists but does not accept (refused, busy). Default false. */
  waitIfBusy?: boolean | undefined;
  /** Retry while the path does not exist (a server that is starting). Default false. */
  waitIfNotFound?: boolean | undefined;
  /**
   * Never change directory to reach a long path (where the `/proc/self/fd` alias is not
   * available). Default false.
   */
  disallowChdir?: boolean | undefined;
  /**
   * How long to keep retrying, in ms (0 to 2^31 - 1). Default {@link CONNECT_TIMEOUT_MS}: 1000,
   * or 30000 with Windows named pipes (Git's values).
   */
  timeout?: number | undefined;
  /** Pause between attempts, in ms (0 to 2^31 - 1; at least 1 is waited). Default 50 (Git's). */
  retryInterval?: number | undefined;
  /** Aborts the wait; the Promise rejects with code `ABORT_ERR`. */
  signal?: AbortSignal | undefined;
  /**
   * Refuse a socket, or a socket directory, that belongs to another user (not this one, not
   * root): `ERR_IPC_UNTRUSTED_OWNER` (state `other-error`), before anything is sent, so that a
   * socket someone else put at the path never receives the request. The path is looked at
   * before and after each connect, and the connection is used only when both looks found the
   * same socket of this user's or root's, not a symbolic link: otherwise it is closed unused and
   * refused with `ERR_IPC_UNTRUSTED_OWNER` (a socket that appeared during the connect is
   * connected to again, once). docs/security.md says what this proves and what it cannot.
   * Default false: Git's clients connect to repository paths without it.
   * Ignored with Windows named pipes, which have no owner Node can read (docs/security.md).
   */
  checkOwner?: boolean | undefined;
}

/** The result of {@link tryConnect}: a connection, or the state that prevented one. */
export type ConnectResult =
  | { readonly state: 'listening'; readonly connection: Connection }
  | {
      readonly state: Exclude<ActiveState, 'listening'>;
      /** What went wrong, with the matching code. */
      readonly error: SimpleIpcError;
    };

/**
 * Probes `path` as Git's `ipc_get_active_state()` does: look at the file, then make one
 * connection attempt without waiting, and hang up at once without sending anything (servers
 * take that quietly as a liveness probe).
 *
 * Never throws for a state; rejects only when aborted, or for a bad argument.
 *
 * @throws {@link SimpleIpcError} `ABORT_ERR`, `ERR_IPC_INVALID_ARGUMENT`.
 */
export async function getActiveState(
  path: string,
  options: { signal?: AbortSignal | undefined } = {},
): Promise<ActiveState> {
  socketPath(path);
  const signal = abortSignal(optionsObject(options).signal);
  if (!USES_NAMED_PIPES) {
    const state = await fileState(path);
    // Aborted while looking: ABORT_ERR, as when aborted while connecting. A caller that goes
    // on with a state after aborting (startDaemon would spawn a daemon) must not get one.
    if (signal?.aborted) throw abortError(signal);
    if (state !== undefined) return state;
  }
  const result = await tryConnect(path, { signal });
  if (result.state === ActiveState.LISTENING) result.connection.destroy();
  return result.state;
}

/** What the file at `path` says of a server: undefined for a socket (then try connecting). */
async function fileState(path: string): Promise<ActiveState | undefined> {
  try {
    const stats = await lstat(path);
    return stats.isSocket() ? undefined : ActiveState.INVALID_PATH;
  } catch (err) {
    const code = systemCode(err);
    return code === 'ENOENT' || code === 'ENOTDIR'
      ? ActiveState.NOT_LISTENING
      : ActiveState.INVALID_PATH;
  }
}

/**
 * Connects to the server at `path` with Git's retry rules, returning the state instead of
 * throwing when no connection was made:
 * - ENOENT: retry if `waitIfNotFound`, else `path-not-found`;
 * - ECONNREFUSED, ETIMEDOUT, EAGAIN (a full listen backlog), or on Windows a pipe with every
 *   instance busy: retry (for a pipe: wait) if `waitIfBusy`, else `not-listening`;
 * - anything else: `other-error`; deadline reached: `not-listening`;
 * - with `checkOwner`, a socket or socket directory of another user: `other-error` with
 *   `ERR_IPC_UNTRUSTED_OWNER`, before anything is sent.
 *
 * @throws {@link SimpleIpcError} `ABORT_ERR` when `signal` aborts (a connection made meanwhile is
 *   closed, never returned); `ERR_IPC_INVALID_ARGUMENT` for a bad `path` or option.
 */
export async function tryConnect(
  path: string,
  options: ConnectOptions = {},
): Promise<ConnectResult> {
  const outcome = await connectWithRetries(path, connectSettings(path, options), undefined);
  return outcome instanceof Socket
    ? { state: ActiveState.LISTENING, connection: makeConnection(outcome, path) }
    : outcome;
}

/**
 * {@link tryConnect} with the owner check, where nothing at the path at the look before a
 * connect means no connect at all (`path-not-found`): for {@link connectOrStart}, which starts
 * a daemon or waits when nothing is there. Not part of the public API.
 */
export async function tryConnectToTrusted(
  path: string,
  options: Omit<ConnectOptions, 'checkOwner'>,
): Promise<ConnectResult> {
  const settings: ConnectSettings = {
    ...connectSettings(path, options),
    checkOwner: true,
    onlyToSeen: true,
  };
  const outcome = await connectWithRetries(path, settings, undefined);
  return outcome instanceof Socket
    ? { state: ActiveState.LISTENING, connection: makeConnection(outcome, path) }
    : outcome;
}

/** A connect that failed: the state, and the error that says why. */
type ConnectFailure = Exclude<ConnectResult, { readonly state: 'listening' }>;

/** The outcome of a first connection attempt that failed, and the deadline it was made under. */
interface FirstAttempt {
  readonly error: SimpleIpcError;
  readonly deadline: number | undefined;
}

/**
 * @internal Connects with Git's retry rules ({@link tryConnect}), starting with an attempt of
 * its own or, when `first` is given, from a first attempt that already failed.
 */
export async function connectWithRetries(
  path: string,
  settings: ConnectSettings,
  first: FirstAttempt | undefined,
  trace?: ClientTrace,
): Promise<Socket | ConnectFailure> {
  const timeout = settings.timeout;
  const signal = settings.signal;
  // The clock is read only once a retry is needed (the first attempt takes microseconds), or
  // up front for a named pipe waited for while busy (see connectOnce).
  let deadline = first === undefined ? busyDeadline(settings) : first.deadline;
  let outcome = first?.error;
  let appeared = false;
  let retries = 0;
  for (;;) {
    if (outcome === undefined) {
      if (signal?.aborted) throw abortError(signal);
      let before: SocketIdentity | Error | undefined;
      if (settings.checkOwner) {
        try {
          before = await lookBeforeConnect(path);
        } catch (err) {
          return { state: ActiveState.OTHER_ERROR, error: err as SimpleIpcError };
        }
      }
      const attempt =
        before instanceof Error && settings.onlyToSeen
          ? connectError(before, path)
          : await new Promise<Socket | SimpleIpcError>((resolve) => {
              connectOnce(path, settings.disallowChdir, busyWait(deadline), signal, resolve);
            });
      if (!(attempt instanceof SimpleIpcError)) {
        const verdict = settings.checkOwner
          ? await lookAfterConnect(attempt, path, before, appeared)
          : undefined;
        // Aborted while connecting (or checking the owner): the caller has given up, so the
        // connection is not handed out, and nothing else will close it.
        if (signal?.aborted) {
          attempt.destroy();
          throw abortError(signal);
        }
        if (verdict === undefined) return attempt;
        if (verdict === APPEARED) {
          // Checked now, but not before the connect: connect again between two looks.
          appeared = true;
          continue;
        }
        return { state: stateOf(verdict), error: verdict };
      }
      if (signal?.aborted) throw abortError(signal);
      outcome =
        attempt.code === ErrorCode.NOT_LISTENING ? await notASocket(attempt, path) : attempt;
    }
    const state = stateOf(outcome);
    const retry =
      (state === ActiveState.PATH_NOT_FOUND && settings.waitIfNotFound) ||
      (state === ActiveState.NOT_LISTENING && settings.waitIfBusy);
    if (!retry) return { state, error: outcome };
    deadline ??= now() + timeout;
    const left = deadline - now();
    if (left <= 0) {
      return {
        state: ActiveState.NOT_LISTENING,
        error: new SimpleIpcError(
          ErrorCode.NOT_LISTENING,
          `no server answered at '${path}' within ${timeout} ms`,
          { path, cause: outcome },
        ),
      };
    }
    const delay = Math.min(settings.retryInterval, left);
    retries++;
    if (trace !== undefined) trace.retries = retries;
    if (clientRetry.hasSubscribers) {
      clientRetry.publish({ path, attempt: retries, error: outcome, delay });
    }
    try {
      // node:timers/promises only when a retry waits (trust.ts says why).
      const { setTimeout: sleep } = process.getBuiltinModule('node:timers/promises');
      await sleep(delay, undefined, { signal });
    } catch {
      throw abortError(signal!);
    }
    outcome = undefined;
  }
}

/** {@link lookAfterConnect}'s verdict on a socket that was not there at the look before. */
const APPEARED = Symbol('appeared');

/**
 * After a connect with `checkOwner`: undefined when the connection may be used, that is when
 * the same socket of this user's or root's was at `path` at the look before the connect
 * (`before`) and at this look after it, so the connection reached that socket (nobody else can
 * remove or replace a file of ours in the directory of a checked path, unless that directory
 * is open to them without the sticky bit: docs/security.md). Otherwise the connection is
 * destroyed and the verdict is the error to report, or {@link APPEARED} when a trusted socket
 * is there now but nothing was before (once per connect: `again` false), to connect again.
 *
 * Node exposes no peer credentials on a Unix socket: which socket a connection reached cannot
 * be asked, only inferred from the path staying the same around the connect.
 */
async function lookAfterConnect(
  socket: Socket,
  path: string,
  before: SocketIdentity | Error | undefined,
  again: boolean,
): Promise<SimpleIpcError | typeof APPEARED | undefined> {
  // The socket must not be left without an 'error' listener while we look (a reset then would
  // be an uncaught exception); what arrives meanwhile makes the connection useless.
  let failure: Error | undefined;
  const onError = (err: Error): void => {
    failure ??= err;
  };
  socket.on('error', onError);
  let verdict: SimpleIpcError | typeof APPEARED | undefined;
  try {
    const after = await lookBeforeConnect(path);
    if (after instanceof Error) {
      verdict = new SimpleIpcError(
        ErrorCode.UNTRUSTED_OWNER,
        `the socket '${path}' was gone right after connecting: the connection may have reached a socket someone else put there and removed; it is not used (try again)`,
        { path, cause: after },
      );
    } else if (after !== undefined && before instanceof Error && !again) {
      verdict = APPEARED;
    } else if (
      after !== undefined &&
      (before === undefined ||
        before instanceof Error ||
        before.dev !== after.dev ||
        before.ino !== after.ino)
    ) {
      verdict = new SimpleIpcError(
        ErrorCode.UNTRUSTED_OWNER,
        `the socket '${path}' was replaced while connecting: the connection may have reached a socket someone else put there; it is not used (try again)`,
        { path },
      );
    }
  } catch (err) {
    verdict = err as SimpleIpcError;
  }
  failure ??= socket.errored ?? undefined;
  if (verdict === undefined && failure !== undefined) verdict = connectError(failure, path);
  if (verdict === undefined) {
    socket.off('error', onError);
    return undefined;
  }
  // Our listener stays: destroy() may still deliver an error that was on its way.
  socket.destroy();
  return verdict;
}

/**
 * @internal A named pipe whose every instance is taken is waited for inside the connect (see
 * connectOnce): until the deadline with waitIfBusy, else not at all. Elsewhere no deadline is
 * needed before a retry.
 */
export function busyDeadline(settings: ConnectSettings): number | undefined {
  return USES_NAMED_PIPES && settings.waitIfBusy ? now() + settings.timeout : undefined;
}

/** @internal How long a connect may wait for a busy named pipe: the time left, or 0 for no wait. */
export function busyWait(deadline: number | undefined): number {
  return USES_NAMED_PIPES && deadline !== undefined ? Math.max(0, deadline - now()) : 0;
}

/** @internal {@link ConnectOptions} checked, with their defaults. */
export interface ConnectSettings {
  readonly waitIfBusy: boolean;
  readonly waitIfNotFound: boolean;
  readonly disallowChdir: boolean;
  readonly timeout: number;
  readonly retryInterval: number;
  readonly signal: AbortSignal | undefined;
  readonly checkOwner: boolean;
  /**
   * With `checkOwner`: no connect when nothing is at the path at the look before it (the
   * attempt fails as `path-not-found`), so that a socket put there after the look never gets
   * a connection (connectOrStart, for which nothing there means "start the daemon").
   */
  readonly onlyToSeen: boolean;
}

/** @internal Checks `path` and {@link ConnectOptions}, and fills in the defaults. */
export function connectSettings(
  path: string,
  options: ConnectOptions | undefined,
): ConnectSettings {
  socketPath(path);
  const o = optionsObject(options);
  return {
    waitIfBusy: boolean(o.waitIfBusy, 'options.waitIfBusy') ?? false,
    waitIfNotFound: boolean(o.waitIfNotFound, 'options.waitIfNotFound') ?? false,
    disallowChdir: boolean(o.disallowChdir, 'options.disallowChdir') ?? false,
    timeout: duration(o.timeout, 'options.timeout') ?? CONNECT_TIMEOUT_MS,
    retryInterval: Math.max(
      1,
      duration(o.retryInterval, 'options.retryInterval') ?? CONNECT_RETRY_INTERVAL_MS,
    ),
    signal: abortSignal(o.signal),
    checkOwner: boolean(o.checkOwner, 'options.checkOwner') ?? false,
    onlyToSeen: false,
  };
}

/**
 * Like {@link tryConnect}, but throws when no connection was made.
 *
 * @throws {@link SimpleIpcError} `ERR_IPC_NOT_LISTENING`, `ERR_IPC_PATH_NOT_FOUND`,
 *   `ERR_IPC_INVALID_PATH`, `ERR_IPC_OTHER` (with the system error as `cause`),
 *   `ERR_IPC_UNTRUSTED_OWNER` (with `checkOwner`: another user's socket or directory),
 *   `ABORT_ERR`, or `ERR_IPC_INVALID_ARGUMENT`.
 */
export async function connect(path: string, options: ConnectOptions = {}): Promise<Connection> {
  const result = await tryConnect(path, options);
  if (result.state === ActiveState.LISTENING) return result.connection;
  throw result.error;
}

function stateOf(err: SimpleIpcError): Exclude<ActiveState, 'listening'> {
  switch (err.code) {
    case ErrorCode.PATH_NOT_FOUND:
      return ActiveState.PATH_NOT_FOUND;
    case ErrorCode.NOT_LISTENING:
      return ActiveState.NOT_LISTENING;
    case ErrorCode.INVALID_PATH:
      return ActiveState.INVALID_PATH;
    case ErrorCode.NAME_TOO_LONG:
      // Git: ENAMETOOLONG is OTHER_ERROR on Unix; a pipe name it cannot build is INVALID_PATH.
      return USES_NAMED_PIPES ? ActiveState.INVALID_PATH : ActiveState.OTHER_ERROR;
    default:
      return ActiveState.OTHER_ERROR;
  }
}

/**
 * A refused connect (`refused`), or `ERR_IPC_INVALID_PATH` when what refused it is a file that
 * is not a socket: no server can ever listen there, as {@link getActiveState} and the server say,
 * and no wait helps. Looked at only after a refusal, off the path of a connect that works.
 */
async function notASocket(refused: SimpleIpcError, path: string): Promise<SimpleIpcError> {
  if (USES_NAMED_PIPES) return refused;
  try {
    if ((await lstat(path)).isSocket()) return refused;
  } catch {
    return refused;
  }
  return new SimpleIpcError(
    ErrorCode.INVALID_PATH,
    `'${path}' is not a socket: no server can listen there (give the path of a server's socket)`,
    { path, cause: refused.cause },
  );
}

/**
 * A monotonic clock in milliseconds. Not `performance.now()`: the `performance` global loads
 * perf_hooks and its dependents on first use, which a client that only connects has no use for.
 */
function now(): number {
  return process.uptime() * 1000;
}

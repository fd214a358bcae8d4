/**
 * The client side: probe a path ({@link getActiveState}), connect with Git's retry rules
 * ({@link tryConnect}, {@link connect}), and exchange one request for one response
 * ({@link Connection}, {@link sendCommand}).
 *
 * Mirrors Git's `compat/simple-ipc/ipc-unix-socket.c` (client half).
 *
 * @module
 */

import { lstat } from 'node:fs/promises';
import { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { USES_NAMED_PIPES, withSocketAddress } from './address.js';
import { abortError, ErrorCode, isSimpleIpcError, SimpleIpcError, systemCode } from './errors.js';
import { type HoldWatch, InboundMessage, OutboundMessage, piecesOf } from './message.js';
import {
  MessageDecoder,
  PacketBuilder,
  type PieceSink,
  toBuffer,
  writePacketLength,
} from './pkt-line.js';
import type { SocketIdentity } from './trust.js';
import { injectedError, refusal } from './refusal.js';
import { lookBeforeConnect } from './trust.js';
import {
  abortSignal,
  boolean,
  duration,
  invalidArgument,
  optionsObject,
  sizeLimit,
  socketPath,
} from './validate.js';

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

const kCreate = Symbol('create');

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

/**
 * Options of {@link Connection.send}, {@link Connection.stream} and {@link sendCommand},
 * checked as {@link ConnectOptions} are.
 */
export interface SendOptions {
  /**
   * Most response bytes accepted: a whole number, or `Infinity`. Default: no limit.
   */
  maxResponseSize?: number | undefined;
  /**
   * Fails with `ERR_IPC_TIMEOUT` when the server sends nothing for this many ms while the
   * client waits for it (0 to 2^31 - 1; 0 is none). Only waiting counts: not the time a
   * {@link Connection.stream} consumer holds pieces it has not taken (the socket is then paused
   * for it), nor the time an async iterable request takes to make its next chunk. Default: no
   * timeout (a server may think for as long as it needs).
   */
  timeout?: number | undefined;
  /** Aborts the exchange and destroys the connection; rejects with code `ABORT_ERR`. */
  signal?: AbortSignal | undefined;
}

/**
 * A request: bytes, a string (sent as UTF-8), or chunks from an iterable, an async iterable
 * or a readable stream, for requests too large to hold at once.
 */
export type Message =
  string | Uint8Array | Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array>;

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
 * Connects with Git's retry rules ({@link tryConnect}), starting with an attempt of its own or,
 * when `first` is given, from a first attempt that already failed.
 */
async function connectWithRetries(
  path: string,
  settings: ConnectSettings,
  first: FirstAttempt | undefined,
): Promise<Socket | ConnectFailure> {
  const timeout = settings.timeout;
  const signal = settings.signal;
  // The clock is read only once a retry is needed (the first attempt takes microseconds), or
  // up front for a named pipe waited for while busy (see connectOnce).
  let deadline = first === undefined ? busyDeadline(settings) : first.deadline;
  let outcome = first?.error;
  let appeared = false;
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
    deadline ??= performance.now() + timeout;
    const left = deadline - performance.now();
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
    try {
      await sleep(Math.min(settings.retryInterval, left), undefined, { signal });
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
 * A named pipe whose every instance is taken is waited for inside the connect (see
 * connectOnce): until the deadline with waitIfBusy, else not at all. Elsewhere no deadline is
 * needed before a retry.
 */
function busyDeadline(settings: ConnectSettings): number | undefined {
  return USES_NAMED_PIPES && settings.waitIfBusy ? performance.now() + settings.timeout : undefined;
}

/** How long a connect may wait for a busy named pipe: the time left, or 0 for no wait. */
function busyWait(deadline: number | undefined): number {
  return USES_NAMED_PIPES && deadline !== undefined ? Math.max(0, deadline - performance.now()) : 0;
}

/** {@link ConnectOptions} checked, with their defaults. */
interface ConnectSettings {
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

function connectSettings(path: string, options: ConnectOptions | undefined): ConnectSettings {
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

/** {@link SendOptions} checked, with their defaults. */
interface SendSettings {
  readonly maxResponseSize: number;
  readonly timeout: number;
  readonly signal: AbortSignal | undefined;
}

function sendSettings(options: SendOptions | undefined): SendSettings {
  const o = optionsObject(options);
  return {
    maxResponseSize:
      sizeLimit(o.maxResponseSize, 'options.maxResponseSize') ?? Number.POSITIVE_INFINITY,
    timeout: duration(o.timeout, 'options.timeout') ?? 0,
    signal: abortSignal(o.signal),
  };
}

/** Checks that `request` is a {@link Message}. */
function checkMessage(request: unknown): Message {
  if (
    typeof request === 'string' ||
    request instanceof Uint8Array ||
    (typeof request === 'object' &&
      request !== null &&
      (typeof (request as Partial<Iterable<unknown>>)[Symbol.iterator] === 'function' ||
        typeof (request as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] === 'function'))
  ) {
    return request as Message;
  }
  throw invalidArgument(
    'request',
    request,
    'a string, a Uint8Array, or an (async) iterable of them',
  );
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

/**
 * Connects, sends `request`, and returns the whole response: Git's
 * `ipc_client_send_command()`.
 *
 * @example
 * ```ts
 * const answer = await sendCommand('/run/me/app.sock', 'ping', { waitIfBusy: true });
 * ```
 * @throws {@link SimpleIpcError} a connect error (see {@link connect}), an exchange error (see
 *   {@link Connection.send}), or `ERR_IPC_INVALID_ARGUMENT` (before connecting).
 */
export function sendCommand(
  path: string,
  request: Message,
  options: ConnectOptions & SendOptions = {},
): Promise<Buffer> {
  // One Promise for the whole round trip, settled from the socket's events: each async layer
  // (connect, exchange, collect) would add a Promise, a turn of the microtask queue and a
  // look-up of `then` on the value it settled with. Only the retry path is async.
  return new Promise<Buffer>((resolve, reject) => {
    // Everything is checked before connecting: a bad send option must not cost a connection.
    checkMessage(request);
    const send = sendSettings(options);
    const settings = connectSettings(path, options);
    const signal = settings.signal;
    if (signal?.aborted) throw abortError(signal);
    if (settings.checkOwner) {
      // The owner checks are file-system look-ups: the ordinary, asynchronous way.
      connectWithRetries(path, settings, undefined).then((result) => {
        if (result instanceof Socket) exchangeWhole(result, path, request, send, resolve, reject);
        else reject(result.error);
      }, reject);
      return;
    }
    const deadline = busyDeadline(settings);
    connectOnce(path, settings.disallowChdir, busyWait(deadline), signal, (outcome) => {
      if (!(outcome instanceof SimpleIpcError)) {
        exchangeWhole(outcome, path, request, send, resolve, reject);
      } else if (signal?.aborted) {
        reject(abortError(signal));
      } else {
        // The first attempt failed: Git's retry rules, the ordinary way.
        connectWithRetries(path, settings, { error: outcome, deadline }).then((result) => {
          if (result instanceof Socket) exchangeWhole(result, path, request, send, resolve, reject);
          else reject(result.error);
        }, reject);
      }
    });
  });
}

/**
 * Makes one connection attempt; `done` gets the connected Socket or the error, once. A named
 * pipe that is busy is waited for up to `busyWait` ms (see {@link BusyWatch}).
 */
function connectOnce(
  path: string,
  disallowChdir: boolean,
  busyWait: number,
  signal: AbortSignal | undefined,
  done: (outcome: Socket | SimpleIpcError) => void,
): void {
  if (refusal.inject !== undefined) {
    const code = refusal.inject(path);
    if (code !== undefined) {
      done(connectError(injectedError(code, path), path));
      return;
    }
  }
  let socket: Socket;
  try {
    // A Socket made without options, then connected: `net.connect(options)` copies its options
    // object and adds fields to the copy, which on Node 20's V8 gives that copy a hidden class
    // of its own every time, so every property read of the stream set-up misses its cache (what
    // that costs is measured in docs/benchmarks.md, "A Node 20 pitfall").
    socket = withSocketAddress(path, { disallowChdir }, (address) => new Socket().connect(address));
  } catch (err) {
    done(
      err instanceof SimpleIpcError
        ? err
        : new SimpleIpcError(ErrorCode.OTHER, String(err), { cause: err, path }),
    );
    return;
  }
  const busy = USES_NAMED_PIPES ? new BusyWatch(socket, path, busyWait, signal, done) : undefined;
  const onError = (err: Error): void => {
    socket.off('connect', onConnect);
    busy?.settle();
    done(connectError(err, path));
  };
  const onConnect = (): void => {
    socket.off('error', onError);
    busy?.settle();
    done(socket);
  };
  socket.once('error', onError);
  socket.once('connect', onConnect);
}

/**
 * Windows: when every instance of a pipe is taken (ERROR_PIPE_BUSY: a server that is stopping
 * while a conversation runs, or one too slow to re-arm its instances), libuv waits for one in a
 * thread with WaitNamedPipeW for up to 30 s, whatever the caller wanted, and nothing tells us
 * it does. Git waits only with wait-if-busy, and then until its deadline (`ipc-win32.c`).
 * libuv reports any other outcome of the open as soon as its loop next processes requests,
 * which it does before a second turn of setImmediate() after the connect: a connect still
 * pending then (and after `busyWait` ms) is that busy wait, and is ended as not-listening.
 */
class BusyWatch {
  readonly #signal: AbortSignal | undefined;
  readonly #timer: NodeJS.Timeout;
  #immediate: NodeJS.Immediate | undefined;
  readonly #onAbort: () => void;

  constructor(
    socket: Socket,
    path: string,
    busyWait: number,
    signal: AbortSignal | undefined,
    reject: (err: SimpleIpcError) => void,
  ) {
    this.#signal = signal;
    const give = (err: SimpleIpcError): void => {
      this.settle();
      socket.removeAllListeners('connect');
      socket.removeAllListeners('error');
      socket.on('error', noop);
      socket.destroy();
      reject(err);
    };
    const onBusy = (): void => {
      const cause = Object.assign(new Error('every instance of the pipe is busy'), {
        code: 'EBUSY',
      });
      give(
        new SimpleIpcError(
          ErrorCode.NOT_LISTENING,
          `no server listening at '${path}' (its pipe stayed busy)`,
          { cause, path },
        ),
      );
    };
    this.#timer = setTimeout(() => {
      this.#immediate = setImmediate(() => {
        this.#immediate = setImmediate(onBusy);
      });
    }, busyWait);
    this.#onAbort = () => give(abortError(signal!));
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** The connect settled by itself: stop watching. */
  settle(): void {
    clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#signal?.removeEventListener('abort', this.#onAbort);
  }
}

function noop(): void {}

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

function connectError(err: Error, path: string): SimpleIpcError {
  switch (systemCode(err)) {
    case 'ENOENT':
      return new SimpleIpcError(ErrorCode.PATH_NOT_FOUND, `path not found '${path}'`, {
        cause: err,
        path,
      });
    case 'ECONNREFUSED':
    case 'ETIMEDOUT':
    case 'EAGAIN':
    case 'EBUSY':
      return new SimpleIpcError(ErrorCode.NOT_LISTENING, `no server listening at '${path}'`, {
        cause: err,
        path,
      });
    default:
      return new SimpleIpcError(ErrorCode.OTHER, `cannot connect to '${path}': ${err.message}`, {
        cause: err,
        path,
      });
  }
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
 * A connection over `socket`, connected to `path`: the only way to make a {@link Connection}.
 * A module-scoped function (set by the class's static block), not a static of the class, so
 * that the application cannot reach it.
 */
let makeConnection: (socket: Socket, path: string) => Connection;

/**
 * One client connection to a server: it carries exactly one request and one response (the
 * Simple-IPC protocol has no second round trip). Get one from {@link connect}.
 *
 * Use {@link Connection.send} for a whole response, or {@link Connection.stream} to receive a large response in
 * pieces with backpressure. Disposable: `await using conn = await connect(path)`.
 */
export class Connection {
  readonly #socket: Socket;
  readonly #path: string;
  #used = false;
  /** The exchange under way, if any, to fail: send()'s settling function, or stream()'s. */
  #underway: ((err: Error) => void) | Exchange | undefined;

  // Made only by makeConnection: users get connections from connect(). The token keeps
  // JavaScript callers, which TypeScript's `private` does not stop, out too.
  private constructor(token: symbol, socket: Socket, path: string) {
    if (token !== kCreate) {
      throw new SimpleIpcError(ErrorCode.INVALID_ARGUMENT, 'use connect() to make a Connection');
    }
    this.#socket = socket;
    this.#path = path;
  }

  static {
    makeConnection = (socket, path) => new Connection(kCreate, socket, path);
  }

  /** The path this connection was made to. */
  get path(): string {
    return this.#path;
  }

  /** True once the connection is closed or destroyed. */
  get closed(): boolean {
    return this.#socket.destroyed;
  }

  /**
   * Sends `request` and resolves with the whole response, once its flush has arrived.
   *
   * @throws {@link SimpleIpcError} `ERR_IPC_TRUNCATED` if the server hangs up before the flush (never
   *   a short success), `ERR_PKT_LINE_*` on a malformed response, `ERR_IPC_TOO_LARGE` over
   *   `maxResponseSize`, `ERR_IPC_TIMEOUT`, `ERR_IPC_CONNECTION_CLOSED` (the connection failed,
   *   or was closed from this side: {@link Connection.close}, {@link Connection.destroy}),
   *   `ABORT_ERR`, `ERR_IPC_INVALID_ARGUMENT` (a bad request or option, or a second request).
   */
  send(request: Message, options: SendOptions = {}): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      checkMessage(request);
      const send = sendSettings(options);
      this.#claim();
      this.#underway = exchangeWhole(this.#socket, this.#path, request, send, resolve, reject);
    });
  }

  /**
   * Sends `request` and yields the response in pieces as they arrive. Reading pauses the
   * socket while the consumer is behind, so a response of any size takes bounded memory.
   * The iteration throws like {@link Connection.send} if the response ends early or is malformed.
   *
   * @throws {@link SimpleIpcError} `ERR_IPC_INVALID_ARGUMENT` at once for a bad request or option.
   */
  stream(request: Message, options: SendOptions = {}): AsyncIterable<Buffer> {
    checkMessage(request);
    sendSettings(options);
    let inbound: InboundMessage;
    try {
      inbound = this.#exchange(request, options);
    } catch (err) {
      return failedIterable(err);
    }
    // Stopping early hangs up: the rest of the response is not wanted.
    inbound.onReturn = () => this.#socket.destroy();
    return piecesOf(inbound);
  }

  /**
   * Closes the connection now. Idempotent. A {@link Connection.send} or
   * {@link Connection.stream} under way fails with `ERR_IPC_CONNECTION_CLOSED`.
   */
  destroy(): void {
    this.#closedHere();
    this.#socket.destroy();
  }

  /**
   * Closes the connection; resolves once it is closed. Idempotent. A {@link Connection.send}
   * or {@link Connection.stream} under way fails with `ERR_IPC_CONNECTION_CLOSED`.
   */
  close(): Promise<void> {
    const socket = this.#socket;
    if (socket.closed) return Promise.resolve();
    this.#closedHere();
    return new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.destroy();
    });
  }

  /**
   * The application closes the connection: an exchange under way fails as closed by this side,
   * not as the server cutting its response short (ERR_IPC_TRUNCATED blames the server's
   * handler). One that has ended (its socket is destroyed by then) keeps its outcome.
   */
  #closedHere(): void {
    const exchange = this.#underway;
    const socket = this.#socket;
    if (exchange === undefined || socket.destroyed) return;
    this.#underway = undefined;
    const path = this.#path;
    // Failed at 'close', ahead of the exchange's own listener (which would take the hang-up
    // for the server's): the exchange settles when it always did, so a caller that awaits
    // close() before it still has its handler on it in time.
    socket.prependOnceListener('close', () => {
      const err = new SimpleIpcError(
        ErrorCode.CONNECTION_CLOSED,
        `the connection to '${path}' was closed by this side (close(), destroy() or disposal) before its response was complete`,
        { path },
      );
      if (typeof exchange === 'function') exchange(err);
      else exchange.fail(err);
    });
  }

  /** Same as {@link Connection.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #claim(): void {
    if (this.#used) {
      throw new SimpleIpcError(
        ErrorCode.INVALID_ARGUMENT,
        'a connection carries one request; connect again for another',
      );
    }
    this.#used = true;
  }

  #exchange(request: Message, options: SendOptions): InboundMessage {
    checkMessage(request);
    const settings = sendSettings(options);
    this.#claim();
    const socket = this.#socket;
    const inbound = new InboundMessage(
      { maxSize: settings.maxResponseSize, highWaterMark: 1 << 20 },
      socket,
    );
    // A whole request goes out as one buffer; only chunked ones need the streaming writer.
    const whole = typeof request === 'string' || request instanceof Uint8Array;
    const exchange = new Exchange(socket, this.#path, inbound, whole);
    this.#underway = exchange;
    socket.on('data', (chunk: Buffer) => exchange.onData(chunk));
    socket.on('end', () => exchange.onClose());
    socket.on('error', (err: Error) => exchange.onError(err));
    socket.on('close', () => exchange.onClose());
    if (settings.timeout > 0) {
      const idle = new IdleTimeout(settings.timeout, this.#path, (err) => exchange.fail(err));
      exchange.idle = idle;
      inbound.holdWatch = idle;
    }
    if (socket.closed) {
      // Closed already: no event would come to end the response.
      exchange.fail(
        new SimpleIpcError(ErrorCode.CONNECTION_CLOSED, 'the connection is closed', {
          path: this.#path,
        }),
      );
    }
    const signal = settings.signal;
    if (signal !== undefined) {
      if (signal.aborted) exchange.fail(abortError(signal));
      else exchange.watch(signal);
    }
    if (whole) writeWhole(socket, request);
    else {
      writeRequest(
        exchange.outbound!,
        request as Iterable<string | Uint8Array>,
        exchange.idle,
      ).catch((err) => exchange.fail(err as Error));
    }
    return inbound;
  }
}

/**
 * Sends a request on a connected socket and settles with the whole response, by callbacks
 * from the socket's events (no Promise of its own); hangs up whatever happens. Returns what
 * fails the exchange with an error (nothing once it has settled).
 */
function exchangeWhole(
  socket: Socket,
  path: string,
  request: Message,
  settings: SendSettings,
  resolve: (response: Buffer) => void,
  reject: (err: Error) => void,
): (err: Error) => void {
  const response = new WholeResponse(settings.maxResponseSize);
  const signal = settings.signal;
  const whole = typeof request === 'string' || request instanceof Uint8Array;
  const outbound = whole ? undefined : new OutboundMessage(socket);
  let settled = false;
  let onAbort: (() => void) | undefined;
  let idle: IdleTimeout | undefined;
  const finish = (err: Error | undefined): void => {
    if (settled) return;
    settled = true;
    idle?.clear();
    socket.destroy();
    if (onAbort !== undefined) signal!.removeEventListener('abort', onAbort);
    if (err === undefined) {
      resolve(response.take());
      return;
    }
    outbound?.abort(err);
    reject(err);
  };
  socket.on('data', (chunk: Buffer) => {
    idle?.activity();
    let end: number;
    try {
      end = response.feed(chunk);
    } catch (err) {
      finish(err as Error);
      return;
    }
    // The response is complete: the conversation is over, hang up.
    if (end >= 0) finish(undefined);
  });
  socket.on('error', (err: Error) => {
    finish(
      new SimpleIpcError(
        ErrorCode.CONNECTION_CLOSED,
        `connection to '${path}' failed: ${err.message}`,
        { cause: err, path },
      ),
    );
  });
  socket.on('close', () => {
    if (!settled) finish(response.endError(path));
  });
  if (settings.timeout > 0) idle = new IdleTimeout(settings.timeout, path, finish);
  if (socket.closed) {
    // Closed already: no event would come to settle the exchange.
    finish(new SimpleIpcError(ErrorCode.CONNECTION_CLOSED, 'the connection is closed', { path }));
    return finish;
  }
  if (signal !== undefined) {
    if (signal.aborted) {
      finish(abortError(signal));
      return finish;
    }
    onAbort = () => finish(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
  }
  if (whole) writeWhole(socket, request);
  else {
    writeRequest(outbound!, request as Iterable<string | Uint8Array>, idle).catch((err) =>
      finish(err as Error),
    );
  }
  return finish;
}

/**
 * A whole response being received: the decoder, the payload pieces (views of the socket's
 * chunks) and the size cap. Lighter than an {@link InboundMessage}, which also streams.
 */
class WholeResponse implements PieceSink {
  readonly #decoder = new MessageDecoder();
  readonly #maxSize: number;
  #first: Buffer | undefined;
  #more: Buffer[] | undefined;

  constructor(maxSize: number) {
    this.#maxSize = maxSize;
  }

  /** Decodes `chunk`; the offset past the flush once the response is complete, else -1. */
  feed(chunk: Buffer): number {
    return this.#decoder.push(chunk, this);
  }

  /** @internal */
  onPiece(piece: Buffer): void {
    if (this.#decoder.payloadBytes > this.#maxSize) {
      throw new SimpleIpcError(
        ErrorCode.TOO_LARGE,
        `message is larger than the limit of ${this.#maxSize} bytes`,
      );
    }
    if (this.#first === undefined) this.#first = piece;
    else (this.#more ??= []).push(piece);
  }

  /** The error for a connection closed before the flush. */
  endError(path: string): Error {
    try {
      this.#decoder.end();
    } catch (err) {
      // Nothing at all, or a packet cut short: the server went away all the same.
      return isSimpleIpcError(err, ErrorCode.TRUNCATED) ? truncated(path) : (err as Error);
    }
    return truncated(path);
  }

  /** The payload: the single piece itself, or all pieces joined once. */
  take(): Buffer {
    const first = this.#first;
    if (first === undefined) return Buffer.alloc(0);
    const more = this.#more;
    if (more === undefined) return first;
    return Buffer.concat([first, ...more], this.#decoder.payloadBytes);
  }
}

// The state of one request/response on a client socket.
class Exchange {
  readonly socket: Socket;
  readonly path: string;
  readonly inbound: InboundMessage;
  readonly outbound: OutboundMessage | undefined;
  /** The idle timeout, if one was asked for. */
  idle: IdleTimeout | undefined;

  constructor(socket: Socket, path: string, inbound: InboundMessage, whole: boolean) {
    this.socket = socket;
    this.path = path;
    this.inbound = inbound;
    this.outbound = whole ? undefined : new OutboundMessage(socket);
  }

  #signal: AbortSignal | undefined;
  #onAbort: (() => void) | undefined;

  /** Fails the exchange when `signal` aborts, until the exchange is over. */
  watch(signal: AbortSignal): void {
    this.#signal = signal;
    this.#onAbort = () => this.fail(abortError(signal));
    signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  fail(err: Error): void {
    this.idle?.clear();
    this.#unwatch();
    this.inbound.fail(err);
    this.outbound?.abort(err);
    this.socket.destroy();
  }

  onData(chunk: Buffer): void {
    this.idle?.activity();
    const inbound = this.inbound;
    // The response is complete (or broken): the conversation is over, hang up. The signal is
    // let go now, not at 'close', which comes a turn later: the caller may be done by then.
    if (inbound.feed(chunk) >= 0 || inbound.error !== undefined) {
      this.idle?.clear();
      this.#unwatch();
      this.socket.destroy();
    }
  }

  #unwatch(): void {
    if (this.#onAbort !== undefined) this.#signal!.removeEventListener('abort', this.#onAbort);
    this.#onAbort = undefined;
  }

  onError(err: Error): void {
    this.fail(
      new SimpleIpcError(
        ErrorCode.CONNECTION_CLOSED,
        `connection to '${this.path}' failed: ${err.message}`,
        { cause: err, path: this.path },
      ),
    );
  }

  /** The server hung up ('end', or 'close' without one): the response must be complete. */
  onClose(): void {
    this.idle?.clear();
    this.#unwatch();
    // An error the response already had (a malformed packet) stays: the first one wins.
    if (!this.inbound.complete) this.fail(truncated(this.path));
  }
}

/**
 * The idle timeout of an exchange ({@link SendOptions.timeout}): fails it when the server has
 * sent nothing for `ms` while the client waited for it. Time the client holds things up itself
 * does not count: while its consumer has pieces it has not taken (the socket paused for it by
 * backpressure), and while its request's source makes the next chunk. One timer, re-armed with
 * `refresh()`: nothing is allocated per chunk.
 */
class IdleTimeout implements HoldWatch {
  readonly #ms: number;
  readonly #path: string;
  readonly #onTimeout: (err: SimpleIpcError) => void;
  readonly #timer: NodeJS.Timeout;
  /** Reasons the client holds things up itself; the timer counts only while there are none. */
  #holds = 0;
  #cleared = false;

  constructor(ms: number, path: string, onTimeout: (err: SimpleIpcError) => void) {
    this.#ms = ms;
    this.#path = path;
    this.#onTimeout = onTimeout;
    // Unref'd, as a socket's own timeout is: the socket keeps the process alive, not this.
    this.#timer = setTimeout(idleTimeoutFired, ms, this).unref();
  }

  /** Bytes came from the server: its silence starts again. */
  activity(): void {
    if (this.#holds === 0) this.#timer.refresh();
  }

  /** The client holds things up from now on (until {@link release}). */
  hold(): void {
    this.#holds++;
  }

  /** One hold ended: with none left, the client waits for the server again, from now. */
  release(): void {
    // A timer that fired during the hold did nothing; refresh() arms it again.
    if (--this.#holds === 0 && !this.#cleared) this.#timer.refresh();
  }

  /** The exchange is over. */
  clear(): void {
    this.#cleared = true;
    clearTimeout(this.#timer);
  }

  /** @internal The timer fired: a timeout, unless the client was holding things up. */
  fired(): void {
    if (this.#holds > 0 || this.#cleared) return;
    this.#onTimeout(
      new SimpleIpcError(
        ErrorCode.TIMEOUT,
        `the server at '${this.#path}' sent nothing for ${this.#ms} ms`,
        { path: this.#path },
      ),
    );
  }
}

function idleTimeoutFired(idle: IdleTimeout): void {
  idle.fired();
}

/**
 * The server closed the connection before the flush that ends its response. Its own
 * hang-ups come after the flush, so this is almost always its handler failing (a server closes
 * a failed handler's connection without a flush), or the server being cut off.
 */
function truncated(path: string): SimpleIpcError {
  return new SimpleIpcError(
    ErrorCode.TRUNCATED,
    `the server at '${path}' closed the connection before completing its response, which usually means its request handler failed (or the server was stopped)`,
    { path },
  );
}

function failedIterable(err: unknown): AsyncIterable<Buffer> {
  return {
    [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(err) }),
  };
}

// A whole request of fewer bytes than this goes out as one Buffer of its own.
const SHORT_REQUEST = 4096;

// Writes a whole request. A short one is one new Buffer: header, payload and flush (the
// PacketBuilder's object, lists and shared packet cost more than copying a few bytes). A longer
// one is its packets (views of the caller's bytes, no copy, unless short enough to pack), then a
// flush, in one corked burst; a short string is encoded straight into its packet.
function writeWhole(socket: Socket, request: string | Uint8Array): void {
  const text = typeof request === 'string';
  // A string of n UTF-16 units takes at most 3n bytes in UTF-8.
  if (text ? request.length * 3 < SHORT_REQUEST : request.length < SHORT_REQUEST) {
    const size = text ? Buffer.byteLength(request) : request.length;
    if (size > 0) {
      const wire = Buffer.allocUnsafe(size + 8);
      writePacketLength(wire, 0, size + 4);
      if (text) wire.write(request, 4, 'utf8');
      else wire.set(request, 4);
      writePacketLength(wire, size + 4, 0);
      socket.write(wire);
      return;
    }
  }
  const builder = new PacketBuilder();
  if (text) builder.addString(request);
  else builder.add(toBuffer(request));
  builder.addFlush();
  const parts = builder.take();
  if (parts.length === 1) {
    socket.write(parts[0]!);
    return;
  }
  socket.cork();
  for (const part of parts) socket.write(part);
  socket.uncork();
}

async function writeRequest(
  outbound: OutboundMessage,
  request: Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array>,
  idle: IdleTimeout | undefined,
): Promise<void> {
  if (Symbol.asyncIterator in request) {
    // While the request's own source makes its next chunk, the client is not waiting for the
    // server: that time is not the server's silence.
    idle?.hold();
    for await (const chunk of request) {
      idle?.release();
      await outbound.write(chunk);
      idle?.hold();
    }
    idle?.release();
  } else {
    for (const chunk of request) await outbound.write(chunk);
  }
  outbound.end(false);
}

// Frozen, prototype included: an application must not be able to replace what the library
// runs for every connection.
Object.freeze(Connection.prototype);
Object.freeze(Connection);

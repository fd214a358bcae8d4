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
import { abortError, ErrorCode, SimpleIpcError, systemCode } from './errors.js';
import { InboundMessage, OutboundMessage } from './message.js';
import { PacketBuilder, toBuffer, writePacketLength } from './pkt-line.js';

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

/** One of the {@link ActiveState} values. */
export type ActiveState = (typeof ActiveState)[keyof typeof ActiveState];

/** Git's connect retry step and deadline (`ipc-unix-socket.c`). */
export const CONNECT_RETRY_INTERVAL_MS = 50;
/** Git's connect deadline. */
export const CONNECT_TIMEOUT_MS = 1000;

/** Options of {@link tryConnect}, {@link connect} and {@link sendCommand}. */
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
  /** How long to keep retrying, in ms. Default 1000 (Git's). */
  timeout?: number | undefined;
  /** Pause between attempts, in ms. Default 50 (Git's). */
  retryInterval?: number | undefined;
  /** Aborts the wait; the Promise rejects with code `ABORT_ERR`. */
  signal?: AbortSignal | undefined;
}

/** Options of {@link Connection.send}, {@link Connection.stream} and {@link sendCommand}. */
export interface SendOptions {
  /** Most response bytes {@link Connection.send} accepts. Default: no limit. */
  maxResponseSize?: number | undefined;
  /**
   * Fails with `ERR_IPC_TIMEOUT` when the server sends nothing for this many ms while the
   * response is awaited. Default: no timeout (a server may think for as long as it needs).
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
 * Never throws for a state; rejects only when aborted.
 */
export async function getActiveState(
  path: string,
  options: { signal?: AbortSignal | undefined } = {},
): Promise<ActiveState> {
  if (!USES_NAMED_PIPES) {
    try {
      const stats = await lstat(path);
      if (!stats.isSocket()) return ActiveState.INVALID_PATH;
    } catch (err) {
      const code = systemCode(err);
      return code === 'ENOENT' || code === 'ENOTDIR'
        ? ActiveState.NOT_LISTENING
        : ActiveState.INVALID_PATH;
    }
  }
  const result = await tryConnect(path, { signal: options.signal });
  if (result.state === ActiveState.LISTENING) result.connection.destroy();
  return result.state;
}

/**
 * Connects to the server at `path` with Git's retry rules, returning the state instead of
 * throwing when no connection was made:
 * - ENOENT: retry if `waitIfNotFound`, else `path-not-found`;
 * - ECONNREFUSED, ETIMEDOUT, EAGAIN (a full listen backlog): retry if `waitIfBusy`, else
 *   `not-listening`;
 * - anything else: `other-error`; deadline reached: `not-listening`.
 *
 * @throws {SimpleIpcError} `ABORT_ERR` only, when `signal` aborts.
 */
export async function tryConnect(
  path: string,
  options: ConnectOptions = {},
): Promise<ConnectResult> {
  if (options.signal?.aborted) throw abortError(options.signal);
  return connectAfter(path, options, await attempt(path, options));
}

function attempt(path: string, options: ConnectOptions): Promise<Socket | SimpleIpcError> {
  return new Promise((resolve) => connectOnce(path, options.disallowChdir === true, resolve));
}

// Git's retry rules, from the outcome of a first attempt on.
async function connectAfter(
  path: string,
  options: ConnectOptions,
  first: Socket | SimpleIpcError,
): Promise<ConnectResult> {
  const timeout = options.timeout ?? CONNECT_TIMEOUT_MS;
  const signal = options.signal;
  // The clock is read only once a retry is needed (the first attempt takes microseconds).
  let deadline: number | undefined;
  for (let outcome = first; ; outcome = await attempt(path, options)) {
    if (!(outcome instanceof SimpleIpcError)) {
      return { state: ActiveState.LISTENING, connection: new Connection(outcome, path) };
    }
    const state = stateOf(outcome);
    const retry =
      (state === ActiveState.PATH_NOT_FOUND && options.waitIfNotFound === true) ||
      (state === ActiveState.NOT_LISTENING && options.waitIfBusy === true);
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
      const interval = Math.max(1, options.retryInterval ?? CONNECT_RETRY_INTERVAL_MS);
      await sleep(Math.min(interval, left), undefined, { signal });
    } catch {
      throw abortError(signal!);
    }
    if (signal?.aborted) throw abortError(signal);
  }
}

/**
 * Like {@link tryConnect}, but throws when no connection was made.
 *
 * @throws {SimpleIpcError} `ERR_IPC_NOT_LISTENING`, `ERR_IPC_PATH_NOT_FOUND`,
 *   `ERR_IPC_INVALID_PATH`, `ERR_IPC_OTHER` (with the system error as `cause`), or `ABORT_ERR`.
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
 * @throws {SimpleIpcError} a connect error (see {@link connect}), or an exchange error (see
 *   {@link Connection.send}).
 */
export function sendCommand(
  path: string,
  request: Message,
  options: ConnectOptions & SendOptions = {},
): Promise<Buffer> {
  // One Promise for the whole round trip, settled from the socket's events: every async layer
  // (connect, exchange, collect) would add a Promise, a microtask turn and a look-up of `then`
  // on the value it settles with (see docs/benchmarks.md, "Node 24 and 26").
  return new Promise<Buffer>((resolve, reject) => {
    const signal = options.signal;
    if (signal?.aborted) {
      reject(abortError(signal));
      return;
    }
    connectOnce(path, options.disallowChdir === true, (outcome) => {
      if (!(outcome instanceof SimpleIpcError)) {
        exchangeWhole(outcome, path, request, options, resolve, reject);
        return;
      }
      // The first attempt failed: Git's retry rules, the ordinary way.
      connectAfter(path, options, outcome).then((result) => {
        if (result.state !== ActiveState.LISTENING) reject(result.error);
        else result.connection.send(request, options).then(resolve, reject);
      }, reject);
    });
  });
}

// Makes one connection attempt; `done` gets the connected Socket or the error, never both.
function connectOnce(
  path: string,
  disallowChdir: boolean,
  done: (outcome: Socket | SimpleIpcError) => void,
): void {
  let socket: Socket;
  try {
    // A Socket made without options, then connected: `net.connect(options)` copies its options
    // object and adds fields to the copy, which on Node 20's V8 gives that copy a hidden class
    // of its own every time, so every property read of the stream set-up misses its cache
    // (16 to 26 us of CPU per connection here; see docs/benchmarks.md, "A Node 20 pitfall").
    socket = withSocketAddress(path, { disallowChdir }, (address) => new Socket().connect(address));
  } catch (err) {
    done(
      err instanceof SimpleIpcError
        ? err
        : new SimpleIpcError(ErrorCode.OTHER, String(err), { cause: err, path }),
    );
    return;
  }
  const onError = (err: Error): void => {
    socket.off('connect', onConnect);
    done(connectError(err, path));
  };
  const onConnect = (): void => {
    socket.off('error', onError);
    done(socket);
  };
  socket.once('error', onError);
  socket.once('connect', onConnect);
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
 * One client connection to a server: it carries exactly one request and one response (the
 * Simple-IPC protocol has no second round trip). Get one from {@link connect}.
 *
 * Use {@link send} for a whole response, or {@link stream} to receive a large response in
 * pieces with backpressure. Disposable: `await using conn = await connect(path)`.
 */
export class Connection {
  readonly #socket: Socket;
  readonly #path: string;
  #used = false;

  /** @internal Use {@link connect}. */
  constructor(socket: Socket, path: string) {
    this.#socket = socket;
    this.#path = path;
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
   * @throws {SimpleIpcError} `ERR_IPC_TRUNCATED` if the server hangs up before the flush (never
   *   a short success), `ERR_PKT_LINE_*` on a malformed response, `ERR_IPC_TOO_LARGE` over
   *   `maxResponseSize`, `ERR_IPC_TIMEOUT`, `ERR_IPC_CONNECTION_CLOSED`, `ABORT_ERR`.
   */
  send(request: Message, options: SendOptions = {}): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      this.#claim();
      exchangeWhole(this.#socket, this.#path, request, options, resolve, reject);
    });
  }

  /**
   * Sends `request` and yields the response in pieces as they arrive. Reading pauses the
   * socket while the consumer is behind, so a response of any size takes bounded memory.
   * The iteration throws like {@link send} if the response ends early or is malformed.
   */
  stream(request: Message, options: SendOptions = {}): AsyncIterable<Buffer> {
    let inbound: InboundMessage;
    try {
      this.#claim();
      inbound = startExchange(this.#socket, this.#path, request, options);
    } catch (err) {
      return failedIterable(err);
    }
    // Stopping early hangs up: the rest of the response is not wanted.
    inbound.onReturn = () => this.destroy();
    return inbound;
  }

  /** Closes the connection now. Idempotent. */
  destroy(): void {
    this.#socket.destroy();
  }

  /** Closes the connection; resolves once it is closed. Idempotent. */
  close(): Promise<void> {
    const socket = this.#socket;
    if (socket.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.destroy();
    });
  }

  /** Same as {@link close}, for `await using`. */
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
}

// Sends a request and settles with the whole response; hangs up whatever happens.
function exchangeWhole(
  socket: Socket,
  path: string,
  request: Message,
  options: SendOptions,
  resolve: (response: Buffer) => void,
  reject: (err: unknown) => void,
): void {
  let inbound: InboundMessage;
  try {
    inbound = startExchange(socket, path, request, options);
  } catch (err) {
    socket.destroy();
    reject(err);
    return;
  }
  inbound.collect((err, response) => {
    socket.destroy();
    if (err === undefined) resolve(response!);
    else reject(err);
  });
}

// Sets up one request/response on a connected socket: listeners, timeout, abort, the write.
function startExchange(
  socket: Socket,
  path: string,
  request: Message,
  options: SendOptions,
): InboundMessage {
  const inbound = new InboundMessage(
    { maxSize: options.maxResponseSize ?? Number.POSITIVE_INFINITY, highWaterMark: 1 << 20 },
    socket,
  );
  // A whole request goes out as one buffer; only chunked ones need the streaming writer.
  const whole = typeof request === 'string' || request instanceof Uint8Array;
  const exchange = new Exchange(socket, path, inbound, whole);
  socket.on('data', (chunk: Buffer) => exchange.onData(chunk));
  socket.on('end', () => inbound.end());
  socket.on('error', (err: Error) => exchange.onError(err));
  socket.on('close', () => exchange.onClose());
  if (options.timeout !== undefined && options.timeout > 0) {
    socket.setTimeout(options.timeout, () =>
      exchange.fail(
        new SimpleIpcError(
          ErrorCode.TIMEOUT,
          `the server at '${path}' sent nothing for ${options.timeout} ms`,
          { path },
        ),
      ),
    );
  }
  const signal = options.signal;
  if (signal !== undefined) {
    if (signal.aborted) exchange.fail(abortError(signal));
    else {
      const onAbort = (): void => exchange.fail(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      socket.once('close', () => signal.removeEventListener('abort', onAbort));
    }
  }
  if (whole) writeWhole(socket, request);
  else {
    writeRequest(exchange.outbound!, request as Iterable<string | Uint8Array>).catch((err) =>
      exchange.fail(err as Error),
    );
  }
  return inbound;
}

// The state of one request/response on a client socket.
class Exchange {
  readonly socket: Socket;
  readonly path: string;
  readonly inbound: InboundMessage;
  readonly outbound: OutboundMessage | undefined;

  constructor(socket: Socket, path: string, inbound: InboundMessage, whole: boolean) {
    this.socket = socket;
    this.path = path;
    this.inbound = inbound;
    this.outbound = whole ? undefined : new OutboundMessage(socket);
  }

  fail(err: Error): void {
    this.inbound.fail(err);
    this.outbound?.abort(err);
    this.socket.destroy();
  }

  onData(chunk: Buffer): void {
    const inbound = this.inbound;
    // The response is complete (or broken): the conversation is over, hang up.
    if (inbound.feed(chunk) >= 0 || inbound.error !== undefined) this.socket.destroy();
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

  onClose(): void {
    const inbound = this.inbound;
    inbound.end();
    if (!inbound.complete) {
      this.fail(
        new SimpleIpcError(
          ErrorCode.TRUNCATED,
          `the server at '${this.path}' hung up before the end of its response`,
          { path: this.path },
        ),
      );
    }
  }
}

function failedIterable(err: unknown): AsyncIterable<Buffer> {
  return {
    [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(err) }),
  };
}

// A request of fewer bytes than this goes out as one Buffer of its own.
const SHORT_REQUEST = 4096;

// Writes a whole request. A short one is one new Buffer, header, payload and flush (the
// PacketBuilder's shared packet, its lists and views cost more than the copy of a few bytes);
// a longer one its packets (views of the caller's bytes, no copy, unless short enough to pack),
// then a flush, in one corked burst.
function writeWhole(socket: Socket, request: string | Uint8Array): void {
  const text = typeof request === 'string';
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
): Promise<void> {
  if (Symbol.asyncIterator in request) {
    for await (const chunk of request) {
      await outbound.write(chunk);
    }
  } else {
    for (const chunk of request) await outbound.write(chunk);
  }
  outbound.end(false);
}

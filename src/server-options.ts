/**
 * What a server is started with, and the plain types of its contract: its {@link ServerOptions}
 * (and their check, which fills in the defaults), what a handler returns ({@link QUIT}) and
 * writes with ({@link Reply}), what a server counts ({@link ServerStats}) and why it stops
 * ({@link StopReason}). Only what does not name the {@link Server} class lives here, so that
 * the modules below the server (src/conversation.ts) can use it; the handler types, whose
 * context holds the server, are in src/server.ts with it.
 *
 * @module
 */

import { LISTEN_BACKLOG } from './lifecycle.js';
import { LOCK_TIMEOUT_MS } from './lock.js';
import type { TheftReason } from './ownership.js';
import {
  abortSignal,
  boolean,
  callback,
  duration,
  integer,
  optionsObject,
  sizeLimit,
} from './validate.js';

/**
 * Returned by a handler to stop the server (Git's `SIMPLE_IPC_QUIT`). The client that sent the
 * request still gets its response and flush; then the server stops as {@link Server.stop} does.
 */
export const QUIT: unique symbol = Symbol.for('simple-ipc.quit');

/** What a handler may return: nothing, or {@link QUIT}. */
export type HandlerResult = undefined | typeof QUIT;

/**
 * Sends one chunk of the response. Chunks are written in order; packet boundaries carry no
 * meaning. The Promise resolves when more may be written (backpressure), and rejects if the
 * client has gone. A chunk of 4 KiB or more is not copied: leave it unchanged until the
 * Promise resolves.
 */
export type Reply = (chunk: string | Uint8Array) => Promise<void>;

/**
 * Options of {@link startServer}. Each is checked when the server starts: a value of the wrong
 * type or out of range fails with `ERR_IPC_INVALID_ARGUMENT`, naming the option.
 */
export interface ServerOptions {
  /** Concurrent handler runs (Git's `nr_threads`): a whole number of at least 1. Default 8. */
  threads?: number | undefined;
  /**
   * Connections accepted but not yet handled (reading their request, or waiting for a slot);
   * past it a new connection is closed at once. A whole number of at least 1. Default
   * `threads * 100` (Git's).
   */
  queueSize?: number | undefined;
  /**
   * Listen backlog: a whole number from 0 to 2^31 - 1. Default 50 (Git's). With Windows named
   * pipes: how many pipe instances wait for clients (libuv's own default is 4), at most 1024,
   * unless `NODE_PENDING_PIPE_INSTANCES` is set. A Unix kernel caps the backlog too (Linux at
   * `net.core.somaxconn`).
   */
  backlog?: number | undefined;
  /**
   * Largest request for a whole-request handler, in bytes (a whole number, or `Infinity`).
   * Default 64 MiB.
   */
  maxRequestSize?: number | undefined;
  /**
   * For a streaming handler: how much of a request is buffered before the handler is called
   * (it takes a slot then), in bytes (a whole number; 0 calls it on the first bytes). Default
   * 64 KiB.
   */
  streamThreshold?: number | undefined;
  /**
   * A client that sends nothing for this many ms while its request is due is closed (also a
   * client that connects and says nothing). 0 disables. Default 10000.
   */
  requestTimeout?: number | undefined;
  /**
   * A client that takes no response bytes for this many ms while the handler waits to write is
   * closed. 0 disables. Default 30000.
   */
  responseTimeout?: number | undefined;
  /**
   * The most a graceful {@link Server.stop} waits, in ms (0 to 2^31 - 1; 0 is no bound): for
   * running handlers to end, and for their clients to take the rest of their responses. Then
   * the connections still open are cut off, as {@link Server.destroy} does. A connection whose
   * response is complete never holds a stop up. Default 30000.
   */
  stopTimeout?: number | undefined;
  /** Socket file permissions, from 0 to 0o777. Default 0o600: only this user can connect. */
  mode?: number | undefined;
  /** Never change directory to bind a long path. Default false. */
  disallowChdir?: boolean | undefined;
  /** How long start-up waits for `<path>.lock`, in ms. Default 100 (Git's). */
  lockTimeout?: number | undefined;
  /**
   * Stops the server (as {@link Server.stop}) when aborted. The server's listener on it is
   * removed once the server stops, so one signal may serve any number of servers.
   */
  signal?: AbortSignal | undefined;
  /**
   * Called with each handler failure; the server goes on. A handler that throws something
   * that is not an `Error` is reported as a `SimpleIpcError` `ERR_IPC_HANDLER_FAILED` with
   * the thrown value as `cause`. If it throws or rejects itself, that is reported once as a
   * process warning (`ERR_IPC_CALLBACK_FAILED`) and changes nothing else. Default: handler
   * failures are reported as process warnings (`process.emitWarning`, code
   * `ERR_IPC_HANDLER_FAILED`, the failure as `cause`), once per place they come from (the
   * error's name and the first frame of its stack), for at most 10 such places per server:
   * never once per request.
   */
  onHandlerError?: ((error: unknown) => void) | undefined;
  /**
   * Called with a line about each bad client (malformed or oversized request, timeout, accept
   * error). Default: nothing. A server never writes to stderr by itself: a hostile client must
   * not be able to flood the logs. If it throws or rejects, that is reported once as a process
   * warning (`ERR_IPC_CALLBACK_FAILED`) and changes nothing else.
   *
   * It is a subscriber of the `simple-ipc:server:rejected` and `simple-ipc:server:accept-failed`
   * diagnostics channels (`DiagnosticsChannel`), for this server's events, from the time it
   * listens until it has stopped. Kept for compatibility: new code should subscribe to the
   * channels (docs/observability.md).
   */
  debug?: ((message: string) => void) | undefined;
}

/** @internal {@link ServerOptions} checked, with their defaults. */
export interface ServerSettings {
  readonly threads: number;
  readonly queueSize: number;
  readonly backlog: number;
  readonly maxRequestSize: number;
  readonly streamThreshold: number;
  readonly requestTimeout: number;
  readonly responseTimeout: number;
  readonly stopTimeout: number;
  readonly mode: number;
  readonly disallowChdir: boolean;
  readonly lockTimeout: number;
  readonly signal: AbortSignal | undefined;
  readonly onHandlerError: ((error: unknown) => void) | undefined;
  readonly debug: ((message: string) => void) | undefined;
}

/**
 * @internal Checks `options` and fills in the defaults.
 * @throws {@link SimpleIpcError} `ERR_IPC_INVALID_ARGUMENT` naming the first bad option.
 */
export function serverSettings(options: ServerOptions | undefined): ServerSettings {
  const o = optionsObject(options);
  const threads = integer(o.threads, 'options.threads', 1) ?? 8;
  return {
    threads,
    queueSize:
      integer(o.queueSize, 'options.queueSize', 1, Number.MAX_SAFE_INTEGER) ?? threads * 100,
    backlog: integer(o.backlog, 'options.backlog', 0, 2 ** 31 - 1) ?? LISTEN_BACKLOG,
    maxRequestSize: sizeLimit(o.maxRequestSize, 'options.maxRequestSize') ?? 64 * 1024 * 1024,
    streamThreshold:
      integer(o.streamThreshold, 'options.streamThreshold', 0, Number.MAX_SAFE_INTEGER) ??
      64 * 1024,
    requestTimeout: duration(o.requestTimeout, 'options.requestTimeout') ?? 10_000,
    responseTimeout: duration(o.responseTimeout, 'options.responseTimeout') ?? 30_000,
    stopTimeout: duration(o.stopTimeout, 'options.stopTimeout') ?? 30_000,
    mode: integer(o.mode, 'options.mode', 0, 0o777) ?? 0o600,
    disallowChdir: boolean(o.disallowChdir, 'options.disallowChdir') ?? false,
    lockTimeout: duration(o.lockTimeout, 'options.lockTimeout') ?? LOCK_TIMEOUT_MS,
    signal: abortSignal(o.signal),
    onHandlerError: callback(o.onHandlerError, 'options.onHandlerError'),
    debug: callback(o.debug, 'options.debug'),
  };
}

/** Counters of a server's life, from {@link Server.stats}. */
export interface ServerStats {
  /** Connections accepted, probes included. Counted from the start; never goes down. */
  connections: number;
  /**
   * Connections that hung up without sending a byte: liveness probes such as
   * `getActiveState()`, `simple-ipc status` or Git's own probe. Not an error.
   */
  probes: number;
  /** Requests passed to the handler (whole, or as a stream to a `{ stream }` handler). */
  requests: number;
  /** Responses completed with a flush packet: requests answered in full. */
  responses: number;
  /**
   * Connections closed at once, unread, because the queue was full (`queueSize`) or the server
   * was stopping. A client sees its connection closed; a busy server shows it rising.
   */
  rejected: number;
  /**
   * Requests that were malformed (bad pkt-line), larger than `maxRequestSize`, or cut short by
   * their client: the handler was not called. Rising means a client that does not speak the
   * protocol, or one that gives up half-way.
   */
  badRequests: number;
  /**
   * Whole requests that never reached the handler: their client hung up while they waited for
   * a free handler, or the server stopped first (as Git drops its queue).
   */
  dropped: number;
  /**
   * Clients closed for sending nothing for `requestTimeout` ms while their request was due, or
   * for taking no response bytes for `responseTimeout` ms.
   */
  timeouts: number;
  /**
   * Connections closed while their handler ran or their response was being written: the
   * client vanished or timed out, or the server cut it off ({@link Server.destroy}, the end of
   * `stopTimeout`). Their handlers are not counted in `handlerErrors`.
   */
  clientGone: number;
  /**
   * Handlers that threw or rejected (other than because their connection was closed), each
   * also passed to `onHandlerError`. Their clients got no flush, so they see
   * `ERR_IPC_TRUNCATED`. Rising means a bug in the handler.
   */
  handlerErrors: number;
  /** Failed accepts (for example EMFILE: out of file descriptors). The server goes on. */
  acceptErrors: number;
  /**
   * Bytes read from clients, as the sockets counted them (pkt-line framing included), added
   * when each connection closes: open connections are not in it yet.
   */
  bytesIn: number;
  /** Bytes written to clients, counted as `bytesIn` is. */
  bytesOut: number;
  /** Connections waiting now: reading their request, or complete and waiting for a slot. */
  queued: number;
  /** Handlers running now (at most `threads`). */
  running: number;
}

/**
 * Why a server stopped: `requested` by {@link Server.stop}, {@link Server.destroy} or the
 * `signal` option (and so by `stopOnSignals`); `idle`: by `stopWhenIdle`, after its timeout
 * without a connection; `quit`: a handler returned {@link QUIT}; `stolen`: its socket was
 * removed or replaced by someone else; `error`: the listening socket failed.
 */
export type StopReason =
  | { readonly kind: 'requested' }
  | { readonly kind: 'idle' }
  | { readonly kind: 'quit' }
  | { readonly kind: 'stolen'; readonly why: TheftReason }
  | { readonly kind: 'error'; readonly error: unknown };

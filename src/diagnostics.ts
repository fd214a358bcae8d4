/**
 * What simple-ipc tells `node:diagnostics_channel`: two tracing channels, one per unit of work
 * (a client request, a server request), and point channels for a server's life and its
 * refusals and for a client's connect retries. The channel objects are made once, here, at
 * load; every publish is behind `hasSubscribers`, so that a process nobody observes pays one
 * property read per request. `NODE_DEBUG=simple-ipc` is one more subscriber of these channels
 * ({@link debuglog}), and so is a server's `debug` option (src/server.ts): there is no other
 * event path.
 *
 * The names follow the convention of Node core and undici (`undici:request:create`): the
 * package, then the object, then the event. A tracing channel `simple-ipc:client:request` is
 * published, as Node's `tracingChannel()` names them, on
 * `tracing:simple-ipc:client:request:start`, `:end`, `:asyncStart`, `:asyncEnd` and `:error`.
 * docs/observability.md lists every channel, its message and the order of events.
 *
 * Loaded by the client-only entry point too: nothing here may reach the server's modules.
 *
 * @module
 */

import type { AsyncResource as Scope } from 'node:async_hooks';
import type { Channel, TracingChannel } from 'node:diagnostics_channel';

// Taken, not imported: an import of a built-in reads all its exports, and node:util's load
// modules (the argument parser, MIME types) that a client never uses (src/trust.ts says more).
const { AsyncResource } = process.getBuiltinModule('node:async_hooks');
const diagnosticsChannel = process.getBuiltinModule('node:diagnostics_channel');
const { debuglog } = process.getBuiltinModule('node:util');

/**
 * The names of the `node:diagnostics_channel` channels simple-ipc publishes on. Stable: part
 * of the public API. `CLIENT_REQUEST` and `SERVER_REQUEST` are tracing channels (subscribe
 * with `diagnostics_channel.tracingChannel(name)`); the others are plain channels
 * (`diagnostics_channel.channel(name)` or `subscribe(name, fn)`). docs/observability.md says
 * when each fires and what its message holds.
 */
export const DiagnosticsChannel = {
  /** Tracing: one client request, from the connect (or the send) to the response's last byte. */
  CLIENT_REQUEST: 'simple-ipc:client:request',
  /** A connect attempt failed and is retried ({@link ClientRetryMessage}). */
  CLIENT_RETRY: 'simple-ipc:client:retry',
  /** Tracing: one accepted connection of a server, from the accept to its close. */
  SERVER_REQUEST: 'simple-ipc:server:request',
  /**
   * A server listens (`ServerMessage`). The server message types are exported by the main
   * entry, `simple-ipc`, only.
   */
  SERVER_LISTENING: 'simple-ipc:server:listening',
  /** A starting server replaced a dead socket at its path (`ServerMessage`). */
  SERVER_TAKEOVER: 'simple-ipc:server:takeover',
  /** A server's socket was removed or replaced by someone else (`ServerStolenMessage`). */
  SERVER_STOLEN: 'simple-ipc:server:stolen',
  /** A server refused or closed a connection it did not serve (`ServerRejectedMessage`). */
  SERVER_REJECTED: 'simple-ipc:server:rejected',
  /** An accept failed (EMFILE, ...); the server goes on (`ServerErrorMessage`). */
  SERVER_ACCEPT_FAILED: 'simple-ipc:server:accept-failed',
  /** A server begins to stop (`ServerStopMessage`). */
  SERVER_CLOSING: 'simple-ipc:server:closing',
  /** A server has stopped, as its `closed` resolves (`ServerStopMessage`). */
  SERVER_CLOSED: 'simple-ipc:server:closed',
} as const;

// Frozen: subscribers and the library read these names.
Object.freeze(DiagnosticsChannel);

/**
 * The context object of the `simple-ipc:client:request` tracing channel: the same object in
 * each of its events, filled in as the request goes. Never the payload. A subscriber may add
 * properties of its own (a span, say); the library reads none.
 */
export interface ClientRequestContext {
  /** The socket path (or pipe name) connected to. */
  readonly path: string;
  /**
   * `'sendCommand'` (traced from the connect), `'send'` or `'stream'` (a {@link Connection}'s,
   * traced from the call: the connect was before it).
   */
  readonly operation: 'sendCommand' | 'send' | 'stream';
  /** Connect attempts that failed and were retried (`sendCommand` only; else 0). */
  readonly retries: number;
  /** Bytes written to the socket: the request, pkt-line framing included. Set at the end. */
  readonly requestBytes: number;
  /** Bytes read from the socket: the response, framing included. Set at the end. */
  readonly responseBytes: number;
  /** `'ok'` or `'error'`; undefined until the request ends. */
  readonly outcome: 'ok' | 'error' | undefined;
  /** What the request failed with (a {@link SimpleIpcError}), set before `error` fires. */
  readonly error?: unknown;
}

/**
 * How one server conversation ended (the `outcome` of a {@link ServerRequestContext}):
 * - `ok`: the handler ended and its response went out with its flush;
 * - `handler-error`: the handler threw or rejected (the client saw the connection cut);
 * - `client-gone`: the client hung up, or was cut off by the server (`destroy()`, `stopTimeout`),
 *   while its handler ran or its response was written;
 * - `timeout`: the client stalled (`requestTimeout`, `responseTimeout`);
 * - `bad-request`: malformed, too large, or cut short: the handler was not called;
 * - `dropped`: a whole request whose client left, or whose server stopped, before a handler slot
 *   was free;
 * - `rejected`: closed at the accept (the queue was full, or the server stopping);
 * - `probe`: the client hung up without sending a byte (a liveness probe).
 */
export type ServerRequestOutcome =
  | 'ok'
  | 'handler-error'
  | 'client-gone'
  | 'timeout'
  | 'bad-request'
  | 'dropped'
  | 'rejected'
  | 'probe';

/**
 * The context object of the `simple-ipc:server:request` tracing channel: the same object in
 * each of its events, filled in as the conversation goes. Never the payload. A subscriber may
 * add properties of its own; the library reads none.
 */
export interface ServerRequestContext {
  /** The server's socket path (or pipe name). */
  readonly path: string;
  /** Bytes read from the client: the request, pkt-line framing included. Set at the end. */
  readonly requestBytes: number;
  /** Bytes written to the client: the response, framing included. Set at the end. */
  readonly responseBytes: number;
  /**
   * Ms the request waited for a free handler slot, once it was ready; undefined if no
   * handler ran.
   */
  readonly queueWait: number | undefined;
  /** Whether the handler returned {@link QUIT}. */
  readonly quit: boolean;
  /** How it ended; undefined until it has. */
  readonly outcome: ServerRequestOutcome | undefined;
  /** What it failed with, set before `error` fires (the handler's error, a timeout, ...). */
  readonly error?: unknown;
}

/** The message of `simple-ipc:client:retry`: a connect attempt failed and will be retried. */
export interface ClientRetryMessage {
  /** The socket path (or pipe name) connected to. */
  readonly path: string;
  /** Retries so far, this one included (1 for the first). */
  readonly attempt: number;
  /** Why the last attempt failed (`ERR_IPC_NOT_LISTENING`, `ERR_IPC_PATH_NOT_FOUND`). */
  readonly error: unknown;
  /** Ms until the next attempt. */
  readonly delay: number;
}

/** The message of `simple-ipc:server:listening` and `simple-ipc:server:takeover`. */
export interface ServerMessage {
  /** The server's socket path (or pipe name). */
  readonly path: string;
}

/** The message of `simple-ipc:server:stolen`. */
export interface ServerStolenMessage {
  /** The server's socket path (or pipe name). */
  readonly path: string;
  /** What happened to the socket: see {@link describeTheft}. */
  readonly why: unknown;
}

/**
 * Why a server closed a connection it did not serve (`simple-ipc:server:rejected`):
 * `queue-full` and `stopping` at the accept; `too-large`, `malformed` and `cut-short` for a
 * request the handler never saw; `timeout` for a client that stalled (its request, or taking
 * its response).
 */
export type RejectReason =
  'queue-full' | 'stopping' | 'too-large' | 'malformed' | 'cut-short' | 'timeout';

/** The message of `simple-ipc:server:rejected`. */
export interface ServerRejectedMessage {
  /** The server's socket path (or pipe name). */
  readonly path: string;
  /** Why: see {@link RejectReason}. */
  readonly reason: RejectReason;
  /** The error that says why (a {@link SimpleIpcError}). */
  readonly error: unknown;
}

/** The message of `simple-ipc:server:accept-failed`. */
export interface ServerErrorMessage {
  /** The server's socket path (or pipe name). */
  readonly path: string;
  /** The system error. */
  readonly error: unknown;
}

/** The message of `simple-ipc:server:closing` and `simple-ipc:server:closed`. */
export interface ServerStopMessage {
  /** The server's socket path (or pipe name). */
  readonly path: string;
  /** Why the server stops: a {@link StopReason}. */
  readonly reason: unknown;
}

/** @internal What identifies the publishing server in a point event (for `debug`). */
export const kServer = Symbol('server');

/** @internal */
export const clientRequest: TracingChannel<unknown, ClientTrace> =
  diagnosticsChannel.tracingChannel(DiagnosticsChannel.CLIENT_REQUEST);
/** @internal */
export const serverRequest: TracingChannel<unknown, ServerTrace> =
  diagnosticsChannel.tracingChannel(DiagnosticsChannel.SERVER_REQUEST);
/** @internal */
export const clientRetry: Channel = diagnosticsChannel.channel(DiagnosticsChannel.CLIENT_RETRY);
/** @internal */
export const serverListening: Channel = diagnosticsChannel.channel(
  DiagnosticsChannel.SERVER_LISTENING,
);
/** @internal */
export const serverTakeover: Channel = diagnosticsChannel.channel(
  DiagnosticsChannel.SERVER_TAKEOVER,
);
/** @internal */
export const serverStolen: Channel = diagnosticsChannel.channel(DiagnosticsChannel.SERVER_STOLEN);
/** @internal */
export const serverRejected: Channel = diagnosticsChannel.channel(
  DiagnosticsChannel.SERVER_REJECTED,
);
/** @internal */
export const serverAcceptFailed: Channel = diagnosticsChannel.channel(
  DiagnosticsChannel.SERVER_ACCEPT_FAILED,
);
/** @internal */
export const serverClosing: Channel = diagnosticsChannel.channel(DiagnosticsChannel.SERVER_CLOSING);
/** @internal */
export const serverClosed: Channel = diagnosticsChannel.channel(DiagnosticsChannel.SERVER_CLOSED);

/**
 * @internal Whether a tracing channel has a subscriber on any of its five channels. Node
 * (20.13 and later) has `TracingChannel#hasSubscribers`; Bun does not, so there the five are
 * asked.
 */
export const traced: (channel: TracingChannel<unknown, object>) => boolean =
  typeof (clientRequest as { hasSubscribers?: unknown }).hasSubscribers === 'boolean'
    ? (channel) => channel.hasSubscribers
    : (channel) =>
        channel.start.hasSubscribers ||
        channel.end.hasSubscribers ||
        channel.asyncStart.hasSubscribers ||
        channel.asyncEnd.hasSubscribers ||
        channel.error.hasSubscribers;

/**
 * @internal Publishes `start` for `trace` and runs `body` with the stores bound to it applied
 * (so that the socket made in it, and the request's continuation, see them), then `end`.
 */
export let beginClient: (trace: ClientTrace, body: () => void) => void;
/**
 * @internal The request of `trace` ended: publishes `error` (if it failed), `asyncStart`,
 * `asyncEnd`, once, then calls `then` between the last two.
 */
export let settleClient: (trace: ClientTrace, error: unknown, then: () => void) => void;

/**
 * @internal The context of a traced client request ({@link ClientRequestContext}). Made only
 * when someone subscribes; `start` is published by {@link beginClient}.
 */
export class ClientTrace implements ClientRequestContext {
  readonly path: string;
  readonly operation: 'sendCommand' | 'send' | 'stream';
  retries = 0;
  requestBytes = 0;
  responseBytes = 0;
  outcome: 'ok' | 'error' | undefined = undefined;
  error?: unknown;
  /** The async context of the start (bound stores applied), for the request's continuation. */
  #scope: Scope | undefined;
  /** True while {@link begin} runs: a request that ends in it settles after `end`. */
  #beginning = false;
  /** A settle that came while {@link begin} ran (an aborted signal, a closed socket). */
  #settleAfterEnd: (() => void) | undefined;

  constructor(path: string, operation: 'sendCommand' | 'send' | 'stream') {
    this.path = path;
    this.operation = operation;
  }

  static {
    // The library's own handles on a trace; a subscriber, who gets the trace itself as its
    // context, reaches only the documented fields.
    beginClient = (trace, body) => trace.#begin(body);
    settleClient = (trace, error, then) => trace.#settle(error, then);
  }

  /**
   * Publishes `start` and runs `body` with the stores bound to it applied (so that the socket
   * made in it, and the request's continuation, see them), then publishes `end`.
   */
  #begin(body: () => void): void {
    this.#beginning = true;
    try {
      clientRequest.start.runStores(this, () => {
        this.#scope = new AsyncResource(DiagnosticsChannel.CLIENT_REQUEST);
        body();
      });
    } catch (err) {
      // Failed before it was under way (a second request on a connection): as Node's
      // traceSync reports a throw, `error` then `end`, and no asynchronous part.
      this.outcome = 'error';
      this.error = err;
      clientRequest.error.publish(this);
      throw err;
    } finally {
      clientRequest.end.publish(this);
      this.#beginning = false;
      const settle = this.#settleAfterEnd;
      this.#settleAfterEnd = undefined;
      settle?.();
    }
  }

  /** The request ended: publishes `error` (if it failed), `asyncStart`, `asyncEnd`; once. */
  #settle(error: unknown, then: () => void): void {
    if (this.outcome !== undefined) {
      then();
      return;
    }
    if (this.#beginning) {
      // Ended before the call returned: `end` still comes first, as the docs' order says.
      if (this.#settleAfterEnd === undefined)
        this.#settleAfterEnd = () => this.#settle(error, then);
      else then();
      return;
    }
    const scope = this.#scope;
    if (scope === undefined) publishClientEnd(this, error, then);
    else scope.runInAsyncScope(publishClientEnd, undefined, this, error, then);
  }
}

function publishClientEnd(trace: ClientTrace, error: unknown, then: () => void): void {
  if (error !== undefined) {
    trace.outcome = 'error';
    trace.error = error;
    clientRequest.error.publish(trace);
  } else {
    trace.outcome = 'ok';
  }
  clientRequest.asyncStart.publish(trace);
  try {
    then();
  } finally {
    clientRequest.asyncEnd.publish(trace);
  }
}

/**
 * @internal Publishes `start` for `trace` (the stores bound to it applied while the scope is
 * taken), then `end`.
 */
export let beginServer: (trace: ServerTrace) => void;
/**
 * @internal The conversation of `trace` ended: `error` (if `error` is given), `asyncStart`,
 * `asyncEnd`, in the async context of the accept (the socket's 'close' is not: bound stores
 * are seen). Once.
 */
export let settleServer: (
  trace: ServerTrace,
  outcome: ServerRequestOutcome,
  error: unknown,
) => void;
/** @internal The request of `trace` is whole and waits for a handler: the queue wait starts. */
export let requestReady: (trace: ServerTrace) => void;
/**
 * @internal Runs the handler (`run` on `server`, given `conversation`) in the async context of
 * the accept of `trace`, and records how long the request waited for it.
 */
export let runHandler: <S, C>(
  trace: ServerTrace,
  run: (this: S, conversation: C) => void,
  server: S,
  conversation: C,
) => void;
let makeServerScope: (trace: ServerTrace) => void;

/**
 * @internal The context of a traced server conversation ({@link ServerRequestContext}), made
 * at the accept when someone subscribes.
 */
export class ServerTrace implements ServerRequestContext {
  readonly path: string;
  requestBytes = 0;
  responseBytes = 0;
  queueWait: number | undefined = undefined;
  quit = false;
  outcome: ServerRequestOutcome | undefined = undefined;
  error?: unknown;
  /** When the request became ready for a handler (performance.now()). */
  #readyAt = 0;
  /** The async context of the accept (bound stores applied): the handler runs in it. */
  #scope: Scope | undefined;

  constructor(path: string) {
    this.path = path;
  }

  static {
    // The library's own handles on a trace; a subscriber, who gets the trace itself as its
    // context, reaches only the documented fields.
    beginServer = (trace) => {
      serverRequest.start.runStores(trace, makeServerScope, undefined, trace);
      serverRequest.end.publish(trace);
    };
    settleServer = (trace, outcome, error) => {
      if (trace.outcome !== undefined) return;
      trace.outcome = outcome;
      const scope = trace.#scope;
      if (scope === undefined) publishServerEnd(trace, error);
      else scope.runInAsyncScope(publishServerEnd, undefined, trace, error);
    };
    requestReady = (trace) => {
      trace.#readyAt = performance.now();
    };
    runHandler = (trace, run, server, conversation) => {
      trace.queueWait = performance.now() - trace.#readyAt;
      // In the async context of the accept: stores bound to the channel's start are there.
      trace.#scope!.runInAsyncScope(run, server, conversation);
    };
    makeServerScope = (trace) => {
      trace.#scope = new AsyncResource(DiagnosticsChannel.SERVER_REQUEST);
    };
  }
}

function publishServerEnd(trace: ServerTrace, error: unknown): void {
  if (error !== undefined) {
    trace.error = error;
    serverRequest.error.publish(trace);
  }
  serverRequest.asyncStart.publish(trace);
  serverRequest.asyncEnd.publish(trace);
}

// NODE_DEBUG=simple-ipc: one more subscriber of the channels above, written like undici's
// (lib/core/diagnostics.js). Lines begin `SIMPLE-IPC <pid>:` (util.debuglog's prefix).
const log = debuglog('simple-ipc');
if (log.enabled) subscribeDebuglog(log);

function subscribeDebuglog(write: (format: string, ...args: unknown[]) => void): void {
  // What a handler threw is the application's: its getters may throw, and a throw in a
  // subscriber is an uncaught exception.
  const reason = (error: unknown): string => {
    try {
      return error instanceof Error
        ? `${(error as { code?: string }).code ?? error.name}: ${error.message}`
        : String(error);
    } catch {
      return 'an unreadable error';
    }
  };
  diagnosticsChannel.subscribe(DiagnosticsChannel.CLIENT_RETRY, (m) => {
    const message = m as ClientRetryMessage;
    write(
      'client %s: retry %d in %d ms (%s)',
      message.path,
      message.attempt,
      message.delay,
      reason(message.error),
    );
  });
  clientRequest.subscribe({
    start: (c) => write('client %s: %s started', c.path, c.operation),
    end: () => {},
    asyncStart: (c) =>
      write(
        'client %s: %s %s (%d bytes out, %d bytes in, %d retries)%s',
        c.path,
        c.operation,
        c.outcome === 'ok' ? 'done' : 'failed',
        c.requestBytes,
        c.responseBytes,
        c.retries,
        c.outcome === 'ok' ? '' : `: ${reason(c.error)}`,
      ),
    asyncEnd: () => {},
    error: () => {},
  });
  serverRequest.subscribe({
    start: (c) => write('server %s: connection accepted', c.path),
    end: () => {},
    asyncStart: (c) =>
      write(
        'server %s: connection ended: %s (%d bytes in, %d bytes out%s)%s',
        c.path,
        c.outcome,
        c.requestBytes,
        c.responseBytes,
        c.queueWait === undefined ? '' : `, waited ${c.queueWait.toFixed(1)} ms`,
        c.error === undefined ? '' : `: ${reason(c.error)}`,
      ),
    asyncEnd: () => {},
    error: () => {},
  });
  const point = (name: string, text: (m: Record<string, unknown>) => string): void => {
    diagnosticsChannel.subscribe(name, (m) => {
      const message = m as Record<string, unknown>;
      write('server %s: %s', message.path, text(message));
    });
  };
  point(DiagnosticsChannel.SERVER_LISTENING, () => 'listening');
  point(DiagnosticsChannel.SERVER_TAKEOVER, () => 'replaced a dead socket');
  point(DiagnosticsChannel.SERVER_STOLEN, (m) => `socket stolen (${JSON.stringify(m.why)})`);
  point(
    DiagnosticsChannel.SERVER_REJECTED,
    (m) => `rejected (${String(m.reason)}): ${reason(m.error)}`,
  );
  point(DiagnosticsChannel.SERVER_ACCEPT_FAILED, (m) => `accept failed: ${reason(m.error)}`);
  point(DiagnosticsChannel.SERVER_CLOSING, (m) => `closing (${describeStop(m.reason)})`);
  point(DiagnosticsChannel.SERVER_CLOSED, (m) => `closed (${describeStop(m.reason)})`);
}

function describeStop(reason: unknown): string {
  const r = reason as { kind?: string; why?: unknown; error?: unknown } | undefined;
  return r?.kind === 'stolen' ? `stolen: ${JSON.stringify(r.why)}` : String(r?.kind);
}

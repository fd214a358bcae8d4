/**
 * The server side: accept connections, read each request, run the application's handler from a
 * bounded pool, packetize its reply chunks, end with a flush; stop gracefully.
 *
 * Mirrors Git's `compat/simple-ipc/ipc-unix-socket.c` (server half): `nr_threads` concurrent
 * handler runs, a FIFO of `nr_threads * 100` waiting connections, probes dropped quietly, the
 * flush always written after the handler ends (also after QUIT). Unlike Git, a connection takes
 * a handler slot only once its request has arrived, so slow or stalled clients cannot starve
 * the pool, and they are timed out.
 *
 * @module
 */

import type { Server as NetServer, Socket } from 'node:net';
import { isNativeError } from 'node:util/types';
import { ErrorCode, SimpleIpcError } from './errors.js';
import { callObserver, UnobservedFailures } from './guard.js';
import { installSocket, LISTEN_BACKLOG } from './lifecycle.js';
import { LOCK_TIMEOUT_MS } from './lock.js';
import { type InboundLimits, InboundMessage, OutboundMessage, piecesOf } from './message.js';
import { OwnershipWatch, removeIfOurs, type TheftReason } from './ownership.js';
import type { SocketIdentity } from './trust.js';
import {
  abortSignal,
  boolean,
  callback,
  duration,
  integer,
  invalidArgument,
  optionsObject,
  show,
  sizeLimit,
  socketPath,
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

/** What a handler learns about the conversation besides the request. */
export interface RequestContext {
  /** Aborted when the client hangs up or the server is destroyed before the handler ends. */
  readonly signal: AbortSignal;
  /** The server running the handler. */
  readonly server: Server;
}

/**
 * A handler that gets the whole request as one Buffer (at most `maxRequestSize` bytes).
 * It may call `reply` any number of times, or not at all; a rejection or throw closes the
 * connection without a flush, so the client sees an error, never a short answer.
 */
export type RequestHandler = (
  request: Buffer,
  reply: Reply,
  context: RequestContext,
) => HandlerResult | void | Promise<HandlerResult | void>;

/**
 * A handler that reads the request as it arrives, in pieces, for requests of any size in
 * bounded memory. It is called once the request has ended or `streamThreshold` bytes of it
 * have arrived.
 */
export type StreamingRequestHandler = (
  request: AsyncIterable<Buffer>,
  reply: Reply,
  context: RequestContext,
) => HandlerResult | void | Promise<HandlerResult | void>;

/** Either kind of handler: a function for whole requests, `{ stream }` for streamed ones. */
export type Handler = RequestHandler | { readonly stream: StreamingRequestHandler };

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

/**
 * @internal Checks a {@link Handler}: a function, or `{ stream: function }`.
 * @throws {@link SimpleIpcError} `ERR_IPC_INVALID_ARGUMENT`.
 */
export function checkHandler(handler: unknown, name = 'handler'): Handler {
  if (
    typeof handler === 'function' ||
    (typeof handler === 'object' &&
      handler !== null &&
      typeof (handler as { stream?: unknown }).stream === 'function')
  ) {
    return handler as Handler;
  }
  throw invalidArgument(name, handler, 'a function, or { stream: function } for streamed requests');
}

/** Counters of a server's life, from {@link Server.stats}. */
export interface ServerStats {
  /** Connections accepted. */
  connections: number;
  /** Connections that hung up without sending a byte (liveness probes). */
  probes: number;
  /** Requests passed to the handler. */
  requests: number;
  /** Responses completed with a flush. */
  responses: number;
  /** Connections closed at once because the queue was full or the server stopping. */
  rejected: number;
  /** Requests that were malformed, too large or cut short (the handler was not called). */
  badRequests: number;
  /**
   * Whole requests that never reached the handler: their client hung up while they waited for
   * a free handler, or the server stopped first (as Git drops its queue).
   */
  dropped: number;
  /** Clients closed for sending or reading nothing within the timeouts. */
  timeouts: number;
  /**
   * Connections closed while their handler ran or their response was being written: the
   * client vanished or timed out, or the server cut it off ({@link Server.destroy}, the end of
   * `stopTimeout`). Their handlers are not counted in `handlerErrors`.
   */
  clientGone: number;
  /** Handlers that threw or rejected (other than because their connection was closed). */
  handlerErrors: number;
  /** Failed accepts (for example EMFILE: out of file descriptors). The server goes on. */
  acceptErrors: number;
  /**
   * Bytes received on the wire: payloads with their 4-byte pkt-line headers and the flush
   * (a 5-byte request in one packet is 4 + 5 + 4 = 13). Added when a connection closes.
   */
  bytesIn: number;
  /** Bytes sent on the wire, counted as {@link ServerStats.bytesIn} is. */
  bytesOut: number;
  /** Connections waiting now: reading their request, or complete and waiting for a slot. */
  queued: number;
  /** Handlers running now. */
  running: number;
}

/** Why a server stopped: on request, by QUIT, or because its socket was stolen. */
export type StopReason =
  | { readonly kind: 'requested' }
  | { readonly kind: 'quit' }
  | { readonly kind: 'stolen'; readonly why: TheftReason }
  | { readonly kind: 'error'; readonly error: unknown };

enum Phase {
  Reading = 0,
  Waiting = 1,
  Running = 2,
  /** The response is written; waiting for the client to hang up. */
  Finishing = 3,
  Done = 4,
}

/** @internal The other processes of a clustered server, as its first process sees them. */
export interface ServerGroup {
  /** Tells them to stop (gracefully, or at once when `hard`). Repeatable. */
  stop(hard: boolean): void;
  /** Resolves once every one of them has exited. Never rejects. */
  readonly closed: Promise<void>;
}

const kConversation = Symbol('conversation');
const kCreate = Symbol('create');

/**
 * What this module's conversations and the cluster modules use of a {@link Server}: closures
 * over its private members, so that nothing on a Server or on its class names them.
 */
interface ServerInternals {
  make(path: string, handler: Handler, settings: ServerSettings): Server;
  start(server: Server): Promise<void>;
  attach(server: Server, listener: NetServer): void;
  setGroup(server: Server, group: ServerGroup): void;
  listener(server: Server): NetServer | undefined;
  stopFor(server: Server, reason: StopReason): void;
  sweep(server: Server): void;
  tick(server: Server): number;
  requestLimits(server: Server): InboundLimits;
  requestProgress(server: Server, conversation: Conversation): void;
  conversationClosed(server: Server, conversation: Conversation): void;
}

// Set by the static block of Server, which alone can reach its private members.
let internals: ServerInternals;

type TaggedSocket = Socket & { [kConversation]?: Conversation };

/**
 * A Simple-IPC server. Get one from {@link startServer}; stop it with {@link Server.stop} (graceful) or
 * {@link Server.destroy} (now), or `await using server = await startServer(...)`.
 */
export class Server {
  readonly #path: string;
  readonly #handler: RequestHandler | undefined;
  readonly #streamHandler: StreamingRequestHandler | undefined;
  readonly #settings: ServerSettings;
  readonly #threads: number;
  readonly #queueSize: number;
  readonly #maxRequestSize: number;
  readonly #streamThreshold: number;
  // What each request's InboundMessage is made with: the same for every connection.
  readonly #requestLimits: InboundLimits;
  readonly #requestTicks: number;
  readonly #responseTicks: number;
  readonly #onHandlerError: ((error: unknown) => void) | undefined;
  readonly #debug: ((message: string) => void) | undefined;
  /** Made at the first handler failure that no `onHandlerError` observes. */
  #unobserved: UnobservedFailures | undefined;
  /** Our listener on `settings.signal`, until the server stops. */
  #onAbort: (() => void) | undefined;
  /** Bounds a graceful stop ({@link ServerOptions.stopTimeout}). */
  #stopTimer: NodeJS.Timeout | undefined;
  readonly #conversations = new ConversationList();
  readonly #ready: Conversation[] = [];
  #readyHead = 0;
  #running = 0;
  #queued = 0;
  #listener: NetServer | undefined;
  #group: ServerGroup | undefined;
  #identity: SocketIdentity | undefined;
  #watch: OwnershipWatch | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #tick = 0;
  #stopReason: StopReason | undefined;
  #resolveClosed!: () => void;
  #listenerClosed = false;
  #finished = false;
  readonly #stats: ServerStats = {
    connections: 0,
    probes: 0,
    requests: 0,
    responses: 0,
    rejected: 0,
    badRequests: 0,
    timeouts: 0,
    clientGone: 0,
    dropped: 0,
    handlerErrors: 0,
    acceptErrors: 0,
    bytesIn: 0,
    bytesOut: 0,
    queued: 0,
    running: 0,
  };

  /** Resolves once the server has stopped and every conversation has ended. Never rejects. */
  readonly closed: Promise<void>;

  // Made only by makeServer: handlers and users get servers from startServer. The token
  // keeps JavaScript callers, which TypeScript's `private` does not stop, out too.
  private constructor(token: symbol, path: string, handler: Handler, settings: ServerSettings) {
    if (token !== kCreate) {
      throw new SimpleIpcError(ErrorCode.INVALID_ARGUMENT, 'use startServer() to make a Server');
    }
    this.#path = path;
    if (typeof handler === 'function') this.#handler = handler;
    else this.#streamHandler = handler.stream;
    this.#settings = settings;
    this.#threads = settings.threads;
    this.#queueSize = settings.queueSize;
    this.#maxRequestSize = settings.maxRequestSize;
    this.#streamThreshold = settings.streamThreshold;
    this.#requestLimits =
      this.#streamHandler === undefined
        ? { maxSize: this.#maxRequestSize, highWaterMark: Number.POSITIVE_INFINITY }
        : {
            maxSize: Number.POSITIVE_INFINITY,
            // Little is buffered for a request waiting for its handler; once the handler
            // reads, a steady stream flows without pausing at every socket read.
            highWaterMark: Math.max(1, this.#streamThreshold),
            streamingHighWaterMark: Math.max(this.#streamThreshold, STREAMING_HIGH_WATER_MARK),
          };
    this.#requestTicks = ticks(settings.requestTimeout);
    this.#responseTicks = ticks(settings.responseTimeout);
    this.#onHandlerError = settings.onHandlerError;
    this.#debug = settings.debug;
    this.closed = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  // See ServerInternals. A static block can reach the private members; no method is added.
  static {
    internals = {
      make: (path, handler, settings) => new Server(kCreate, path, handler, settings),
      start: (server) => server.#start(),
      attach: (server, listener) => server.#attach(listener),
      setGroup: (server, group) => {
        server.#group = group;
      },
      listener: (server) => server.#listener,
      stopFor: (server, reason) => server.#beginStop(reason),
      sweep: (server) => server.#sweep(),
      tick: (server) => server.#tick,
      requestLimits: (server) => server.#requestLimits,
      requestProgress: (server, conversation) => server.#requestProgress(conversation),
      conversationClosed: (server, conversation) => server.#conversationClosed(conversation),
    };
  }

  /** The path the server listens at. */
  get path(): string {
    return this.#path;
  }

  /** True once {@link Server.stop} or {@link Server.destroy} has been called (or QUIT, or theft). */
  get stopping(): boolean {
    return this.#stopReason !== undefined;
  }

  /** Why the server stopped, once it has. */
  get stopReason(): StopReason | undefined {
    return this.#stopReason;
  }

  /** A snapshot of the server's counters. */
  stats(): ServerStats {
    return { ...this.#stats, queued: this.#queued, running: this.#running };
  }

  /**
   * Stops gracefully: accepts no more connections, closes those whose handler has not
   * started, lets running handlers finish their responses. A connection is waited for until
   * its response is complete and written out to the client's socket, not until the client
   * hangs up. After `stopTimeout` ms (default 30000) whatever is still open is cut off as
   * {@link Server.destroy} does. Idempotent; callable from a handler. Resolves like
   * {@link Server.closed}.
   */
  stop(): Promise<void> {
    this.#beginStop({ kind: 'requested' });
    return this.closed;
  }

  /**
   * Stops now: like {@link Server.stop}, but running conversations are cut off too (their
   * handlers, whose replies then reject, count as `clientGone`, not as handler errors).
   */
  destroy(): Promise<void> {
    this.#beginStop({ kind: 'requested' });
    this.#cutOff();
    return this.closed;
  }

  #cutOff(): void {
    this.#group?.stop(true);
    for (const conversation of this.#conversations.toArray()) conversation.cutOff();
  }

  /** Same as {@link Server.stop}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Installs the socket at the path and starts serving. */
  async #start(): Promise<void> {
    const settings = this.#settings;
    const installed = await installSocket(this.#path, {
      mode: settings.mode,
      backlog: settings.backlog,
      disallowChdir: settings.disallowChdir,
      lockTimeout: settings.lockTimeout,
      onConnection: (socket) => this.#accept(socket),
    });
    this.#identity = installed.identity;
    this.#serve(installed.listener);
    if (installed.identity !== undefined) {
      this.#watch = new OwnershipWatch(this.#path, installed.identity, (why) =>
        this.#beginStop({ kind: 'stolen', why }),
      );
    }
    this.#stopOnAbort(settings.signal);
  }

  /**
   * Serves on a listening socket that another process installed and owns (a process of
   * {@link startClusteredServer}): no lock, no ownership watch, and the socket file is never
   * removed from here.
   */
  #attach(listener: NetServer): void {
    listener.on('connection', (socket: Socket) => this.#accept(socket));
    this.#serve(listener);
  }

  #serve(listener: NetServer): void {
    this.#listener = listener;
    listener.on('close', () => {
      this.#listenerClosed = true;
      this.#maybeFinish();
    });
    // After listen() the only errors are accept errors (EMFILE, ENFILE, ...). libuv keeps
    // accepting once descriptors free up, so they are counted, never fatal.
    listener.on('error', (err) => {
      this.#stats.acceptErrors++;
      if (this.#debug !== undefined) this.#log(`accept failed: ${err.message}`);
    });
    if (this.#requestTicks > 0 || this.#responseTicks > 0) {
      this.#sweeper = setInterval(sweep, TICK_MS, this);
      this.#sweeper.unref();
    }
  }

  #stopOnAbort(signal: AbortSignal | undefined): void {
    if (signal !== undefined) {
      if (signal.aborted) this.#beginStop({ kind: 'requested' });
      else if (this.#stopReason === undefined) {
        // Removed in #beginStop: an application-wide signal outlives many servers.
        this.#onAbort = () => void this.stop();
        signal.addEventListener('abort', this.#onAbort, { once: true });
      }
    }
  }

  /** Gives `line` to the `debug` option (check that there is one before building the line). */
  #log(line: string): void {
    callObserver('options.debug', this.#debug, line);
  }

  /** Called by the sweeper every tick: closes stalled clients. */
  #sweep(): void {
    const tick = ++this.#tick;
    for (const conversation of this.#conversations.toArray()) {
      const phase = conversation.phase;
      const limit =
        phase === Phase.Reading
          ? this.#requestTicks
          : phase === Phase.Finishing || conversation.waitingForDrain
            ? this.#responseTicks
            : 0;
      if (limit > 0 && phase !== Phase.Reading) conversation.noteBytesTaken(tick);
      if (limit > 0 && tick - conversation.activeTick > limit) {
        this.#stats.timeouts++;
        if (this.#debug !== undefined) this.#log('closed a stalled client');
        conversation.fail(
          new SimpleIpcError(ErrorCode.TIMEOUT, 'the client stalled; connection closed'),
        );
      }
    }
  }

  #accept(socket: TaggedSocket): void {
    const stats = this.#stats;
    stats.connections++;
    if (this.#stopReason !== undefined || this.#queued >= this.#queueSize) {
      stats.rejected++;
      socket.on('error', ignore);
      socket.destroy();
      return;
    }
    const conversation = new Conversation(this, socket, this.#tick);
    socket[kConversation] = conversation;
    this.#conversations.add(conversation);
    this.#queued++;
    socket.on('data', socketOnData);
    socket.on('end', socketOnEnd);
    socket.on('error', socketOnError);
    socket.on('close', socketOnClose);
  }

  /** Called as request bytes arrive; dispatches once enough is there. */
  #requestProgress(conversation: Conversation): void {
    const inbound = conversation.inbound;
    if (conversation.phase !== Phase.Reading) return;
    if (inbound.complete || (this.#streamHandler && inbound.size >= this.#streamThreshold)) {
      conversation.phase = Phase.Waiting;
      if (this.#running < this.#threads) this.#run(conversation);
      else this.#ready.push(conversation);
    }
  }

  /** A conversation's socket closed. */
  #conversationClosed(conversation: Conversation): void {
    if (!this.#conversations.delete(conversation)) return;
    const stats = this.#stats;
    stats.bytesIn += conversation.socket.bytesRead;
    stats.bytesOut += conversation.socket.bytesWritten;
    const phase = conversation.phase;
    if (phase === Phase.Reading || phase === Phase.Waiting) {
      this.#queued--;
      if (phase === Phase.Waiting) stats.dropped++;
      else {
        if (!conversation.inbound.started) stats.probes++;
        else if (!conversation.timedOut) {
          stats.badRequests++;
          if (this.#debug !== undefined) {
            const why = conversation.inbound.error?.message ?? 'the client hung up mid-request';
            this.#log(`dropped a bad request: ${why}`);
          }
        }
      }
    }
    conversation.phase = Phase.Done;
    this.#maybeFinish();
  }

  #run(conversation: Conversation): void {
    this.#queued--;
    this.#running++;
    this.#stats.requests++;
    conversation.phase = Phase.Running;
    // The handler sees a context of its own, never the conversation (its socket, its fail()).
    const context = new HandlerContext(this, conversation);
    let result: ReturnType<RequestHandler>;
    try {
      if (this.#handler !== undefined) {
        result = this.#handler(conversation.inbound.takeWhole(), conversation.reply(), context);
      } else {
        result = this.#streamHandler!(
          piecesOf(conversation.inbound),
          conversation.reply(),
          context,
        );
      }
      // A thenable's `then` is the application's code too: a throw from it (or from a getter
      // of it) is the handler failing. Calling back twice counts once (see handlerEnded).
      if (isPromise(result)) {
        result.then(
          (value) => this.#handlerDone(conversation, value),
          (err: unknown) => this.#handlerFailed(conversation, err),
        );
        return;
      }
    } catch (err) {
      this.#handlerFailed(conversation, err);
      return;
    }
    this.#handlerDone(conversation, result);
  }

  #handlerDone(conversation: Conversation, result: unknown): void {
    if (conversation.handlerEnded) return;
    conversation.handlerEnded = true;
    this.#running--;
    if (conversation.clientGone) {
      this.#stats.clientGone++;
    } else if (!conversation.socket.destroyed) {
      this.#stats.responses++;
      conversation.finish();
      // A stop is under way: the response was all that was left to wait for (#beginStop).
      if (this.#stopReason !== undefined) conversation.closeWhenWritten();
    }
    if (result === QUIT) this.#beginStop({ kind: 'quit' });
    this.#pump();
  }

  // Whatever was thrown (also undefined, null or a string), the response is cut off without
  // its flush: the client sees an error, never a short answer taken for a whole one.
  #handlerFailed(conversation: Conversation, thrown: unknown): void {
    if (conversation.handlerEnded) return;
    conversation.handlerEnded = true;
    this.#running--;
    conversation.socket.destroy();
    if (conversation.clientGone) {
      // The handler failed because its client vanished (reply rejected): not its fault.
      this.#stats.clientGone++;
    } else {
      this.#stats.handlerErrors++;
      const error = handlerError(thrown);
      if (this.#onHandlerError !== undefined) {
        callObserver('options.onHandlerError', this.#onHandlerError, error);
      } else {
        // Nobody observes it: report it as Node reports what nobody handled (src/guard.ts).
        (this.#unobserved ??= new UnobservedFailures()).report(error);
      }
    }
    this.#pump();
  }

  #pump(): void {
    const ready = this.#ready;
    while (this.#running < this.#threads && this.#readyHead < ready.length) {
      const next = ready[this.#readyHead++]!;
      if (next.phase === Phase.Waiting && !next.socket.destroyed) this.#run(next);
    }
    if (this.#readyHead === ready.length) {
      ready.length = 0;
      this.#readyHead = 0;
    } else if (this.#readyHead > 1024 && this.#readyHead * 2 > ready.length) {
      ready.splice(0, this.#readyHead);
      this.#readyHead = 0;
    }
  }

  #beginStop(reason: StopReason): void {
    if (this.#stopReason !== undefined) return;
    this.#stopReason = reason;
    const signal = this.#settings.signal;
    if (this.#onAbort !== undefined) signal!.removeEventListener('abort', this.#onAbort);
    this.#onAbort = undefined;
    this.#group?.stop(false);
    this.#watch?.stop();
    const listener = this.#listener;
    if (listener === undefined) this.#listenerClosed = true;
    else listener.close();
    // Connections whose handler has not started are dropped, as Git drops its queue. Those
    // whose response is complete are closed once it is written out, not when their client
    // hangs up (one that never does would hold the stop up for ever); not before: that could
    // cut off bytes still on their way, as the quitting client's (writes to a Windows pipe
    // complete later; its last chunks and flush were lost).
    for (const conversation of this.#conversations.toArray()) {
      const phase = conversation.phase;
      if (phase === Phase.Reading || phase === Phase.Waiting) conversation.socket.destroy();
      else if (phase === Phase.Finishing) conversation.closeWhenWritten();
    }
    this.#ready.length = 0;
    this.#readyHead = 0;
    const bound = this.#settings.stopTimeout;
    if (bound > 0 && this.#conversations.size > 0) {
      // Running handlers and slow readers get this long; then they are cut off. Unref'd: the
      // open connections keep the process alive for as long as there is something to wait for.
      this.#stopTimer = setTimeout(() => this.#cutOff(), bound);
      this.#stopTimer.unref();
    }
    this.#maybeFinish();
  }

  #maybeFinish(): void {
    if (this.#finished || this.#stopReason === undefined) return;
    if (!this.#listenerClosed || this.#conversations.size > 0) return;
    this.#finished = true;
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    if (this.#stopTimer !== undefined) clearTimeout(this.#stopTimer);
    const identity = this.#identity;
    const done =
      identity === undefined ? Promise.resolve(false) : removeIfOurs(this.#path, identity);
    // Neither rejects; if one ever did, closed must still resolve.
    const resolve = (): void => this.#resolveClosed();
    void Promise.all([done, this.#group?.closed]).then(resolve, resolve);
  }
}

/** Bytes of a streamed request queued for its handler before reading pauses. */
const STREAMING_HIGH_WATER_MARK = 1 << 20;

// The sweeper's period. Timeouts are counted in ticks so that a chunk's arrival only stores
// the current tick number: no timer per connection, no clock read per chunk.
const TICK_MS = 250;

function ticks(ms: number): number {
  return ms > 0 ? Math.max(2, Math.ceil(ms / TICK_MS)) : 0;
}

/** What a handler threw, as an Error: itself if it is one, else wrapped (kept as `cause`). */
function handlerError(thrown: unknown): unknown {
  try {
    if (isNativeError(thrown) || thrown instanceof Error) return thrown;
  } catch {
    // A Proxy whose getPrototypeOf throws: not an Error we can vouch for.
  }
  return new SimpleIpcError(
    ErrorCode.HANDLER_FAILED,
    `the handler threw a value that is not an Error: ${show(thrown)}`,
    { cause: thrown },
  );
}

function isPromise(value: unknown): value is Promise<unknown> {
  return typeof (value as Promise<unknown> | undefined)?.then === 'function';
}

function sweep(server: Server): void {
  internals.sweep(server);
}

/**
 * The open conversations, in an array: each knows its index, and leaving moves the last one
 * into its place. Not a Set: on Node 24 a Set that gains and loses an entry per connection kept
 * V8's young generation at its largest (134 MB, against 34 MB with this array, in a benchmark
 * server under 8 clients; docs/benchmarks.md has the figures), probably through the hash
 * tables the Set keeps replacing, which survive until a full collection.
 */
class ConversationList {
  readonly #items: Conversation[] = [];

  get size(): number {
    return this.#items.length;
  }

  add(conversation: Conversation): void {
    conversation.listIndex = this.#items.length;
    this.#items.push(conversation);
  }

  /** Removes `conversation`; false if it was not in the list. */
  delete(conversation: Conversation): boolean {
    const items = this.#items;
    const index = conversation.listIndex;
    if (index < 0 || items[index] !== conversation) return false;
    const last = items.pop()!;
    if (last !== conversation) {
      items[index] = last;
      last.listIndex = index;
    }
    conversation.listIndex = -1;
    return true;
  }

  /** A copy to go through: closing conversations on the way changes the list. */
  toArray(): Conversation[] {
    return this.#items.slice();
  }
}

/** The {@link RequestContext} a handler gets: the server, and the conversation's signal. */
class HandlerContext implements RequestContext {
  readonly server: Server;
  readonly #conversation: Conversation;

  constructor(server: Server, conversation: Conversation) {
    this.server = server;
    this.#conversation = conversation;
  }

  get signal(): AbortSignal {
    return this.#conversation.signal;
  }
}

/** One accepted connection: its request, its response, and where it stands. */
class Conversation {
  readonly server: Server;
  readonly socket: TaggedSocket;
  readonly inbound: InboundMessage;
  #outbound: OutboundMessage | undefined;
  phase: Phase = Phase.Reading;
  activeTick: number;
  timedOut = false;
  /** The socket failed or closed before the handler ended. */
  clientGone = false;
  /** The handler's end has been taken (a thenable may call back more than once). */
  handlerEnded = false;
  #controller: AbortController | undefined;
  /** Response bytes the client had taken at the last sweep. */
  #taken = 0;
  /** Where this conversation is in the server's {@link ConversationList}; -1 once out. */
  listIndex = -1;

  constructor(server: Server, socket: TaggedSocket, tick: number) {
    this.server = server;
    this.socket = socket;
    this.activeTick = tick;
    this.inbound = new InboundMessage(internals.requestLimits(server), socket);
  }

  /** The response writer, made when the handler runs (a probe never needs one). */
  get outbound(): OutboundMessage {
    if (this.#outbound === undefined) this.#outbound = new OutboundMessage(this.socket);
    return this.#outbound;
  }

  /** The handler's `reply`. */
  reply(): Reply {
    const outbound = this.outbound;
    return (chunk) => outbound.write(chunk);
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.socket.destroyed) this.#controller.abort(this.#closedError());
    }
    return this.#controller.signal;
  }

  /** True while a reply waits for the client to take bytes. */
  get waitingForDrain(): boolean {
    return this.socket.writableNeedDrain;
  }

  /**
   * Counts response bytes the client took since the last look as activity: a long response to a
   * client that reads steadily is not a stall, however long it takes in all. Bytes written and
   * not yet taken stay in `writableLength`; the rest of `bytesWritten` has left.
   */
  noteBytesTaken(tick: number): void {
    const socket = this.socket;
    const taken = (socket.bytesWritten ?? 0) - socket.writableLength;
    if (taken !== this.#taken) {
      this.#taken = taken;
      this.activeTick = tick;
    }
  }

  /**
   * The handler ended: write the flush and end our side. The client hangs up once it has read
   * the flush (then Node destroys the socket); one that does not is closed by the sweeper.
   */
  finish(): void {
    this.phase = Phase.Finishing;
    this.outbound.end(true);
    // Reading stopped only if the client sent more after its flush; read on to see it leave.
    if (this.socket.isPaused()) this.socket.resume();
  }

  /**
   * The server is stopping and the response is complete: close once it is written out (then
   * it is in the client's hands), whether or not the client ever hangs up.
   */
  closeWhenWritten(): void {
    const socket = this.socket;
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', socketOnFinish);
  }

  fail(err: SimpleIpcError): void {
    if (err.code === ErrorCode.TIMEOUT) this.timedOut = true;
    // A handler whose client is closed under it (responseTimeout) fails through no fault of its
    // own: its reply rejects, and that is the client gone, not a handler error.
    if (this.phase === Phase.Running) this.clientGone = true;
    this.inbound.fail(err);
    this.socket.destroy();
  }

  /** The server cuts the connection off: destroy(), or a stop that ran out of time. */
  cutOff(): void {
    // A running handler whose connection the server itself closed has not failed: its reply
    // rejects, and that is counted as for a client closed by responseTimeout (clientGone),
    // neither counted nor reported as a handler error.
    if (this.phase === Phase.Running) this.clientGone = true;
    this.socket.destroy();
  }

  closed(): void {
    // An error is built only for someone still waiting: most conversations end complete.
    if (this.phase === Phase.Running || (this.phase !== Phase.Finishing && this.inbound.started)) {
      if (this.phase === Phase.Running) this.clientGone = true;
      const err = this.#closedError();
      this.inbound.fail(err);
      this.#outbound?.abort(err);
      this.#controller?.abort(err);
    }
    internals.conversationClosed(this.server, this);
  }

  #closedError(): SimpleIpcError {
    return new SimpleIpcError(ErrorCode.CONNECTION_CLOSED, 'the client closed the connection');
  }
}

function socketOnData(this: TaggedSocket, chunk: Buffer): void {
  const conversation = this[kConversation]!;
  const server = conversation.server;
  conversation.activeTick = internals.tick(server);
  const inbound = conversation.inbound;
  if (inbound.complete) {
    // Bytes after the flush belong to no message: ignored, and no more are read while the
    // handler runs (reading resumes at the end, to see the client hang up).
    if (conversation.phase !== Phase.Finishing) this.pause();
    return;
  }
  inbound.feed(chunk);
  if (inbound.error !== undefined) {
    // Malformed or too large: close without calling the handler (nothing is written).
    this.destroy();
    return;
  }
  internals.requestProgress(server, conversation);
}

function socketOnEnd(this: TaggedSocket): void {
  const inbound = this[kConversation]!.inbound;
  // A client may half-close after its request; the response still goes out. Before the flush
  // it is a cut-short request, or a probe when nothing came at all (no error is built for a
  // probe: every Git client command makes one).
  if (inbound.started) inbound.end();
  if (!inbound.complete) this.destroy();
}

function socketOnError(this: TaggedSocket): void {
  // EPIPE, ECONNRESET and the like: the client vanished. 'close' follows and accounts for it.
  this[kConversation]!.clientGone = true;
}

function socketOnClose(this: TaggedSocket): void {
  const conversation = this[kConversation]!;
  conversation.closed();
}

function socketOnFinish(this: TaggedSocket): void {
  this.destroy();
}

function ignore(): void {}

/**
 * Starts a Simple-IPC server at `path` and resolves once it is listening.
 *
 * @example
 * ```ts
 * const server = await startServer(path, async (request, reply) => {
 *   if (request.toString() === 'quit') return QUIT;
 *   await reply('pong');
 * }, { threads: 8 });
 * await server.closed;
 * ```
 * @throws {@link SimpleIpcError} `ERR_IPC_INVALID_ARGUMENT` (a bad `path`, `handler` or option,
 *   named in the message), `ERR_IPC_IN_USE` (a server answers at `path`), `ERR_IPC_LOCKED`,
 *   `ERR_IPC_INVALID_PATH` (something that is not a socket is at `path`: it is left alone),
 *   `ERR_IPC_NAME_TOO_LONG`, `ERR_IPC_OTHER`.
 */
export async function startServer(
  path: string,
  handler: Handler,
  options: ServerOptions = {},
): Promise<Server> {
  const server = internals.make(socketPath(path), checkHandler(handler), serverSettings(options));
  await internals.start(server);
  return server;
}

// Frozen, prototypes included: an application must not be able to replace what the library
// runs for every conversation (a handler's context is handed out too).
Object.freeze(Server.prototype);
Object.freeze(Server);
Object.freeze(HandlerContext.prototype);

/**
 * @internal Makes a server that is not serving yet (see {@link startServing},
 * {@link attachListener}). `handler` and `settings` must have been checked
 * ({@link checkHandler}, {@link serverSettings}).
 */
export function makeServer(path: string, handler: Handler, settings: ServerSettings): Server {
  return internals.make(path, handler, settings);
}

/** @internal Installs the socket at the server's path and starts serving. */
export function startServing(server: Server): Promise<void> {
  return internals.start(server);
}

/**
 * @internal Serves on a listening socket that another process installed and owns (a process
 * of {@link startClusteredServer}): no lock, no ownership watch, and the socket file is never
 * removed from here.
 */
export function attachListener(server: Server, listener: NetServer): void {
  internals.attach(server, listener);
}

/**
 * @internal Other processes serving the same socket: told to stop when `server` stops, and
 * waited for before its `closed` resolves.
 */
export function setServerGroup(server: Server, group: ServerGroup): void {
  internals.setGroup(server, group);
}

/** @internal The server's listening socket, once listening. */
export function serverListener(server: Server): NetServer | undefined {
  return internals.listener(server);
}

/** @internal Stops `server` for `reason` (a QUIT or theft seen by another process of its group). */
export function stopServerFor(server: Server, reason: StopReason): void {
  internals.stopFor(server, reason);
}

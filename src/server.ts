/**
 * The {@link Server}: accepts connections, runs the application's handler for each complete
 * request from a bounded pool, times out stalled clients, and stops (gracefully or now);
 * {@link startServer}, and the internal functions the cluster modules drive a Server with.
 * Each connection is a conversation (src/conversation.ts: reading the request, writing the
 * response, the socket's events); the options and the types that do not name the Server are in
 * src/server-options.ts. The handler types stay here: a handler's context holds the Server.
 *
 * Longer than 500 lines for one reason: the Server class (about 500 of them) keeps its state in
 * private members that only its own methods reach, and publishes each change of that state to
 * the diagnostics channels where it happens; spreading those methods over modules would mean
 * handing that state around. What can stand apart does: the conversation, the options, and
 * what the events say (src/server-events.ts).
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
import { Conversation, type ConversationHost, ConversationList, Phase } from './conversation.js';
import {
  kServer,
  type RejectReason,
  serverAcceptFailed,
  serverClosed,
  serverClosing,
  serverListening,
  serverRejected,
  serverRequest,
  serverStolen,
  serverTakeover,
  ServerTrace,
  beginServer,
  requestReady,
  runHandler,
  settleServer,
  traced,
} from './diagnostics.js';
import { ErrorCode, SimpleIpcError } from './errors.js';
import { callObserver, UnobservedFailures } from './guard.js';
import { installSocket } from './lifecycle.js';
import { type InboundLimits, piecesOf } from './inbound-message.js';
import { OwnershipWatch, removeIfOurs } from './ownership.js';
import { badRequestError, rejectReason, settleTrace, subscribeDebug } from './server-events.js';
import {
  type HandlerResult,
  QUIT,
  type Reply,
  type ServerOptions,
  type ServerSettings,
  type ServerStats,
  serverSettings,
  type StopReason,
} from './server-options.js';
import type { SocketIdentity } from './trust.js';
import { invalidArgument, show, socketPath } from './validate.js';

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

/** @internal The other processes of a clustered server, as its first process sees them. */
export interface ServerGroup {
  /** Tells them to stop (gracefully, or at once when `hard`). Repeatable. */
  stop(hard: boolean): void;
  /** Resolves once every one of them has exited. Never rejects. */
  readonly closed: Promise<void>;
}

const kCreate = Symbol('create');

/**
 * What this module's functions and the cluster modules use of a {@link Server}: closures over
 * its private members, so that nothing on a Server or on its class names them. (Conversations
 * use a {@link ConversationHost} of their server's.)
 */
interface ServerInternals {
  make(path: string, handler: Handler, settings: ServerSettings): Server;
  start(server: Server): Promise<void>;
  attach(server: Server, listener: NetServer): void;
  setGroup(server: Server, group: ServerGroup): void;
  listener(server: Server): NetServer | undefined;
  stopFor(server: Server, reason: StopReason): void;
  sweep(server: Server): void;
  pump(server: Server): void;
}

// Set by the static block of Server, which alone can reach its private members.
let internals: ServerInternals;

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
  /** What this server's conversations call back: made once, shared by all of them. */
  readonly #host: ConversationHost;
  readonly #requestTicks: number;
  readonly #responseTicks: number;
  readonly #onHandlerError: ((error: unknown) => void) | undefined;
  readonly #debug: ((message: string) => void) | undefined;
  /** Ends the `debug` option's subscription to the channels, while there is one. */
  #unsubscribeDebug: (() => void) | undefined;
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
  /** Set once the server is set up ({@link Server.#start}): no handler runs before. */
  #started = false;
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
    // What each request's InboundMessage is made with: the same for every connection.
    const requestLimits: InboundLimits =
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
    this.#host = {
      requestLimits,
      tick: () => this.#tick,
      requestProgress: (conversation) => this.#requestProgress(conversation),
      conversationClosed: (conversation) => this.#conversationClosed(conversation),
    };
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
      pump: (server) => server.#pump(),
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
    // Clients can connect as soon as the socket is at the path, a few steps before the start-up
    // is done. Their connections are accepted (counted, read, bounded by queueSize) at once,
    // but no handler runs until the server is set up (see #requestProgress): a request handled
    // earlier could stop a server that has no listener, identity or watch yet.
    const installed = await installSocket(this.#path, {
      mode: settings.mode,
      backlog: settings.backlog,
      disallowChdir: settings.disallowChdir,
      lockTimeout: settings.lockTimeout,
      onConnection: (socket) => this.#accept(socket),
    }).catch((err: unknown) => {
      // Only this user can have connected, at the private name: nothing is served.
      for (const conversation of this.#conversations.toArray()) conversation.socket.destroy();
      throw err;
    });
    this.#identity = installed.identity;
    if (installed.replaced && serverTakeover.hasSubscribers) {
      serverTakeover.publish({ path: this.#path, [kServer]: this });
    }
    try {
      // Takes the listener before anything that can throw: the catch below closes it.
      this.#serve(installed.listener);
      if (installed.identity !== undefined) {
        this.#watch = new OwnershipWatch(this.#path, installed.identity, (why) =>
          this.#beginStop({ kind: 'stolen', why }),
        );
      }
      this.#stopOnAbort(settings.signal);
    } catch (err) {
      // The set-up failed with the socket in place (the signal's addEventListener threw, say):
      // the start fails, and leaves nothing that accepts, holds a connection or lies at the path.
      this.#beginStop({ kind: 'requested' });
      await this.closed;
      throw err;
    }
    this.#started = true;
    // The requests that are complete already run once startServer has resolved, as those that
    // come later do: a handler may use what the application assigns from it.
    if (this.#ready.length > 0) setImmediate(pumpServer, this);
  }

  /**
   * Serves on a listening socket that another process installed and owns (a process of
   * {@link startClusteredServer}): no lock, no ownership watch, and the socket file is never
   * removed from here.
   */
  #attach(listener: NetServer): void {
    this.#started = true;
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
      if (serverAcceptFailed.hasSubscribers) {
        serverAcceptFailed.publish({ path: this.#path, error: err, [kServer]: this });
      }
    });
    if (this.#requestTicks > 0 || this.#responseTicks > 0) {
      this.#sweeper = setInterval(sweep, TICK_MS, this);
      this.#sweeper.unref();
    }
    if (this.#debug !== undefined) this.#unsubscribeDebug = subscribeDebug(this, this.#debug);
    if (serverListening.hasSubscribers)
      serverListening.publish({ path: this.#path, [kServer]: this });
  }

  /** Publishes a `simple-ipc:server:rejected` (check `hasSubscribers` first). */
  #rejected(reason: RejectReason, error: unknown): void {
    serverRejected.publish({ path: this.#path, reason, error, [kServer]: this });
  }

  #stopOnAbort(signal: AbortSignal | undefined): void {
    if (signal !== undefined) {
      if (signal.aborted) this.#beginStop({ kind: 'requested' });
      else if (this.#stopReason === undefined) {
        // Removed in #beginStop: an application-wide signal outlives many servers.
        const onAbort = (): void => void this.stop();
        signal.addEventListener('abort', onAbort, { once: true });
        this.#onAbort = onAbort;
      }
    }
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
        const error = new SimpleIpcError(
          ErrorCode.TIMEOUT,
          'the client stalled; connection closed',
        );
        if (serverRejected.hasSubscribers) this.#rejected('timeout', error);
        conversation.fail(error);
      }
    }
  }

  #accept(socket: Socket): void {
    const stats = this.#stats;
    stats.connections++;
    if (this.#stopReason !== undefined || this.#queued >= this.#queueSize) {
      stats.rejected++;
      socket.on('error', ignore);
      socket.destroy();
      if (serverRejected.hasSubscribers || traced(serverRequest)) this.#rejectedAtAccept();
      return;
    }
    // The conversation takes the socket's events from here on.
    const conversation = new Conversation(this.#host, socket, this.#tick);
    this.#conversations.add(conversation);
    this.#queued++;
    if (traced(serverRequest)) {
      const trace = new ServerTrace(this.#path);
      conversation.trace = trace;
      beginServer(trace);
    }
  }

  /** A connection closed at the accept: its events, for those who subscribe. */
  #rejectedAtAccept(): void {
    const stopping = this.#stopReason !== undefined;
    const error = new SimpleIpcError(
      ErrorCode.REJECTED,
      stopping
        ? 'connection closed at once: the server is stopping'
        : `connection closed at once: ${this.#queued} connections are waiting already (queueSize)`,
    );
    if (serverRejected.hasSubscribers) this.#rejected(stopping ? 'stopping' : 'queue-full', error);
    if (traced(serverRequest)) {
      const trace = new ServerTrace(this.#path);
      beginServer(trace);
      settleServer(trace, 'rejected', error);
    }
  }

  /** Called as request bytes arrive; dispatches once enough is there. */
  #requestProgress(conversation: Conversation): void {
    const inbound = conversation.inbound;
    if (conversation.phase !== Phase.Reading) return;
    if (inbound.complete || (this.#streamHandler && inbound.size >= this.#streamThreshold)) {
      conversation.phase = Phase.Waiting;
      if (conversation.trace !== undefined) requestReady(conversation.trace);
      if (this.#started && this.#running < this.#threads) this.#run(conversation);
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
          if (serverRejected.hasSubscribers) {
            const error = badRequestError(conversation);
            this.#rejected(rejectReason(error), error);
          }
        }
      }
    }
    if (conversation.trace !== undefined) settleTrace(conversation, conversation.trace);
    conversation.phase = Phase.Done;
    this.#maybeFinish();
  }

  #run(conversation: Conversation): void {
    this.#queued--;
    this.#running++;
    this.#stats.requests++;
    conversation.phase = Phase.Running;
    const trace = conversation.trace;
    if (trace === undefined) this.#callHandler(conversation);
    // In the async context of the accept: stores bound to the channel's start are there.
    else runHandler(trace, this.#callHandler, this, conversation);
  }

  #callHandler(conversation: Conversation): void {
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
    if (result === QUIT) {
      if (conversation.trace !== undefined) conversation.trace.quit = true;
      this.#beginStop({ kind: 'quit' });
    }
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
      // Taken as the conversation's outcome when its socket closes (settleTrace, src/server-events.ts).
      if (conversation.trace !== undefined) conversation.trace.error = error;
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
    const onAbort = this.#onAbort;
    this.#onAbort = undefined;
    if (onAbort !== undefined) {
      // Another library's signal is the application's code: a throw from it is reported, and
      // the stop goes on (its listener, if left, calls stop() again, which does nothing).
      const signal = this.#settings.signal!;
      callObserver('options.signal.removeEventListener', () =>
        signal.removeEventListener('abort', onAbort),
      );
    }
    if (reason.kind === 'stolen' && serverStolen.hasSubscribers) {
      serverStolen.publish({ path: this.#path, why: reason.why, [kServer]: this });
    }
    if (serverClosing.hasSubscribers) {
      serverClosing.publish({ path: this.#path, reason, [kServer]: this });
    }
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
    const group = this.#group;
    // The other processes serve on the same socket until they exit, and a socket that answers
    // is never removed (removeIfOurs): it is removed once they have.
    const done =
      identity === undefined
        ? Promise.resolve(false)
        : group === undefined
          ? removeIfOurs(this.#path, identity)
          : group.closed.then(() => removeIfOurs(this.#path, identity));
    // Neither rejects; if one ever did, closed must still resolve.
    const resolve = (): void => {
      this.#unsubscribeDebug?.();
      this.#unsubscribeDebug = undefined;
      if (serverClosed.hasSubscribers) {
        serverClosed.publish({ path: this.#path, reason: this.#stopReason, [kServer]: this });
      }
      this.#resolveClosed();
    };
    void Promise.all([done, group?.closed]).then(resolve, resolve);
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

function pumpServer(server: Server): void {
  internals.pump(server);
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

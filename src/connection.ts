/**
 * The client's connection object, {@link Connection}: one connected socket that carries exactly
 * one request and one response, taken whole ({@link Connection.send}) or in pieces
 * ({@link Connection.stream}), and closed from this side. Only connect.ts makes one, with
 * {@link makeConnection}; the exchange itself is exchange.ts's.
 *
 * @module
 */

import type { Socket } from 'node:net';
import { beginClient, clientRequest, ClientTrace, traced } from './diagnostics.js';
import { abortError, ErrorCode, SimpleIpcError } from './errors.js';
import {
  checkMessage,
  Exchange,
  exchangeWhole,
  IdleTimeout,
  type Message,
  type SendOptions,
  sendSettings,
  writeRequest,
  writeWhole,
} from './exchange.js';
import { InboundMessage, piecesOf } from './inbound-message.js';

const kCreate = Symbol('create');

/**
 * @internal A connection over `socket`, connected to `path`: the only way to make a
 * {@link Connection}, for connect.ts. A module-scoped function (set by the class's static
 * block), not a static of the class, and not exported by index.ts, so that the application
 * cannot reach it; the token it passes stays in this module.
 */
export let makeConnection: (socket: Socket, path: string) => Connection;

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
      if (traced(clientRequest)) {
        const trace = new ClientTrace(this.#path, 'send');
        beginClient(trace, () => {
          // Claimed inside: a second request is traced as stream()'s is (start, error, end).
          this.#claim();
          this.#underway = exchangeWhole(
            this.#socket,
            this.#path,
            request,
            send,
            resolve,
            reject,
            trace,
          );
        });
      } else {
        this.#claim();
        this.#underway = exchangeWhole(this.#socket, this.#path, request, send, resolve, reject);
      }
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
    let inbound!: InboundMessage;
    try {
      if (traced(clientRequest)) {
        const trace = new ClientTrace(this.#path, 'stream');
        beginClient(trace, () => {
          inbound = this.#exchange(request, options, trace);
        });
      } else inbound = this.#exchange(request, options, undefined);
    } catch (err) {
      return failedIterable(err);
    }
    // Stopping early hangs up: the rest of the response is not wanted. As destroy() does, so
    // that the exchange ends as closed by this side, not as the server cutting it short.
    inbound.onReturn = () => this.destroy();
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
        `the connection to '${path}' was closed by this side (close(), destroy(), disposal, or a stream() left early) before its response was complete`,
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

  #exchange(
    request: Message,
    options: SendOptions,
    trace: ClientTrace | undefined,
  ): InboundMessage {
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
    exchange.trace = trace;
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

function failedIterable(err: unknown): AsyncIterable<Buffer> {
  return {
    [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(err) }),
  };
}

// Frozen, prototype included: an application must not be able to replace what the library
// runs for every connection.
Object.freeze(Connection.prototype);
Object.freeze(Connection);

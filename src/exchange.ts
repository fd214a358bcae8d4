/**
 * One exchange on a connected client socket: the request written out (whole, in one write, or
 * chunk by chunk from an iterable), and the response read back whole ({@link exchangeWhole}, for
 * `send()` and `sendCommand()`) or in pieces with backpressure ({@link Exchange}, for
 * `stream()`), under an idle timeout that counts only the server's silence. The request type
 * and the options of an exchange are defined here.
 *
 * @module
 */

import type { Socket } from 'node:net';
import { type ClientTrace, settleClient } from './diagnostics.js';
import { abortError, ErrorCode, isSimpleIpcError, SimpleIpcError } from './errors.js';
import type { HoldWatch, InboundMessage } from './inbound-message.js';
import { OutboundMessage } from './outbound-message.js';
import { PacketBuilder, toBuffer, writePacketLength } from './pkt-line.js';
import { MessageDecoder, type PieceSink } from './pkt-line-decoder.js';
import { abortSignal, duration, invalidArgument, optionsObject, sizeLimit } from './validate.js';

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

/** @internal {@link SendOptions} checked, with their defaults. */
export interface SendSettings {
  readonly maxResponseSize: number;
  readonly timeout: number;
  readonly signal: AbortSignal | undefined;
}

/** @internal Checks {@link SendOptions} and fills in the defaults. */
export function sendSettings(options: SendOptions | undefined): SendSettings {
  const o = optionsObject(options);
  return {
    maxResponseSize:
      sizeLimit(o.maxResponseSize, 'options.maxResponseSize') ?? Number.POSITIVE_INFINITY,
    timeout: duration(o.timeout, 'options.timeout') ?? 0,
    signal: abortSignal(o.signal),
  };
}

/** @internal Checks that `request` is a {@link Message}. */
export function checkMessage(request: unknown): Message {
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
 * @internal Sends a request on a connected socket and settles with the whole response, by callbacks
 * from the socket's events (no Promise of its own); hangs up whatever happens. Returns what
 * fails the exchange with an error (nothing once it has settled).
 */
export function exchangeWhole(
  socket: Socket,
  path: string,
  request: Message,
  settings: SendSettings,
  resolve: (response: Buffer) => void,
  reject: (err: Error) => void,
  trace?: ClientTrace,
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
    if (trace !== undefined) {
      settleTraced(trace, socket, response, err, outbound, resolve, reject);
      return;
    }
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

/** {@link exchangeWhole}'s end when traced: the sizes, then `resolve`/`reject` in the trace. */
function settleTraced(
  trace: ClientTrace,
  socket: Socket,
  response: WholeResponse,
  err: Error | undefined,
  outbound: OutboundMessage | undefined,
  resolve: (response: Buffer) => void,
  reject: (err: Error) => void,
): void {
  trace.requestBytes = socket.bytesWritten ?? 0;
  trace.responseBytes = socket.bytesRead;
  if (err === undefined) {
    const payload = response.take();
    settleClient(trace, undefined, () => resolve(payload));
    return;
  }
  outbound?.abort(err);
  settleClient(trace, err, () => reject(err));
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

/** @internal The state of one request/response on a client socket, streamed. */
export class Exchange {
  readonly socket: Socket;
  readonly path: string;
  readonly inbound: InboundMessage;
  readonly outbound: OutboundMessage | undefined;
  /** The idle timeout, if one was asked for. */
  idle: IdleTimeout | undefined;
  /** Its `simple-ipc:client:request` context, when that channel had a subscriber. */
  trace: ClientTrace | undefined = undefined;

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
    if (this.trace !== undefined) this.#settleTrace(err);
  }

  /** The traced exchange ended (once: later calls change nothing). */
  #settleTrace(err: Error | undefined): void {
    const trace = this.trace!;
    trace.requestBytes = this.socket.bytesWritten ?? 0;
    trace.responseBytes = this.socket.bytesRead;
    settleClient(trace, err, noop);
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
      if (this.trace !== undefined) this.#settleTrace(inbound.error);
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
 * @internal The idle timeout of an exchange ({@link SendOptions.timeout}): fails it when the
 * server has sent nothing for `ms` while the client waited for it. Time the client holds things
 * up itself does not count: while its consumer has pieces it has not taken (the socket paused for
 * it by backpressure), and while its request's source makes the next chunk. One timer, re-armed
 * with `refresh()`: nothing is allocated per chunk.
 */
export class IdleTimeout implements HoldWatch {
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

function noop(): void {}

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

// A whole request of fewer bytes than this goes out as one Buffer of its own.
const SHORT_REQUEST = 4096;

/**
 * @internal Writes a whole request. A short one is one new Buffer: header, payload and flush
 * (the PacketBuilder's object, lists and shared packet cost more than copying a few bytes). A
 * longer one is its packets (views of the caller's bytes, no copy, unless short enough to pack),
 * then a flush, in one corked burst; a short string is encoded straight into its packet.
 */
export function writeWhole(socket: Socket, request: string | Uint8Array): void {
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

/** @internal Writes a request made of chunks, then its flush. */
export async function writeRequest(
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

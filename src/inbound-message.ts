/**
 * The message that arrives on a socket, for the client and the server alike:
 * {@link InboundMessage} decodes it, whole or as a stream of pieces, with backpressure and a
 * size cap. What leaves is src/outbound-message.ts's.
 *
 * @module
 */

import { ErrorCode, SimpleIpcError } from './errors.js';
import { MessageDecoder, type PieceSink } from './pkt-line-decoder.js';

/** What an {@link InboundMessage} calls to stop and restart the flow of bytes. */
export interface FlowControl {
  pause(): void;
  resume(): void;
}

/**
 * Told when an {@link InboundMessage} starts and stops holding pieces its consumer has not
 * taken: the client's idle timeout does not count that time against the server.
 */
export interface HoldWatch {
  hold(): void;
  release(): void;
}

/** Limits of an {@link InboundMessage}. */
export interface InboundLimits {
  /** Most payload bytes accepted; more fails with `ERR_IPC_TOO_LARGE`. */
  maxSize: number;
  /** Bytes queued before the socket is paused, until a streaming consumer iterates. */
  highWaterMark: number;
  /**
   * The high-water mark once a streaming consumer iterates (default: `highWaterMark`). Larger
   * than one socket read, so that a steady stream does not pause and resume at every read.
   */
  streamingHighWaterMark?: number;
}

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
}

/** A `next()` of the piece iterator waiting for a piece or the end. */
interface ResultWaiter {
  resolve(result: IteratorResult<Buffer>): void;
  reject(err: Error): void;
}

/**
 * Who consumes an {@link InboundMessage}: nobody yet; {@link InboundMessage.takeWhole} (took
 * it complete); {@link InboundMessage.whole} (collecting it to the end); or an iterator
 * (streaming it in pieces).
 */
type Consumer = 'none' | 'taken' | 'collecting' | 'streaming';

/**
 * A message being received. Consume it once, either whole ({@link whole}) or as an async
 * iterable of payload pieces (`for await`). The pieces are views of the socket's chunks: no
 * copy is made until {@link whole} joins them once.
 */
export class InboundMessage implements PieceSink, AsyncIterable<Buffer> {
  readonly #decoder = new MessageDecoder();
  readonly #limits: InboundLimits;
  readonly #flow: FlowControl;
  #highWaterMark: number;
  #pieces: Buffer[] = [];
  #queued = 0;
  #paused = false;
  #consumer: Consumer = 'none';
  #error: Error | undefined;
  #waiter: Waiter | undefined;
  #resultWaiters: ResultWaiter[] = [];

  /** @internal */
  constructor(limits: InboundLimits, flow: FlowControl) {
    this.#limits = limits;
    this.#highWaterMark = limits.highWaterMark;
    this.#flow = flow;
  }

  /** Payload bytes received so far. */
  get size(): number {
    return this.#decoder.payloadBytes;
  }

  /** True once the flush that ends the message has arrived. */
  get complete(): boolean {
    return this.#decoder.done;
  }

  /** True once any byte of the message has arrived. */
  get started(): boolean {
    return this.#decoder.started;
  }

  /** The error that ended the message, if any. */
  get error(): Error | undefined {
    return this.#error;
  }

  /**
   * Feeds bytes from the socket.
   * @returns the offset just past the flush if the message ended in `chunk`, -1 otherwise
   *   (also after a failure, which is then in {@link error}).
   */
  feed(chunk: Buffer): number {
    if (this.#error !== undefined) return -1;
    let end: number;
    try {
      end = this.#decoder.push(chunk, this);
    } catch (err) {
      this.fail(err as Error);
      return -1;
    }
    if (end >= 0) this.#wake();
    return end;
  }

  /** @internal Takes one payload piece from the decoder. */
  onPiece(piece: Buffer): void {
    if (this.#decoder.payloadBytes > this.#limits.maxSize) {
      throw new SimpleIpcError(
        ErrorCode.TOO_LARGE,
        `message is larger than the limit of ${this.#limits.maxSize} bytes`,
      );
    }
    // The first piece waiting for the consumer: the consumer holds things up from now on.
    if (this.#pieces.push(piece) === 1) this.holdWatch?.hold();
    this.#queued += piece.length;
    // Until a consumer claims the message, and while a streaming one is behind, the socket
    // is paused past the high-water mark. A whole-message consumer takes everything (its
    // bound is maxSize).
    const consumer = this.#consumer;
    if (this.#queued > this.#highWaterMark && !this.#paused && consumer !== 'collecting') {
      this.#paused = true;
      this.#flow.pause();
    }
    if (consumer === 'streaming') this.#wake();
  }

  /** Declares that no more bytes will come; fails the message if its flush is missing. */
  end(): void {
    if (this.#error !== undefined || this.#decoder.done) return;
    try {
      this.#decoder.end();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /** Ends the message with `err` (the first error wins). */
  fail(err: Error): void {
    if (this.#error !== undefined) return;
    this.#error = err;
    this.#pieces = [];
    this.#queued = 0;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(err);
    const resultWaiters = this.#resultWaiters;
    this.#resultWaiters = [];
    for (const resultWaiter of resultWaiters) resultWaiter.reject(err);
  }

  /**
   * The whole payload as one Buffer, once the flush has arrived.
   * @throws the error that ended the message early.
   */
  async whole(): Promise<Buffer> {
    this.#claim('collecting');
    if (this.#paused) {
      this.#paused = false;
      this.#flow.resume();
    }
    while (!this.#decoder.done) {
      if (this.#error !== undefined) throw this.#error;
      await this.#wait();
    }
    if (this.#error !== undefined) throw this.#error;
    return this.#join();
  }

  /**
   * The whole payload, now. Only for a complete message (see {@link complete}).
   * @throws the error that ended the message, or `ERR_IPC_TRUNCATED` if it is incomplete.
   */
  takeWhole(): Buffer {
    this.#claim('taken');
    if (this.#error !== undefined) throw this.#error;
    if (!this.#decoder.done) {
      throw new SimpleIpcError(ErrorCode.TRUNCATED, 'the message is not complete yet');
    }
    return this.#join();
  }

  // The payload as one Buffer: the single piece itself, or all pieces joined once.
  #join(): Buffer {
    const pieces = this.#pieces;
    this.#pieces = [];
    this.#queued = 0;
    if (pieces.length === 1) return pieces[0]!;
    return Buffer.concat(pieces, this.#decoder.payloadBytes);
  }

  /**
   * Payload pieces as they arrive; the socket is paused while the consumer is behind.
   *
   * A hand-written iterator rather than an async generator: one settled Promise per piece and
   * no generator machinery, which matters at 16,000 pieces per GiB.
   */
  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    this.#claim('streaming');
    this.#highWaterMark = this.#limits.streamingHighWaterMark ?? this.#limits.highWaterMark;
    return new PieceIterator(this);
  }

  /**
   * @internal The iterator's next result: settled at once when a piece or the end is there,
   * else settled by the arrival itself (no second Promise and turn to look again).
   */
  nextResult(): Promise<IteratorResult<Buffer>> {
    let result: IteratorResult<Buffer> | undefined;
    try {
      result = this.#takeResult();
    } catch (err) {
      return Promise.reject(err);
    }
    // Earlier calls still waiting come first (`next()` may be called without awaiting).
    if (result !== undefined && this.#resultWaiters.length === 0) return Promise.resolve(result);
    return new Promise<IteratorResult<Buffer>>((resolve, reject) => {
      this.#resultWaiters.push({ resolve, reject });
      if (result !== undefined) this.#settleResultWaiters(result);
    });
  }

  // The next piece as an iterator result, DONE at the end, undefined when none has arrived.
  #takeResult(): IteratorResult<Buffer> | undefined {
    if (this.#error !== undefined) throw this.#error;
    const piece = this.#pieces.shift();
    if (piece !== undefined) {
      this.#queued -= piece.length;
      if (this.#paused && this.#queued <= this.#highWaterMark / 2) {
        this.#paused = false;
        this.#flow.resume();
      }
      if (this.#pieces.length === 0) this.holdWatch?.release();
      return { done: false, value: piece };
    }
    return this.#decoder.done ? DONE : undefined;
  }

  // Hands results to waiting next() calls in order, starting with `first` if given.
  #settleResultWaiters(first?: IteratorResult<Buffer>): void {
    const waiters = this.#resultWaiters;
    let result = first ?? this.#takeResult();
    while (result !== undefined && waiters.length > 0) {
      waiters.shift()!.resolve(result);
      if (waiters.length > 0) result = this.#takeResult();
    }
  }

  /**
   * @internal Told when pieces start and stop waiting for a streaming consumer (the client's
   * idle timeout). Only for a message consumed by iteration.
   */
  holdWatch: HoldWatch | undefined;

  /** @internal Called when the consumer stops early (`break` in a `for await`). */
  onReturn: (() => void) | undefined;

  #claim(consumer: Exclude<Consumer, 'none'>): void {
    if (this.#consumer !== 'none') {
      throw new SimpleIpcError(
        ErrorCode.INVALID_ARGUMENT,
        `a message can be consumed once (tried again as ${consumer === 'streaming' ? 'stream' : 'whole'})`,
      );
    }
    this.#consumer = consumer;
  }

  #wait(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  #wake(): void {
    // An error is never pending here: fail() settles every waiter itself.
    if (this.#resultWaiters.length > 0) this.#settleResultWaiters();
    const waiter = this.#waiter;
    if (waiter === undefined) return;
    this.#waiter = undefined;
    waiter.resolve();
  }
}

const DONE: IteratorResult<Buffer> = Object.freeze({ done: true, value: undefined });

/**
 * What the application gets to read an {@link InboundMessage} in pieces (a streaming
 * handler's request, the response of `Connection.stream()`): the iterable and nothing else, so
 * that feed(), fail() and the rest stay out of its reach.
 */
class MessagePieces implements AsyncIterable<Buffer> {
  readonly #message: InboundMessage;

  constructor(message: InboundMessage) {
    this.#message = message;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return this.#message[Symbol.asyncIterator]();
  }
}

/** `message` as an async iterable of its payload pieces, for the application. */
export function piecesOf(message: InboundMessage): AsyncIterable<Buffer> {
  return new MessagePieces(message);
}

/** The iterator of an {@link InboundMessage}'s pieces. */
class PieceIterator implements AsyncIterator<Buffer> {
  readonly #message: InboundMessage;

  constructor(message: InboundMessage) {
    this.#message = message;
  }

  next(): Promise<IteratorResult<Buffer>> {
    return this.#message.nextResult();
  }

  return(): Promise<IteratorResult<Buffer>> {
    this.#message.onReturn?.();
    return Promise.resolve(DONE);
  }
}

// Handed to the application: frozen, so that it cannot change what the library runs.
Object.freeze(MessagePieces.prototype);
Object.freeze(PieceIterator.prototype);

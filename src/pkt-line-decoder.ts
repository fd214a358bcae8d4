/**
 * Reading pkt-lines (the format is described in src/pkt-line.ts, which also parses a length
 * field). Two decoders:
 * - {@link PktLineDecoder}: whole packets, as views where they sit in one chunk (general use).
 * - {@link MessageDecoder}: one Simple-IPC message as a stream of payload pieces; packet
 *   boundaries carry no meaning there, so pieces are never copied or joined.
 *
 * @module
 */

import { ErrorCode, SimpleIpcError } from './errors.js';
import { parsePacketLength, toBuffer } from './pkt-line.js';
import { invalidArgument } from './validate.js';

/** A decoded packet: data (a view of its payload) or one of the three special packets. */
export type Packet =
  | { readonly kind: 'data'; readonly payload: Buffer }
  | { readonly kind: 'flush' }
  | { readonly kind: 'delim' }
  | { readonly kind: 'response-end' };

const FLUSH: Packet = Object.freeze({ kind: 'flush' });
const DELIM: Packet = Object.freeze({ kind: 'delim' });
const RESPONSE_END: Packet = Object.freeze({ kind: 'response-end' });

/**
 * Streaming decoder of whole packets, for any pkt-line stream (Simple-IPC or Git protocol).
 *
 * Feed chunks with {@link PktLineDecoder.push}, take packets with {@link PktLineDecoder.next} until it returns undefined.
 * A payload is a view into the pushed chunk when it sits in one chunk, and a copy only when it
 * spans chunks. It holds only what was pushed and not yet returned: a caller that takes every
 * packet after each push holds at most one partial packet (under 65520 bytes).
 *
 * @example
 * ```ts
 * const decoder = new PktLineDecoder();
 * decoder.push(chunk);
 * for (let p = decoder.next(); p !== undefined; p = decoder.next()) console.log(p.kind);
 * ```
 */
export class PktLineDecoder {
  // Pushed chunks not yet consumed start at #chunks[#head]: an index, not shift(), so that a
  // packet trickling in one byte per chunk costs linear time, not quadratic.
  #chunks: Buffer[] = [];
  #head = 0;
  #buffered = 0;
  // Length of the packet whose header has been read but whose payload is incomplete, or -1.
  #pending = -1;
  #failed: SimpleIpcError | undefined;

  /** Bytes pushed but not yet returned as packets. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  /** Adds bytes from the stream. */
  push(chunk: Uint8Array): void {
    if (!(chunk instanceof Uint8Array)) throw invalidArgument('chunk', chunk, 'a Uint8Array');
    if (chunk.length === 0) return;
    this.#chunks.push(toBuffer(chunk));
    this.#buffered += chunk.length;
  }

  /**
   * Returns the next whole packet, or undefined when more bytes are needed.
   *
   * @throws {@link SimpleIpcError} `ERR_PKT_LINE_LENGTH` / `ERR_PKT_LINE_TOO_LONG` on a bad length;
   *   the decoder stays failed and throws the same error again.
   */
  next(): Packet | undefined {
    if (this.#failed !== undefined) throw this.#failed;
    let length = this.#pending;
    if (length < 0) {
      if (this.#buffered < 4) return undefined;
      try {
        length = parsePacketLength(this.#peek(4), 0);
      } catch (err) {
        this.#failed = err as SimpleIpcError;
        throw err;
      }
      if (length < 4) {
        this.#consume(4);
        return length === 0 ? FLUSH : length === 1 ? DELIM : RESPONSE_END;
      }
    }
    if (this.#buffered < length) {
      this.#pending = length;
      return undefined;
    }
    this.#pending = -1;
    const packet = this.#peek(length);
    this.#consume(length);
    return { kind: 'data', payload: packet.subarray(4) };
  }

  /**
   * Declares the end of the stream.
   *
   * @throws {@link SimpleIpcError} `ERR_IPC_TRUNCATED` when part of a packet is still buffered.
   */
  end(): void {
    if (this.#buffered > 0) {
      throw new SimpleIpcError(
        ErrorCode.TRUNCATED,
        `the stream ended inside a packet (${this.#buffered} bytes left over)`,
      );
    }
  }

  // The first `n` buffered bytes, as a view when they sit in the first chunk.
  #peek(n: number): Buffer {
    const chunks = this.#chunks;
    const first = chunks[this.#head]!;
    if (first.length >= n) return first.subarray(0, n);
    const joined = Buffer.allocUnsafe(n);
    let filled = 0;
    for (let i = this.#head; filled < n; i++) {
      const chunk = chunks[i]!;
      filled += chunk.copy(joined, filled, 0, Math.min(chunk.length, n - filled));
    }
    return joined;
  }

  #consume(n: number): void {
    this.#buffered -= n;
    const chunks = this.#chunks;
    while (n > 0) {
      const first = chunks[this.#head]!;
      if (first.length <= n) {
        chunks[this.#head++] = EMPTY;
        n -= first.length;
      } else {
        chunks[this.#head] = first.subarray(n);
        n = 0;
      }
    }
    if (this.#head === chunks.length) {
      chunks.length = 0;
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= chunks.length) {
      chunks.splice(0, this.#head);
      this.#head = 0;
    }
  }
}

const EMPTY = Buffer.alloc(0);

/** Receives the payload pieces of a message from a {@link MessageDecoder}. */
export interface PieceSink {
  /** Called with each piece of payload, a view into the pushed chunk (never empty). */
  onPiece(piece: Buffer): void;
}

/**
 * Decodes ONE Simple-IPC message (data packets up to a flush) as a stream of payload pieces.
 *
 * Packet boundaries carry no meaning in Simple-IPC, so a piece is whatever part of a payload
 * sits in the pushed chunk: nothing is ever copied or joined. The state machine keeps only a
 * partial length field (at most 3 bytes) between chunks.
 *
 * Git's empty data packet `0004` is accepted and carries nothing (the reference reader would
 * stop there; no reference writer sends one). Delim and response-end are protocol errors.
 */
export class MessageDecoder {
  // A length field split across chunks; made only when one is (most messages never need it).
  #header: Buffer | undefined;
  #headerBytes = 0;
  #remaining = 0;
  #done = false;
  #started = false;
  #failed: Error | undefined;
  /** Payload bytes decoded so far. */
  payloadBytes = 0;

  /** True once the flush has been decoded. */
  get done(): boolean {
    return this.#done;
  }

  /** True once any byte has been pushed. */
  get started(): boolean {
    return this.#started;
  }

  /**
   * Decodes `chunk`, passing payload pieces to `sink`.
   *
   * @returns the offset in `chunk` just past the flush when the message ended in it, or -1 when
   *   more bytes are needed (0 once the message has ended). Bytes after the flush are not the
   *   message's.
   * @throws {@link SimpleIpcError} `ERR_PKT_LINE_LENGTH` / `ERR_PKT_LINE_TOO_LONG` on a bad length,
   *   `ERR_PKT_LINE_UNEXPECTED` on a delim or response-end packet; what `sink` throws. The
   *   decoder stays failed and throws the same error again.
   */
  push(chunk: Buffer, sink: PieceSink): number {
    if (!Buffer.isBuffer(chunk)) throw invalidArgument('chunk', chunk, 'a Buffer');
    if (typeof sink?.onPiece !== 'function') {
      throw invalidArgument('sink', sink, 'an object with an onPiece function');
    }
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#done) return 0;
    try {
      return this.#decode(chunk, sink);
    } catch (err) {
      // The state is unusable after a bad length (or a sink that threw mid-chunk): the next
      // bytes would be read from the wrong place, so every later call fails the same way.
      this.#failed = err as Error;
      throw err;
    }
  }

  #decode(chunk: Buffer, sink: PieceSink): number {
    const size = chunk.length;
    if (size > 0) this.#started = true;
    let pos = 0;
    while (pos < size) {
      if (this.#remaining > 0) {
        const end = Math.min(size, pos + this.#remaining);
        this.#remaining -= end - pos;
        this.payloadBytes += end - pos;
        sink.onPiece(pos === 0 && end === size ? chunk : chunk.subarray(pos, end));
        pos = end;
        continue;
      }
      let length: number;
      if (this.#headerBytes === 0 && size - pos >= 4) {
        length = parsePacketLength(chunk, pos);
        pos += 4;
      } else {
        const take = Math.min(4 - this.#headerBytes, size - pos);
        const header = (this.#header ??= Buffer.alloc(4));
        chunk.copy(header, this.#headerBytes, pos, pos + take);
        this.#headerBytes += take;
        pos += take;
        if (this.#headerBytes < 4) break;
        this.#headerBytes = 0;
        length = parsePacketLength(header, 0);
      }
      if (length === 0) {
        this.#done = true;
        return pos;
      }
      if (length < 4) {
        throw new SimpleIpcError(
          ErrorCode.PKT_LINE_UNEXPECTED,
          `protocol error: unexpected ${length === 1 ? 'delim' : 'response-end'} packet inside a message`,
        );
      }
      this.#remaining = length - 4;
    }
    return -1;
  }

  /**
   * Declares the end of the stream.
   *
   * @throws {@link SimpleIpcError} `ERR_IPC_TRUNCATED` when the flush has not been seen, or the error
   *   that failed the decoder.
   */
  end(): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (!this.#done) {
      throw new SimpleIpcError(
        ErrorCode.TRUNCATED,
        this.#started
          ? 'the peer hung up before the end of the message (no flush packet)'
          : 'the peer hung up without sending a message',
      );
    }
  }
}

// The classes are frozen, prototypes included: the library's own I/O runs through them, and
// an application that could replace a method would change what every server and client reads.
Object.freeze(PktLineDecoder.prototype);
Object.freeze(PktLineDecoder);
Object.freeze(MessageDecoder.prototype);
Object.freeze(MessageDecoder);

/**
 * The message that leaves on a socket, for the client and the server alike:
 * {@link OutboundMessage} packetizes and writes it (coalescing small chunks, honouring
 * `write()` returning false). What arrives is src/inbound-message.ts's.
 *
 * @module
 */

import type { Socket } from 'node:net';
import { ErrorCode, SimpleIpcError } from './errors.js';
import { PacketBuilder, toBuffer } from './pkt-line.js';
import { invalidArgument } from './validate.js';

const RESOLVED: Promise<void> = Promise.resolve();

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
}

/** Above this many packetized bytes, queued small chunks are written at once. */
const WRITE_AT = 64 * 1024;

/**
 * A message being sent on a socket. {@link write} packetizes a chunk and returns a Promise that
 * resolves when more may be written; small chunks are copied into shared packets and written
 * together once the current burst of calls ends (a `process.nextTick`), so many tiny chunks cost
 * few packets and few system calls without delaying anything; a chunk of 4 KiB or more is
 * referenced, not copied, and its Promise resolves once the socket has taken its bytes.
 */
export class OutboundMessage {
  readonly #socket: Socket;
  readonly #builder = new PacketBuilder();
  #scheduled = false;
  #ended = false;
  #drainWaiters: Waiter[] = [];

  /** @internal */
  constructor(socket: Socket) {
    this.#socket = socket;
  }

  /** True once {@link end} was called. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Adds `data` to the message.
   * @returns a Promise that resolves when the caller may write more; it rejects if the socket
   *   fails or closes first, or with `ERR_IPC_INVALID_ARGUMENT` if `data` is neither a string
   *   nor a Uint8Array.
   */
  write(data: string | Uint8Array): Promise<void> {
    if (this.#ended) {
      return rejected(
        new SimpleIpcError(ErrorCode.CONNECTION_CLOSED, 'the message has already ended'),
      );
    }
    const socket = this.#socket;
    if (socket.destroyed) {
      return rejected(new SimpleIpcError(ErrorCode.CONNECTION_CLOSED, 'the connection is closed'));
    }
    const builder = this.#builder;
    if (typeof data === 'string') {
      builder.addString(data);
      return this.#afterSmall();
    }
    if (!(data instanceof Uint8Array)) {
      return rejected(invalidArgument('chunk', data, 'a string or a Uint8Array'));
    }
    const buffer = toBuffer(data);
    if (buffer.length >= 4096) {
      // Referenced, not copied: write now, and let the caller go on only once the socket has
      // taken the bytes, so that reusing its buffer afterwards is safe.
      builder.add(buffer);
      return this.#writeOut(true);
    }
    builder.add(buffer);
    return this.#afterSmall();
  }

  // After copying a small chunk: write once enough is queued, else soon. "Soon" is a
  // process.nextTick scheduled from a microtask, so that it runs after the handler's own
  // microtasks: a handler that replies and returns gets its reply and the flush in one write.
  #afterSmall(): Promise<void> {
    if (this.#builder.pendingBytes >= WRITE_AT) return this.#writeOut(false);
    if (!this.#scheduled) {
      this.#scheduled = true;
      void Promise.resolve(this).then(scheduleFlush);
    }
    return this.#socket.writableNeedDrain ? this.#drained() : RESOLVED;
  }

  /**
   * Ends the message with a flush, writing everything still queued in the same call.
   *
   * @param closeSocket - also end the socket (`socket.end()`), as a server does after its
   *   response. A client keeps its side open while it reads the response, as Git's does.
   */
  end(closeSocket: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    const builder = this.#builder;
    builder.addFlush();
    const parts = builder.take();
    const socket = this.#socket;
    if (socket.destroyed) return;
    if (parts.length === 1) {
      if (closeSocket) socket.end(parts[0]!);
      else socket.write(parts[0]!);
      return;
    }
    socket.cork();
    for (const part of parts) socket.write(part);
    if (closeSocket) socket.end();
    socket.uncork();
  }

  /** @internal Writes what the builder holds (the deferred flush of small chunks). */
  flushPending(): void {
    this.#scheduled = false;
    // A wait for drain that this returns is seen by the next write() or end().
    if (!this.#ended && !this.#socket.destroyed) void this.#writeOut(false);
  }

  /** Rejects pending waits: the socket failed or closed. */
  abort(err: Error): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const waiter of waiters) waiter.reject(err);
  }

  #writeOut(waitWritten: boolean): Promise<void> {
    const parts = this.#builder.take();
    const socket = this.#socket;
    if (parts.length === 0) return RESOLVED;
    let written: Promise<void> | undefined;
    let callback: ((err?: Error | null) => void) | undefined;
    if (waitWritten) {
      written = new Promise<void>((resolve, reject) => {
        callback = (err) => {
          if (err) reject(wrapWriteError(err));
          else resolve();
        };
      });
      written.catch(noop);
    }
    if (parts.length === 1) {
      socket.write(parts[0]!, callback);
    } else {
      socket.cork();
      const last = parts.length - 1;
      for (let i = 0; i < last; i++) socket.write(parts[i]!);
      socket.write(parts[last]!, callback);
      socket.uncork();
    }
    if (written !== undefined) return written;
    return socket.writableNeedDrain ? this.#drained() : RESOLVED;
  }

  #drained(): Promise<void> {
    const drained = new Promise<void>((resolve, reject) => {
      const waiter = { resolve, reject };
      if (this.#drainWaiters.push(waiter) === 1) {
        this.#socket.once('drain', onOutboundDrain.bind(this));
      }
    });
    drained.catch(noop);
    return drained;
  }

  /** @internal */
  releaseDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const waiter of waiters) waiter.resolve();
  }
}

// A handler may call reply() without awaiting it; when its client has gone, the rejection
// must not become an unhandled rejection that ends the process. Awaiting still throws.
function rejected(err: Error): Promise<void> {
  const promise = Promise.reject(err);
  promise.catch(noop);
  return promise;
}

function noop(): void {}

function scheduleFlush(message: OutboundMessage): void {
  process.nextTick(flushOutbound, message);
}

function flushOutbound(message: OutboundMessage): void {
  message.flushPending();
}

function onOutboundDrain(this: OutboundMessage): void {
  this.releaseDrainWaiters();
}

function wrapWriteError(err: Error): SimpleIpcError {
  return new SimpleIpcError(
    ErrorCode.CONNECTION_CLOSED,
    `the peer closed the connection (${(err as { code?: string }).code ?? err.message})`,
    { cause: err },
  );
}

/**
 * The messages between a worker pool (src/worker-pool.ts, the main thread) and its worker threads
 * (src/worker-thread.ts), and what both sides share about them: the reply window and how to
 * post bytes without copying them. Internal.
 *
 * @module
 */

import type { MessagePort, Worker } from 'node:worker_threads';
import type { ErrorData } from './handoff.js';
import type { QUIT } from './server-options.js';

/** One piece of a worker's reply. */
export type WorkerChunk = string | Uint8Array;

/**
 * The registered symbol behind server-options.ts's QUIT (Symbol.for is shared by all modules of
 * a thread), named here so that a worker does not load the server's modules just to recognise
 * it.
 */
export const QUIT_SIGNAL: typeof QUIT = Symbol.for('simple-ipc.quit') as typeof QUIT;

/** The `workerData` a pool starts a worker thread with. */
export interface WorkerStart {
  /** The `file:` URL of the module whose default export serves the requests. */
  readonly 'simple-ipc:worker-module': string;
}

/** The key of {@link WorkerStart}, which marks a thread as a pool's worker. */
export const WORKER_MODULE = 'simple-ipc:worker-module' satisfies keyof WorkerStart;

/**
 * Main thread to worker. The pool sends a worker one `run` at a time: the next only after the
 * worker's `end` or `fail` for the last.
 */
export type ToWorker =
  /** Serve this request (its bytes transferred when they can be). */
  | { readonly kind: 'run'; readonly id: number; readonly request: Uint8Array }
  /** That much of the reply (its {@link costOf}) has been taken by `reply()`. */
  | { readonly kind: 'ack'; readonly id: number; readonly cost: number }
  /** The client is gone: stop producing. */
  | { readonly kind: 'cancel'; readonly id: number };

/** Worker to main thread. */
export type FromWorker =
  /** The module has loaded: the worker takes requests. */
  | { readonly kind: 'ready' }
  /** The module could not be loaded, or has no default export function. */
  | { readonly kind: 'load-failed'; readonly error: ErrorData }
  /** One chunk of the reply (a generator's yield). */
  | { readonly kind: 'chunk'; readonly id: number; readonly chunk: WorkerChunk }
  /** The reply is complete: `last` is its last chunk, if any; `quit` if the task said QUIT. */
  | {
      readonly kind: 'end';
      readonly id: number;
      readonly last: WorkerChunk | undefined;
      readonly quit: boolean;
    }
  /** The task threw or rejected. */
  | { readonly kind: 'fail'; readonly id: number; readonly error: ErrorData };

/**
 * How much of its reply a worker may have in flight (posted, not yet taken by `reply()`)
 * before it waits: enough to keep the socket busy, little enough to bound the main thread's
 * memory when the client reads slowly. Acknowledged in halves, so not one message per chunk.
 */
export const WINDOW = 256 * 1024;
export const ACK_AT = WINDOW / 2;
/** Counted per chunk on top of its bytes, so that tiny chunks are bounded in number too. */
const CHUNK_COST = 64;

/** What a chunk counts against {@link WINDOW}. */
export function costOf(chunk: WorkerChunk): number {
  return (typeof chunk === 'string' ? chunk.length : chunk.byteLength) + CHUNK_COST;
}

/**
 * The bytes of `view` as something that can be transferred: the view itself when it spans its
 * whole (transferable) ArrayBuffer, else an exact copy. Posting a partial view untransferred
 * would copy its entire backing store instead (a pooled 8 KiB slab for a 10-byte Buffer).
 */
export function transferable(view: Uint8Array): Uint8Array {
  const buffer = view.buffer;
  if (
    buffer instanceof ArrayBuffer &&
    view.byteOffset === 0 &&
    view.byteLength === buffer.byteLength
  ) {
    return view;
  }
  return new Uint8Array(view);
}

/**
 * Posts `message` to the worker (from the main thread) or to the main thread (from a worker),
 * transferring `bytes` if given and it can; falls back to a copy (e.g. wasm memory).
 */
export function post(to: Worker, message: ToWorker, bytes?: Uint8Array): void;
export function post(to: MessagePort, message: FromWorker, bytes?: Uint8Array): void;
export function post(
  to: Worker | MessagePort,
  message: ToWorker | FromWorker,
  bytes?: Uint8Array,
): void {
  if (bytes === undefined) {
    to.postMessage(message);
    return;
  }
  try {
    to.postMessage(message, [bytes.buffer as ArrayBuffer]);
  } catch {
    to.postMessage(message);
  }
}

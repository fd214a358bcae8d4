/**
 * Handlers on more than one core: a {@link RequestHandler} that runs each request in a pool of
 * `node:worker_threads` workers, for handlers that are CPU-bound and need no state of the main
 * thread. The server itself stays one thread (accepting, reading, packetizing, writing); only
 * the handler's work moves. Git's C server gets its cores from `nr_threads` OS threads; this is
 * the opt-in equivalent for Node. See docs/workers.md for what it costs and when it pays.
 *
 * This file adapts the pool to the server: the public `workerHandler()`, its options check and
 * its types. src/worker-pool.ts is the pool itself (threads, queue, restart), on the main
 * thread; src/worker-thread.ts is what runs in each worker, and src/worker-protocol.ts the
 * messages between them.
 *
 * @module
 */

import { type ResourceLimits } from 'node:worker_threads';
import { moduleHref } from './handoff.js';
import type { RequestContext, RequestHandler } from './server.js';
import type { HandlerResult, QUIT, Reply } from './server-options.js';
import { integer, invalidArgument, optionsObject } from './validate.js';
import { WorkerPool } from './worker-pool.js';
import type { WorkerChunk } from './worker-protocol.js';

export type { WorkerChunk };

/**
 * What a worker module's handler may return (or resolve to): nothing (an empty response), one
 * chunk, an `Iterable` or `AsyncIterable` of chunks (a generator: one packet run per chunk, as
 * a `reply()` each), or `QUIT` to stop the server after an empty response. A generator that
 * `return`s `QUIT` stops the server after the chunks it yielded.
 */
export type WorkerResult =
  undefined | void | typeof QUIT | WorkerChunk | Iterable<WorkerChunk> | AsyncIterable<WorkerChunk>;

/**
 * What a {@link WorkerTask} learns about its request besides the bytes (its second argument).
 */
export interface WorkerTaskContext {
  /**
   * Aborted, inside the worker thread, when the request's client hangs up (or its reply can no
   * longer be delivered) before the task ends; the `reason` is a {@link SimpleIpcError} with
   * code `ERR_IPC_CONNECTION_CLOSED`. A task that runs for long can watch it and give up early:
   * what it returns after that is dropped. Each request gets a signal of its own.
   */
  readonly signal: AbortSignal;
}

/**
 * The default export of a worker module: called in a worker thread with the whole request,
 * and a {@link WorkerTaskContext} whose `signal` tells it that its client has left.
 * A `Uint8Array` it returns or yields is handed to the main thread without a copy when it spans
 * its whole `ArrayBuffer` (which is then transferred: empty in the worker afterwards), so never
 * return the same such buffer twice; any other chunk is copied once.
 *
 * @example
 * ```ts
 * // hash.js
 * import { createHash } from 'node:crypto';
 * export default (request: Buffer) => createHash('sha256').update(request).digest('hex');
 * ```
 */
export type WorkerTask = (
  request: Buffer,
  context: WorkerTaskContext,
) => WorkerResult | Promise<WorkerResult>;

/** Options of {@link workerHandler}. */
export interface WorkerHandlerOptions {
  /**
   * Worker threads at most (a whole number from 1 to 1024); each is started when a request
   * first needs it and then kept. Default `os.availableParallelism()`: one per core. The
   * server's own thread needs little CPU beside a handler worth moving, so leaving it a core of
   * its own wastes one (docs/workers.md has the measurements).
   */
  workers?: number | undefined;
  /**
   * Memory limits of each worker (see `node:worker_threads`): each a number of MB above 0.
   * Default: Node's.
   */
  resourceLimits?: ResourceLimits | undefined;
}

/**
 * A {@link RequestHandler} backed by a pool of worker threads, from {@link workerHandler}.
 * Pass it to `startServer` like any handler. Idle workers never keep the process alive; close
 * the pool to free their memory (`await using`, or `server.closed.then(() => handler.close())`).
 */
export interface WorkerHandler extends RequestHandler, AsyncDisposable {
  /** The most worker threads the pool runs. */
  readonly workers: number;
  /**
   * Starts every worker now and resolves once each has loaded the module, instead of on the
   * first requests. Useful at start-up to fail early on a broken module.
   * @throws {@link SimpleIpcError} `ERR_IPC_HANDLER_FAILED` if the module cannot be loaded or has no
   *   default export function.
   */
  ready(): Promise<void>;
  /**
   * Graceful: takes no new requests (they fail with `ERR_IPC_HANDLER_FAILED`), lets queued and
   * running ones finish, then ends the threads. Idempotent; resolves once all have exited.
   */
  close(): Promise<void>;
  /** Now: ends the threads at once; queued and running requests fail. Idempotent. */
  destroy(): Promise<void>;
}

/**
 * Makes a handler that runs each request in a pool of worker threads, so that CPU-bound work
 * uses more than one core. `moduleUrl` names an ES module (a `file:` URL, or a path resolved
 * against the current directory) whose default export is a {@link WorkerTask}.
 *
 * Requests wait in order when every worker is busy; one whose client hangs up while it waits
 * (the handler's `context.signal` aborts) is dropped without running, and the handler rejects
 * with `ERR_IPC_CONNECTION_CLOSED`. A running task learns that its client left from its own
 * {@link WorkerTaskContext.signal}. Each reply chunk is passed to `reply()` in
 * order, with backpressure: a worker is held back once 256 KiB of its chunks wait for the
 * client. If the task throws or rejects, the handler rejects with `ERR_IPC_HANDLER_FAILED`
 * (the client sees a truncated response, as for any failing handler) and the worker goes on.
 * If a worker dies (`process.exit`, an uncaught error, out of memory), its request fails the
 * same way and another worker is started when one is next needed. A `reply` that throws,
 * rejects or returns no Promise (one of the application's, when it calls this handler from its
 * own) fails that request only: the handler rejects with that error (`ERR_IPC_HANDLER_FAILED`
 * if it returned no Promise) and the task is told to stop.
 *
 * The server's `threads` bounds how many requests are handed to the pool at once: make it at
 * least `workers`, or some workers never get work.
 *
 * @example
 * ```ts
 * await using handler = workerHandler(new URL('./hash.js', import.meta.url), { workers: 2 });
 * const server = await startServer(path, handler, { threads: 8 });
 * await server.closed;
 * ```
 * @throws {@link SimpleIpcError} `ERR_IPC_INVALID_ARGUMENT` if `workers` is not a whole number
 *   from 1 to 1024, `resourceLimits` is not an object of sizes, or `moduleUrl` is neither a
 *   path nor a `file:` URL.
 */
export function workerHandler(
  moduleUrl: string | URL,
  options: WorkerHandlerOptions = {},
): WorkerHandler {
  const href = moduleHref(moduleUrl, 'the worker module');
  const o = optionsObject(options);
  const size =
    integer(o.workers, 'options.workers', 1, MAX_WORKERS) ??
    Math.min(MAX_WORKERS, Math.max(1, process.getBuiltinModule('node:os').availableParallelism()));
  const pool = new WorkerPool(href, size, checkResourceLimits(o.resourceLimits));
  const handler = (
    request: Buffer,
    reply: Reply,
    context?: RequestContext,
  ): Promise<HandlerResult> => pool.run(request, reply, context?.signal);
  return Object.assign(handler, {
    workers: pool.size,
    ready: () => pool.ready(),
    close: () => pool.close(),
    destroy: () => pool.destroy(),
    [Symbol.asyncDispose]: () => pool.close(),
  });
}

/** The most worker threads a pool runs: far more than any machine has cores. */
const MAX_WORKERS = 1024;

const RESOURCE_LIMITS = [
  'maxYoungGenerationSizeMb',
  'maxOldGenerationSizeMb',
  'codeRangeSizeMb',
  'stackSizeMb',
] as const satisfies readonly (keyof ResourceLimits)[];

function checkResourceLimits(value: unknown): ResourceLimits | undefined {
  if (value === undefined) return undefined;
  const limits = optionsObject(value as ResourceLimits, 'options.resourceLimits');
  for (const key of RESOURCE_LIMITS) {
    const size = limits[key];
    if (size !== undefined && !(typeof size === 'number' && Number.isFinite(size) && size > 0)) {
      throw invalidArgument(`options.resourceLimits.${key}`, size, 'a number of MB above 0');
    }
  }
  return limits;
}

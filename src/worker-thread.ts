/**
 * The entry point of a worker pool's threads (see {@link workerHandler} in src/workers.ts):
 * started by the pool, it imports the application's module and serves the requests posted to
 * it, one at a time, speaking the messages of src/worker-protocol.ts. Imported anywhere else
 * (the main thread, or a thread the pool did not start), it does nothing.
 *
 * Not part of the public API.
 *
 * @module
 */

import { isMainThread, type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { ErrorCode, SimpleIpcError } from './errors.js';
import { errorData } from './handoff.js';
import {
  costOf,
  post,
  QUIT_SIGNAL,
  type ToWorker,
  transferable,
  WINDOW,
  WORKER_MODULE,
  type WorkerStart,
} from './worker-protocol.js';
import type { WorkerTask, WorkerTaskContext } from './workers.js';

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null | undefined)?.then === 'function';
}

/**
 * The {@link WorkerTaskContext} of one job. Its AbortController is made only if the task looks
 * at `signal`; the pool's `cancel` aborts it (see {@link TaskContext.cancel}).
 */
class TaskContext implements WorkerTaskContext {
  #controller: AbortController | undefined;
  #cancelled = false;

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#cancelled) this.#controller.abort(clientGone());
    }
    return this.#controller.signal;
  }

  /** The client has gone: aborts the signal. Static, so that a task cannot call it. */
  static cancel(context: TaskContext): void {
    if (context.#cancelled) return;
    context.#cancelled = true;
    context.#controller?.abort(clientGone());
  }
}

function clientGone(): SimpleIpcError {
  return new SimpleIpcError(ErrorCode.CONNECTION_CLOSED, 'the client closed the connection');
}

/** A worker thread serving one task module: the job it runs now and that job's reply window. */
class TaskWorker {
  readonly #port: MessagePort;
  readonly #task: WorkerTask;
  /** The id of the job being served (one at a time: the pool sends the next after its end). */
  #current = -1;
  /** Reply cost posted and not yet acknowledged by the pool. */
  #inFlight = 0;
  /** The pool cancelled the current job: its client is gone. */
  #cancelled = false;
  /** The current job's context, until the job ends. */
  #context: TaskContext | undefined;
  /** Wakes the job waiting for credit (or for its cancel). */
  #wake: (() => void) | undefined;

  /** Loads the module at `href` and serves it; tells the pool if it cannot be loaded. */
  static async start(port: MessagePort, href: string): Promise<void> {
    let task: WorkerTask;
    try {
      const module = (await import(href)) as { default?: unknown };
      if (typeof module.default !== 'function') {
        throw new TypeError('its default export is not a function');
      }
      task = module.default as WorkerTask;
    } catch (err) {
      post(port, { kind: 'load-failed', error: errorData(err) });
      return;
    }
    new TaskWorker(port, task).#listen();
  }

  private constructor(port: MessagePort, task: WorkerTask) {
    this.#port = port;
    this.#task = task;
  }

  /** Takes the pool's messages, then tells it this worker is ready for requests. */
  #listen(): void {
    this.#port.on('message', (message: ToWorker) => this.#onMessage(message));
    post(this.#port, { kind: 'ready' });
  }

  #onMessage(message: ToWorker): void {
    switch (message.kind) {
      case 'run':
        void this.#serve(message.id, message.request); // reports its own failures
        return;
      case 'ack':
        if (message.id === this.#current) this.#inFlight -= message.cost;
        break;
      case 'cancel':
        if (message.id === this.#current) {
          this.#cancelled = true;
          if (this.#context !== undefined) TaskContext.cancel(this.#context);
        }
        break;
    }
    if (this.#wake !== undefined && (this.#inFlight < WINDOW || this.#cancelled)) {
      const resolve = this.#wake;
      this.#wake = undefined;
      resolve();
    }
  }

  /** Runs the task on one request and posts its reply: chunks, then `end`; or `fail`. */
  async #serve(id: number, request: Uint8Array): Promise<void> {
    const port = this.#port;
    this.#current = id;
    this.#inFlight = 0;
    this.#cancelled = false;
    const context = new TaskContext();
    this.#context = context;
    try {
      let result: unknown = this.#task(
        Buffer.from(request.buffer, request.byteOffset, request.byteLength),
        context,
      );
      if (isThenable(result)) result = await result;
      if (result === undefined || result === null || result === QUIT_SIGNAL) {
        post(port, { kind: 'end', id, last: undefined, quit: result === QUIT_SIGNAL });
      } else if (typeof result === 'string') {
        post(port, { kind: 'end', id, last: result === '' ? undefined : result, quit: false });
      } else if (result instanceof Uint8Array) {
        const bytes = result.byteLength === 0 ? undefined : transferable(result);
        post(port, { kind: 'end', id, last: bytes, quit: false }, bytes);
      } else {
        const quit = await this.#iterate(id, result);
        post(port, { kind: 'end', id, last: undefined, quit });
      }
    } catch (err) {
      post(port, { kind: 'fail', id, error: errorData(err) });
    } finally {
      // A cancel that comes after the end no longer concerns the task.
      this.#context = undefined;
    }
  }

  /** Sends what `result` yields, waiting for credit; true if it returned QUIT. */
  async #iterate(id: number, result: unknown): Promise<boolean> {
    const source = result as Partial<AsyncIterable<unknown> & Iterable<unknown>>;
    const asyncIterator = source[Symbol.asyncIterator];
    const syncIterator = source[Symbol.iterator];
    const iterator: Iterator<unknown> | AsyncIterator<unknown> | undefined =
      typeof asyncIterator === 'function'
        ? asyncIterator.call(source)
        : typeof syncIterator === 'function'
          ? syncIterator.call(source)
          : undefined;
    if (iterator === undefined) {
      throw new TypeError(
        'the worker handler must return a string, a Uint8Array, an iterable of them, or QUIT',
      );
    }
    for (;;) {
      let step = iterator.next();
      if (isThenable(step)) step = await step;
      if (step.done) return step.value === QUIT_SIGNAL;
      this.#send(id, step.value);
      while (this.#inFlight >= WINDOW && !this.#cancelled) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
      }
      if (this.#cancelled) {
        await iterator.return?.();
        return false;
      }
    }
  }

  /** Posts one yielded chunk (empty ones are dropped) and counts it against the window. */
  #send(id: number, chunk: unknown): void {
    if (typeof chunk === 'string') {
      if (chunk === '') return;
      this.#inFlight += costOf(chunk);
      post(this.#port, { kind: 'chunk', id, chunk });
    } else if (chunk instanceof Uint8Array) {
      if (chunk.byteLength === 0) return;
      this.#inFlight += costOf(chunk);
      const bytes = transferable(chunk);
      post(this.#port, { kind: 'chunk', id, chunk: bytes }, bytes);
    } else {
      throw new TypeError(`a reply chunk must be a string or a Uint8Array, not ${typeof chunk}`);
    }
  }
}

if (!isMainThread && parentPort !== null) {
  const href = (workerData as Partial<WorkerStart> | null)?.[WORKER_MODULE];
  if (typeof href === 'string') void TaskWorker.start(parentPort, href); // reports its own failures
}

/**
 * The pool behind `workerHandler()` (src/workers.ts), on the main thread: starts worker
 * threads when requests need them and keeps them, queues requests in order while every worker
 * is busy, hands each its next job, starts another worker when one dies, and closes or
 * destroys them all. It knows nothing of options checking or of the public types: workers.ts
 * adapts it to the server. src/worker-thread.ts is what runs in each worker, and
 * src/worker-protocol.ts the messages between them. Internal.
 *
 * @module
 */

import type { ResourceLimits, Worker } from 'node:worker_threads';
import { ErrorCode, SimpleIpcError } from './errors.js';
import { errorFromData } from './handoff.js';
import type { HandlerResult, Reply } from './server-options.js';
import {
  ACK_AT,
  costOf,
  type FromWorker,
  post,
  QUIT_SIGNAL,
  transferable,
  WORKER_MODULE,
  type WorkerChunk,
  type WorkerStart,
} from './worker-protocol.js';

function failed(message: string, cause?: unknown): SimpleIpcError {
  return new SimpleIpcError(
    ErrorCode.HANDLER_FAILED,
    message,
    cause === undefined ? {} : { cause },
  );
}

/**
 * Where a job is in its life: one state at a time, so that no mix of flags can say two things
 * (queued and ended, settled and then ended again). The only transitions, and where they happen:
 *
 * - `queued -> running`: a worker takes it (#start). Only a queued job has `request`; only one
 *   that has left the queue has `slot`.
 * - `queued -> settled` (rejects): dropped without running, because its client left
 *   (#clientLeft), the pool was destroyed (destroy) or a worker died before its module loaded
 *   (#onExit).
 * - `running -> ended`, or `running -> ended-quit` when the task asked to stop the server: the
 *   worker sent 'end' and is free again, but reply() Promises may still be pending.
 * - `ended`/`ended-quit -> settled` (resolves, with QUIT from `ended-quit`): the last pending
 *   reply() has resolved (at once if none was pending).
 * - `running`/`ended`/`ended-quit -> settled` (rejects): the task failed, its worker died, its
 *   client left, or a reply() failed.
 *
 * `settled` is final: later messages of the job, and later reply() results, are ignored.
 */
type JobState = 'queued' | 'running' | 'ended' | 'ended-quit' | 'settled';

interface Job {
  readonly id: number;
  /** See {@link JobState}; changed only as written there. */
  state: JobState;
  /** Until the job starts: then it belongs to the worker. */
  request: Buffer | undefined;
  /** The handler's `context.signal`: aborted when the client leaves. */
  readonly signal: AbortSignal | undefined;
  /** Our listener on `signal`, removed when the job settles. */
  onAbort: (() => void) | undefined;
  /** The worker running the job, once it started. */
  slot: Slot | undefined;
  readonly reply: Reply;
  readonly resolve: (result: HandlerResult) => void;
  readonly reject: (err: unknown) => void;
  /** Reply Promises not settled yet. */
  pending: number;
  /** Reply cost taken and not yet acknowledged to the worker. */
  unacked: number;
}

/** One worker thread and the job it runs. */
interface Slot {
  readonly worker: Worker;
  /** Set once the module has loaded. */
  ready: boolean;
  job: Job | undefined;
  /** Settles when the module has loaded (or failed to). */
  readonly booted: Promise<void>;
  readonly markBooted: (err?: Error) => void;
  /** Why the worker died, if it reported it ('error' comes before 'exit'). */
  death: unknown;
}

export class WorkerPool {
  readonly size: number;
  readonly #href: string;
  readonly #resourceLimits: ResourceLimits | undefined;
  readonly #slots = new Set<Slot>();
  readonly #idle: Slot[] = [];
  readonly #queue: Job[] = [];
  #booting = 0;
  #nextId = 0;
  #closing = false;
  #destroyed = false;
  /** Set once the workers are being terminated (close() or destroy()): none is released again. */
  #terminating = false;
  #whenDrained: (() => void) | undefined;
  #exited: Promise<void> | undefined;

  constructor(href: string, size: number, resourceLimits: ResourceLimits | undefined) {
    this.#href = href;
    this.size = size;
    this.#resourceLimits = resourceLimits;
  }

  run(request: Buffer, reply: Reply, signal: AbortSignal | undefined): Promise<HandlerResult> {
    if (this.#closing) return Promise.reject(failed('the worker pool is closed'));
    if (signal?.aborted) return Promise.reject(clientLeft(signal, 'before its request ran'));
    return new Promise<HandlerResult>((resolve, reject) => {
      const job: Job = {
        id: this.#nextId++,
        state: 'queued',
        request,
        signal,
        onAbort: undefined,
        slot: undefined,
        reply,
        resolve,
        reject,
        pending: 0,
        unacked: 0,
      };
      if (signal !== undefined) {
        job.onAbort = () => this.#clientLeft(job);
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.#queue.push(job);
      this.#dispatch();
    });
  }

  /**
   * The job's client has gone: a job still queued is dropped without running; a running one
   * fails now, and its worker is told to cancel (which aborts the task's own signal).
   */
  #clientLeft(job: Job): void {
    if (job.state === 'settled') return;
    if (job.state === 'queued') {
      const at = this.#queue.indexOf(job);
      if (at >= 0) this.#queue.splice(at, 1);
      this.#settle(job, clientLeft(job.signal!, 'before its request ran'));
      // A close() may have been waiting for this job only.
      this.#dispatch();
      return;
    }
    const slot = job.slot!;
    this.#settle(job, clientLeft(job.signal!, 'while its request ran'));
    // The worker stays busy until it says it has stopped.
    if (slot.job === job) post(slot.worker, { kind: 'cancel', id: job.id });
  }

  async ready(): Promise<void> {
    if (this.#closing) throw failed('the worker pool is closed');
    while (this.#slots.size < this.size) this.#spawn();
    await Promise.all(Array.from(this.#slots, (slot) => slot.booted));
  }

  close(): Promise<void> {
    this.#closing = true;
    if (this.#exited === undefined) {
      this.#exited = this.#drained().then(() => this.#terminateAll());
    }
    return this.#exited;
  }

  destroy(): Promise<void> {
    this.#closing = true;
    this.#destroyed = true;
    const queued = this.#queue.splice(0);
    for (const job of queued) this.#settle(job, failed('the worker pool was destroyed'));
    const exited = this.#terminateAll();
    // A close() waiting for the pool to drain waits for this instead.
    this.#whenDrained?.();
    this.#whenDrained = undefined;
    this.#exited = exited;
    return exited;
  }

  #drained(): Promise<void> {
    if (this.#idleNow()) return Promise.resolve();
    return new Promise((resolve) => {
      this.#whenDrained = resolve;
    });
  }

  #idleNow(): boolean {
    if (this.#queue.length > 0) return false;
    for (const slot of this.#slots) if (slot.job !== undefined) return false;
    return true;
  }

  async #terminateAll(): Promise<void> {
    // An unref'd worker's exit keeps nothing alive: the process could end with this promise
    // pending (`await close()` as a script's last step then exits with code 13). So every
    // worker is ref'd until it has exited, including one whose 'ready' arrives after this
    // (#release leaves it ref'd).
    this.#terminating = true;
    await Promise.all(
      Array.from(this.#slots, (slot) => {
        slot.worker.ref();
        return slot.worker.terminate();
      }),
    );
  }

  #dispatch(): void {
    const queue = this.#queue;
    while (queue.length > 0 && this.#idle.length > 0) {
      this.#start(this.#idle.pop()!, queue.shift()!);
    }
    while (queue.length > this.#booting && this.#slots.size < this.size && !this.#destroyed) {
      this.#spawn();
    }
    if (this.#whenDrained !== undefined && this.#idleNow()) {
      this.#whenDrained();
      this.#whenDrained = undefined;
    }
  }

  #spawn(): void {
    let markBooted!: (err?: Error) => void;
    const booted = new Promise<void>((resolve, reject) => {
      markBooted = (err) => (err === undefined ? resolve() : reject(err));
    });
    booted.catch(noop); // seen by ready(), if anyone waits
    const start: WorkerStart = { [WORKER_MODULE]: this.#href };
    const { Worker } = process.getBuiltinModule('node:worker_threads');
    const worker: Worker = new Worker(new URL('./worker-thread.js', import.meta.url), {
      workerData: start,
      ...(this.#resourceLimits === undefined ? {} : { resourceLimits: this.#resourceLimits }),
    });
    const slot: Slot = {
      worker,
      ready: false,
      job: undefined,
      booted,
      markBooted,
      death: undefined,
    };
    this.#slots.add(slot);
    this.#booting++;
    worker.on('message', (message: FromWorker) => this.#onMessage(slot, message));
    worker.on('error', (err) => {
      slot.death = err;
    });
    worker.on('exit', (code) => this.#onExit(slot, code));
    // A booting worker stays ref'd: someone waits for it. An idle one is unref'd in #release
    // (after the listeners above: adding a 'message' listener refs a worker again).
  }

  #start(slot: Slot, job: Job): void {
    slot.job = job;
    job.state = 'running';
    job.slot = slot;
    slot.worker.ref();
    const request = transferable(job.request!);
    job.request = undefined;
    post(slot.worker, { kind: 'run', id: job.id, request }, request);
  }

  #onMessage(slot: Slot, message: FromWorker): void {
    const job = slot.job;
    switch (message.kind) {
      case 'chunk':
        if (job !== undefined && job.state !== 'settled') this.#write(slot, job, message.chunk);
        return;
      case 'end':
        if (job === undefined) return;
        this.#release(slot);
        if (job.state === 'settled') return;
        job.state = message.quit ? 'ended-quit' : 'ended';
        if (message.last !== undefined) this.#write(slot, job, message.last);
        // (A reply() that failed at once has settled the job already: #settle ignores it then.)
        if (job.pending === 0) this.#settle(job);
        return;
      case 'fail':
        if (job === undefined) return;
        this.#release(slot);
        this.#settle(
          job,
          failed(
            `the worker handler failed: ${message.error.message}`,
            errorFromData(message.error),
          ),
        );
        return;
      case 'ready':
        slot.ready = true;
        this.#booting--;
        slot.markBooted();
        this.#release(slot);
        return;
      case 'load-failed':
        slot.death = failed(
          `cannot load the worker module ${this.#href}: ${message.error.message}`,
          errorFromData(message.error),
        );
        void slot.worker.terminate();
        return;
    }
  }

  /** Hands one chunk to `reply()`; acknowledges it to the worker once taken. */
  #write(slot: Slot, job: Job, chunk: WorkerChunk): void {
    // `reply` is the application's when it calls this handler from its own, passing a reply of
    // its own: it may throw or return something that is not a Promise. That fails this job
    // only, as a rejection would; it must never throw out of the worker's 'message' listener,
    // where it would end the process.
    let written: PromiseLike<void>;
    try {
      written = job.reply(chunk);
      if (!isThenable(written)) throw failed('reply() returned no Promise');
    } catch (err) {
      this.#replyFailed(slot, job, err);
      return;
    }
    job.pending++;
    const cost = costOf(chunk);
    // A native Promise is used as it is; any other thenable is adopted, so that its `then`
    // throwing, or settling twice, is contained too.
    Promise.resolve(written).then(
      () => {
        job.pending--;
        if (job.state === 'settled') return;
        job.unacked += cost;
        if (job.unacked >= ACK_AT && slot.job === job) {
          post(slot.worker, { kind: 'ack', id: job.id, cost: job.unacked });
          job.unacked = 0;
        }
        if ((job.state === 'ended' || job.state === 'ended-quit') && job.pending === 0) {
          this.#settle(job);
        }
      },
      (err: unknown) => {
        job.pending--;
        this.#replyFailed(slot, job, err);
      },
    );
  }

  /**
   * A chunk could not be written (the client is gone, or the application's reply failed): fail
   * the job now, and tell the worker to stop producing. It stays busy until it says it has
   * stopped.
   */
  #replyFailed(slot: Slot, job: Job, err: unknown): void {
    if (job.state === 'settled') return;
    this.#settle(job, err);
    if (slot.job === job) post(slot.worker, { kind: 'cancel', id: job.id });
  }

  #settle(job: Job, err?: unknown): void {
    if (job.state === 'settled') return;
    const quit = job.state === 'ended-quit';
    job.state = 'settled';
    if (job.onAbort !== undefined) job.signal!.removeEventListener('abort', job.onAbort);
    if (err !== undefined) job.reject(err);
    else job.resolve(quit ? QUIT_SIGNAL : undefined);
  }

  /** The slot's worker is free: give it the next job, or let the process exit without it. */
  #release(slot: Slot): void {
    slot.job = undefined;
    if (this.#terminating) return;
    const next = this.#queue.shift();
    if (next !== undefined) {
      this.#start(slot, next);
      return;
    }
    slot.worker.unref();
    this.#idle.push(slot);
    this.#dispatch();
  }

  #onExit(slot: Slot, code: number): void {
    this.#slots.delete(slot);
    const idle = this.#idle.indexOf(slot);
    if (idle >= 0) this.#idle.splice(idle, 1);
    const death =
      slot.death instanceof SimpleIpcError
        ? slot.death
        : this.#destroyed
          ? failed('the worker pool was destroyed')
          : slot.death !== undefined
            ? failed(
                `the worker thread died: ${(slot.death as Error)?.message ?? slot.death}`,
                slot.death,
              )
            : failed(`the worker thread exited with code ${code}`);
    if (!slot.ready) {
      this.#booting--;
      slot.markBooted(death);
      // A worker that dies before its module has loaded (a load error, or the module exits or
      // throws at the top level) will do so again: fail what waits instead of starting worker
      // after worker.
      if (!this.#destroyed) {
        for (const job of this.#queue.splice(0)) this.#settle(job, death);
      }
    }
    const job = slot.job;
    slot.job = undefined;
    if (job !== undefined) this.#settle(job, death);
    if (!this.#destroyed) this.#dispatch();
  }
}

/** The error of a job whose client has gone (`when`: before or while it ran). */
function clientLeft(signal: AbortSignal, when: string): SimpleIpcError {
  return new SimpleIpcError(ErrorCode.CONNECTION_CLOSED, `the client left ${when}`, {
    cause: signal.reason,
  });
}

function noop(): void {}

/** Whether `value` has a `then` method (reading it may throw: the caller contains that). */
function isThenable(value: unknown): value is PromiseLike<void> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

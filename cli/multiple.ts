/**
 * `multiple`, Git's `client__multiple()`: `--threads=N` senders, each sending `--batchsize`
 * sendbytes requests one after another, each on a new connection, then the summary line
 * `client (good G) (join J), (errors E)`.
 *
 * Git runs each sender on a thread of its own and lets the system spread them over the cores.
 * Here a thread's senders share its event loop; where there is more than one core (and enough
 * requests to pay for starting threads), the senders are dealt out over this thread and up to
 * one worker thread per further core. Each sender stays on one thread, so its lines come out in
 * its own order, as Git's do; lines of different senders interleave, as Git's do.
 */

import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { CliExit, EXIT_OK, LineOutput, Progress } from './io.js';
import { sendbytesOnce } from './sendbytes.js';

/**
 * Fewest requests in all for which `multiple` starts worker threads. Starting one (a second
 * Node instance that loads the client) costs as much CPU as hundreds of round trips (measured
 * in docs/benchmarks.md, "Many requests from one command"), so Git's small test runs (5 to 30
 * senders of 10 requests) stay on one thread.
 */
export const MIN_REQUESTS_FOR_THREADS = 2000;

/**
 * Deals senders `0 .. threads - 1` out over the threads that will run them: one thread when
 * there is one core or fewer than {@link MIN_REQUESTS_FOR_THREADS} requests, otherwise up to
 * one thread per core (never more threads than senders). Sender `k` goes to thread
 * `k % threads used`, so each thread's share is as even as it can be.
 */
export function dealSenders(senders: number, requests: number, cores: number): number[][] {
  const used = requests < MIN_REQUESTS_FOR_THREADS ? 1 : Math.max(1, Math.min(senders, cores));
  const shares: number[][] = Array.from({ length: used }, () => []);
  for (let k = 0; k < senders; k++) shares[k % used]!.push(k);
  return shares;
}

// What one thread runs: its senders, with the options they need.
interface Share {
  readonly path: string;
  readonly bytecount: number;
  readonly batchsize: number;
  readonly senders: readonly number[];
  /** Pass on each line at once (stdout is a terminal), else gather about 64 KiB. */
  readonly immediate: boolean;
}

// Where a thread's senders report.
interface Sink {
  line(text: string): Promise<void> | undefined;
  error(text: string): void;
  counted(): void;
}

// Runs a share's senders concurrently on this thread's event loop; resolves with the counts.
async function runShare(share: Share, sink: Sink): Promise<{ good: number; errors: number }> {
  let good = 0;
  let errors = 0;
  const sender = async (k: number): Promise<void> => {
    // Git's letters and counts: sender k sends 'A' + k % 26, from bytecount + batch * (k / 26).
    const letter = 0x41 + (k % 26);
    const base = share.bytecount + share.batchsize * Math.floor(k / 26);
    for (let j = 0; j < share.batchsize; j++) {
      let line: string;
      try {
        // Git's threads forbid chdir: it would move every thread of the process.
        line = await sendbytesOnce(share.path, letter, base + j, {
          waitIfBusy: true,
          disallowChdir: true,
        });
      } catch (err) {
        errors++;
        sink.error(err instanceof CliExit ? err.message : `error: ${String(err)}\n`);
        sink.counted();
        continue;
      }
      good++;
      sink.counted();
      await sink.line(line);
    }
  };
  await Promise.all(share.senders.map(sender));
  return { good, errors };
}

// Messages from a sender thread to the main thread.
type FromSenders =
  | { kind: 'lines'; text: string; done: number }
  | { kind: 'error'; text: string }
  | { kind: 'end'; good: number; errors: number };

/** What `multiple` takes of the test tool's options (Git's `--name`, `--threads`, ...). */
export interface MultipleOptions {
  readonly name: string;
  readonly threads: number;
  readonly bytecount: number;
  readonly batchsize: number;
}

/** Runs `multiple` (after the probe); resolves with Git's exit code. */
export async function multiple(options: MultipleOptions): Promise<number> {
  const total = options.threads * options.batchsize;
  const shares = dealSenders(options.threads, total, availableParallelism());
  const immediate = process.stdout.isTTY === true;
  const progress = new Progress('multiple');
  const output = new LineOutput(process.stdout);
  let done = 0;
  const counted = (n = 1): void => {
    done += n;
    progress.update(done, total, 'requests');
  };
  const onError = (text: string): void => {
    progress.done();
    process.stderr.write(text);
  };
  const share = (senders: readonly number[]): Share => ({
    path: options.name,
    bytecount: options.bytecount,
    batchsize: options.batchsize,
    senders,
    immediate,
  });
  const threads = shares
    .slice(1)
    .map((senders) => runInWorker(share(senders), output, onError, counted));
  const here = runShare(share(shares[0]!), {
    line: (text) => output.add(text),
    error: onError,
    counted: () => counted(),
  });
  let good = 0;
  let errors = 0;
  let join = 0;
  for (const result of await Promise.all([here, ...threads])) {
    // Git: a thread that cannot be joined counts as a join error, and its counts are lost.
    if (result === undefined) join++;
    else {
      good += result.good;
      errors += result.errors;
    }
  }
  progress.done();
  await output.add(`client (good ${good}) (join ${join}), (errors ${errors})\n`);
  await output.flush();
  return join + errors > 0 ? 1 : EXIT_OK;
}

// Runs a share in a worker thread; resolves with its counts, or undefined if the thread died.
function runInWorker(
  share: Share,
  output: LineOutput,
  onError: (text: string) => void,
  counted: (n: number) => void,
): Promise<{ good: number; errors: number } | undefined> {
  return new Promise((resolve) => {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { simpleIpcMultiple: share },
      stdout: false,
      stderr: false,
    });
    let reported = 0;
    worker.on('message', (message: FromSenders) => {
      if (message.kind === 'lines') {
        void output.add(message.text);
        counted(message.done - reported);
        reported = message.done;
      } else if (message.kind === 'error') onError(message.text);
      else resolve({ good: message.good, errors: message.errors });
    });
    worker.on('error', (err) => onError(`error: sender thread failed: ${String(err)}\n`));
    // After its last message, or instead of it: a thread that died without its counts.
    worker.on('exit', () => resolve(undefined));
  });
}

// A sender thread: runs its share, posting its lines in gathered pieces (as LineOutput gathers
// them), its error lines as they happen, and its counts at the end.
async function senderThread(share: Share): Promise<void> {
  const port = parentPort!;
  let pending = '';
  let done = 0;
  const post = (): void => {
    if (pending === '') return;
    port.postMessage({ kind: 'lines', text: pending, done } satisfies FromSenders);
    pending = '';
  };
  const counts = await runShare(share, {
    line: (text) => {
      pending += text;
      if (share.immediate || pending.length >= 1 << 16) post();
      return undefined;
    },
    error: (text) => port.postMessage({ kind: 'error', text } satisfies FromSenders),
    counted: () => void done++,
  });
  post();
  port.postMessage({ kind: 'end', ...counts } satisfies FromSenders);
}

const data = isMainThread ? undefined : (workerData as { simpleIpcMultiple?: Share } | undefined);
if (data?.simpleIpcMultiple !== undefined) void senderThread(data.simpleIpcMultiple);

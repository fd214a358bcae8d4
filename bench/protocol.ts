/**
 * What the benchmark's processes say to each other over their IPC channel (never during a
 * measurement: only to start a run and to collect its figures).
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Which side is measured: the project, or a plain `node:net` program doing the same bytes. */
export type Impl = 'project' | 'baseline';

/**
 * What a benchmark server answers:
 * - `ping`: `ping` -> `pong` (a whole-request handler);
 * - `recv-whole` / `recv-stream`: takes a large request (as one Buffer / as a stream) and
 *   answers `ok <payload bytes>`;
 * - `send-big`: `send <n>` -> n bytes of `y`, in one reply;
 * - `chunk`: the test daemon (`chunk` -> 10,000 rows, one reply each).
 */
/** What a benchmark server does; `ping-2p` is `ping` from a project server in 2 processes. */
export type ServerMode = 'ping' | 'ping-2p' | 'recv-whole' | 'recv-stream' | 'send-big' | 'chunk';

/** One measured job, run by every client process of a side at the same time. */
export type Job =
  | { readonly kind: 'ping'; readonly requests: number; readonly concurrency: number }
  | { readonly kind: 'upload'; readonly size: number }
  | { readonly kind: 'download'; readonly size: number; readonly stream: boolean }
  | { readonly kind: 'chunk'; readonly requests: number };

/** What a client process measured for one job. */
export interface JobResult {
  /** Start and end of the job, in ms since the epoch (comparable between processes). */
  readonly start: number;
  readonly end: number;
  /** Round trips completed. */
  readonly requests: number;
  /** Payload bytes moved (request + response). */
  readonly bytes: number;
  /** Each round trip's duration, in ms. */
  readonly latencies: number[];
  /** CPU time (user + system) the client process spent on the job, in µs. */
  readonly cpuUs: number;
}

/** Orchestrator to child. */
export type Command =
  | { readonly cmd: 'run'; readonly job: Job }
  | { readonly cmd: 'rss' }
  | { readonly cmd: 'cpu' }
  | { readonly cmd: 'exit' };

/** Child to orchestrator. */
export type Reply =
  | { readonly ready: true }
  | { readonly result: JobResult }
  | { readonly rss: number }
  | { readonly cpuUs: number }
  | { readonly error: string };

/** Bytes in the `chunk` answer (10,000 rows of 81 bytes). */
export const CHUNK_ANSWER_BYTES = 810_000;

/** The request of a `send-big` server for `size` bytes. */
export function downloadRequest(size: number): string {
  return `send ${size}`;
}

/** The answer of a `recv-*` server. */
export function uploadAnswer(size: number): string {
  return `ok ${size}`;
}

/** Peak resident set size of this process, in bytes (`ru_maxrss`: VmHWM on Linux). */
export function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** CPU time (user + system) this process has used, in µs. */
export function cpuTime(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/**
 * CPU time (user + system) that this process's live child processes have used, in µs: the
 * other processes of a clustered server. Read from /proc, in clock ticks (1/100 s on Linux);
 * 0 where /proc is not available.
 */
export function childrenCpuTime(): number {
  let children: string[];
  try {
    children = readFileSync(`/proc/self/task/${process.pid}/children`, 'latin1')
      .trim()
      .split(' ')
      .filter((pid) => pid !== '');
  } catch {
    return 0;
  }
  let ticks = 0;
  for (const pid of children) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      // After the command name (in parentheses): utime and stime are fields 14 and 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks * 10_000;
}

/** Milliseconds since the epoch, with sub-millisecond precision. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Environment variable naming another checkout (its root, with `dist/` built) whose library a
 * project-side child loads instead of this one: `npm run bench -- --against=DIR` measures a
 * change before and after in the same run.
 */
export const LIBRARY_ROOT_ENV = 'SIMPLE_IPC_BENCH_ROOT';

/** The library and the test daemon, from this checkout or from {@link LIBRARY_ROOT_ENV}. */
export async function loadLibrary(): Promise<{
  lib: typeof import('../src/index.js');
  daemon: typeof import('../cli/test-daemon.js');
}> {
  const root = process.env[LIBRARY_ROOT_ENV];
  const url = (file: string): string =>
    root
      ? pathToFileURL(join(root, 'dist', file)).href
      : new URL(`../${file}`, import.meta.url).href;
  return {
    lib: (await import(url('src/index.js'))) as typeof import('../src/index.js'),
    daemon: (await import(url('cli/test-daemon.js'))) as typeof import('../cli/test-daemon.js'),
  };
}

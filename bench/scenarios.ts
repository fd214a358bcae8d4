/**
 * The benchmark scenarios (issue 6): what each one runs, how much of it, and the target ratio
 * against the plain `node:net` baseline of the same run.
 */

import type { Job, ServerMode } from './protocol.js';

/** Sizes of one run: the full suite, or the `--quick` smoke run. */
export interface Scale {
  /** Round trips per run of (a). */
  concurrentRequests: number;
  /** Round trips per run of (b). */
  sequentialRequests: number;
  /** Bytes of the large request (c) and response (d). */
  largeBytes: number;
  /** `chunk` requests per run of (e). */
  chunkRequests: number;
  /** Measured runs per side (after one warm-up). */
  runs: number;
}

/** The full suite: about 5 minutes on 2 cores. */
export const FULL: Scale = {
  concurrentRequests: 20_000,
  sequentialRequests: 5_000,
  largeBytes: 1 << 30,
  chunkRequests: 50,
  runs: 7,
};

/** `--quick`: a smoke run of well under a minute. */
export const QUICK: Scale = {
  concurrentRequests: 2_000,
  sequentialRequests: 500,
  largeBytes: 64 << 20,
  chunkRequests: 4,
  runs: 3,
};

/** Connections in flight at once in (a), as Git's `multiple --threads=8`. */
export const CONCURRENCY = 8;

/** Which figure a scenario is judged on. */
export type Metric = 'rps' | 'mbps';

/** One row of the table. */
export interface Scenario {
  /** Row id, e.g. `c-whole`. */
  readonly id: string;
  /** The letter, which `--only` selects by. */
  readonly letter: 'a' | 'b' | 'c' | 'd' | 'e';
  readonly title: string;
  /** A short label for the chart. */
  readonly label: string;
  readonly mode: ServerMode;
  readonly metric: Metric;
  /** Least acceptable project / baseline ratio of the metric (issue 6 "Targets"). */
  readonly target: number;
  /** Client processes per side (the job is shared out among them). */
  readonly clientProcesses: number;
  /** Response sizes a `send-big` server must be able to send. */
  responseSizes(scale: Scale): number[];
  /** The warm-up job and the measured job, for one client process. */
  warmup(scale: Scale, processes: number): Job;
  job(scale: Scale, processes: number): Job;
  /** Longest a run may take before the scenario is declared failed, in ms. */
  readonly timeoutMs: number;
}

const none = (): number[] => [];
/** Warm-up size of the large transfers: enough to warm the JIT, cheap to allocate. */
const warmBytes = (scale: Scale): number => Math.min(scale.largeBytes, 16 << 20);

// (c): one large request, to a whole-request or a streaming handler.
function upload(form: 'whole' | 'stream', mode: ServerMode, what: string): Scenario {
  return {
    ...large('c', form, `(c) large request, ${what}`, mode),
    responseSizes: none,
    warmup: (s) => ({ kind: 'upload', size: warmBytes(s) }),
    job: (s) => ({ kind: 'upload', size: s.largeBytes }),
  };
}

// (d): one large response, read whole or as a stream.
function download(form: 'whole' | 'stream', what: string): Scenario {
  const stream = form === 'stream';
  return {
    ...large('d', form, `(d) large response, ${what}`, 'send-big'),
    responseSizes: (s) => [warmBytes(s), s.largeBytes],
    warmup: (s) => ({ kind: 'download', size: warmBytes(s), stream }),
    job: (s) => ({ kind: 'download', size: s.largeBytes, stream }),
  };
}

function large(
  letter: 'c' | 'd',
  form: 'whole' | 'stream',
  title: string,
  mode: ServerMode,
): Pick<
  Scenario,
  | 'id'
  | 'label'
  | 'letter'
  | 'title'
  | 'mode'
  | 'metric'
  | 'target'
  | 'clientProcesses'
  | 'timeoutMs'
> {
  return {
    id: `${letter}-${form}`,
    label: `(${letter}) ${letter === 'c' ? 'request' : 'response'}, ${form}`,
    letter,
    title,
    mode,
    metric: 'mbps',
    target: 0.9,
    clientProcesses: 1,
    timeoutMs: 120_000,
  };
}

function ping(requests: number, concurrency: number, processes: number): Job {
  return {
    kind: 'ping',
    requests: Math.ceil(requests / processes),
    concurrency: Math.max(1, Math.round(concurrency / processes)),
  };
}

// (a): many clients at once, a connection per ping.
function concurrentPing(
  id: string,
  label: string,
  title: string,
  mode: ServerMode,
  target: number,
  clients: number,
): Scenario {
  return {
    id,
    label,
    letter: 'a',
    title,
    mode,
    metric: 'rps',
    target,
    clientProcesses: clients,
    responseSizes: none,
    warmup: (s, p) => ping(Math.max(2000, s.concurrentRequests / 5), CONCURRENCY, p),
    job: (s, p) => ping(s.concurrentRequests, CONCURRENCY, p),
    timeoutMs: 120_000,
  };
}

/** Builds the scenario list; `clients` is the number of client processes used for (a). */
export function scenarios(clients: number): Scenario[] {
  return [
    concurrentPing(
      'a',
      '(a) 8 clients, ping',
      `(a) ${CONCURRENCY} concurrent clients, ping/pong, a connection each`,
      'ping',
      0.95,
      clients,
    ),
    // Beyond one core: the same load on startClusteredServer with 2 processes, against the
    // same one-process node:net baseline. Server CPU counts both processes.
    concurrentPing(
      'a-2p',
      '(a) 8 clients, 2 server processes',
      `(a) ${CONCURRENCY} concurrent clients, project server in 2 processes`,
      'ping-2p',
      1.0,
      clients,
    ),
    {
      id: 'b',
      label: '(b) 1 client, ping',
      letter: 'b',
      title: '(b) 1 client, sequential ping/pong (latency)',
      mode: 'ping',
      metric: 'rps',
      target: 0.95,
      clientProcesses: 1,
      responseSizes: none,
      warmup: (s) => ping(Math.max(500, s.sequentialRequests / 5), 1, 1),
      job: (s) => ping(s.sequentialRequests, 1, 1),
      timeoutMs: 120_000,
    },
    upload('whole', 'recv-whole', 'handler gets one Buffer'),
    upload('stream', 'recv-stream', '{ stream } handler'),
    download('whole', 'client gets one Buffer'),
    download('stream', 'Connection.stream()'),
    {
      id: 'e',
      label: '(e) chunk',
      letter: 'e',
      title: "(e) test daemon's chunk: 10,000 small replies",
      mode: 'chunk',
      metric: 'rps',
      target: 1.0,
      clientProcesses: 1,
      responseSizes: none,
      warmup: (s) => ({ kind: 'chunk', requests: Math.max(2, s.chunkRequests / 4) }),
      job: (s) => ({ kind: 'chunk', requests: s.chunkRequests }),
      timeoutMs: 120_000,
    },
  ];
}

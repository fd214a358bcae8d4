/**
 * Measures `workerHandler` (src/workers.ts) against the same handler run in the server's thread:
 * `node dist/bench/workers.js [--quick] [--runs=N] [--clients=N] [--seconds=S] [--json=FILE]
 * [--only=cpu,latency,ping,memory]`.
 *
 * Scenarios, each with in-thread and worker-pool servers measured alternately in the same run
 * (the order rotates every run, so all sides meet the same background load), figures the
 * medians over the runs and ratios the medians of the per-run ratios:
 * - a CPU-bound handler (an 8 KiB request hashed 200 times, chained sha256; its cost is in docs/workers.md) with
 *   `--clients` concurrent clients (default 8): in-thread, 1 worker, 2 workers;
 * - a trivial handler (`ping` -> `pong`), one client at a time: the latency the hop adds;
 * - the same trivial handler with `--clients` concurrent clients.
 * And the memory a worker costs (RSS growth per started worker).
 *
 * One file, three roles: the driver (it runs the servers), `client` (a separate process
 * running the concurrent clients) and the worker module (its default export is the handler).
 * See docs/workers.md.
 */

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { type RequestHandler, sendCommand, startServer } from '../src/index.js';
import { workerHandler } from '../src/workers.js';

const SELF = fileURLToPath(import.meta.url);
const ROUNDS = 200;
const CPU_REQUEST_BYTES = 8192;

/** The handler under test, in either thread: `ping` -> `pong`, anything else is hashed. */
export default function task(request: Buffer): string {
  if (request.length === 4 && request.toString('latin1') === 'ping') return 'pong';
  let digest: Buffer = Buffer.alloc(32);
  for (let i = 0; i < ROUNDS; i++) {
    digest = createHash('sha256').update(digest).update(request).digest();
  }
  return digest.toString('hex');
}

type Kind = 'cpu' | 'ping';

function requestOf(kind: Kind): Buffer {
  return kind === 'ping' ? Buffer.from('ping') : Buffer.alloc(CPU_REQUEST_BYTES, 'x');
}

interface ClientResult {
  /** Requests completed in the measured window, and its length. */
  requests: number;
  seconds: number;
  /** All requests, warm-up included. */
  total: number;
}

/** The client process: `clients` loops of sequential requests, every answer checked. */
async function clientMain(args: readonly string[]): Promise<void> {
  const [path, kind, clientsArg, warmArg, measureArg] = args as [
    string,
    Kind,
    string,
    string,
    string,
  ];
  const request = requestOf(kind);
  const expected = task(request);
  const start = performance.now();
  const from = start + Number(warmArg);
  const to = from + Number(measureArg);
  let requests = 0;
  let total = 0;
  let last = from;
  const loop = async (): Promise<void> => {
    while (performance.now() < to) {
      const answer = await sendCommand(path, request, { waitIfBusy: true });
      if (answer.toString('latin1') !== expected)
        throw new Error(`wrong answer: ${answer.toString()}`);
      const now = performance.now();
      total++;
      if (now >= from && now < to) {
        requests++;
        last = now;
      }
    }
  };
  await Promise.all(Array.from({ length: Number(clientsArg) }, loop));
  const result: ClientResult = { requests, seconds: (last - from) / 1000, total };
  process.stdout.write(JSON.stringify(result));
}

function runClient(
  path: string,
  kind: Kind,
  clients: number,
  warmMs: number,
  measureMs: number,
): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [SELF, 'client', path, kind, String(clients), String(warmMs), String(measureMs)],
      { timeout: warmMs + measureMs + 60_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`client failed: ${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as ClientResult);
      },
    );
  });
}

/** A server configuration: its handler in the server's thread (0) or in N workers. */
type Config = { readonly name: string; readonly workers: number };
const IN_THREAD: Config = { name: 'in-thread', workers: 0 };
const ONE: Config = { name: '1 worker', workers: 1 };
const TWO: Config = { name: '2 workers', workers: 2 };

interface Scenario {
  readonly title: string;
  readonly kind: Kind;
  readonly clients: number;
  readonly configs: readonly Config[];
}

interface Sample {
  rps: number;
  /** CPU time of the whole server process (all its threads) per request, in µs. */
  cpuUs: number;
}

const inThread: RequestHandler = (request, reply) => reply(task(request));

let serial = 0;

async function measure(
  dir: string,
  scenario: Scenario,
  config: Config,
  warmMs: number,
  measureMs: number,
): Promise<Sample> {
  const path = join(dir, `s${serial++}`);
  const pool = config.workers > 0 ? workerHandler(SELF, { workers: config.workers }) : undefined;
  await pool?.ready();
  const server = await startServer(path, pool ?? inThread, { threads: 8 });
  try {
    const before = process.cpuUsage();
    const result = await runClient(path, scenario.kind, scenario.clients, warmMs, measureMs);
    const cpu = process.cpuUsage(before);
    return {
      rps: result.requests / result.seconds,
      cpuUs: (cpu.user + cpu.system) / result.total,
    };
  } finally {
    await server.stop();
    await pool?.close();
  }
}

/** What starting one worker costs: RSS growth in MiB, and ms until its module has loaded. */
interface WorkerCost {
  rssMiB: number[];
  startMs: number[];
}

/** The memory role: starts four workers, one pool of one worker at a time. */
async function memoryMain(): Promise<void> {
  const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 300));
  await settle();
  const cost: WorkerCost = { rssMiB: [], startMs: [] };
  const pools = [];
  let rss = process.memoryUsage().rss;
  for (let i = 0; i < 4; i++) {
    const pool = workerHandler(SELF, { workers: 1 });
    pools.push(pool);
    const started = performance.now();
    await pool.ready();
    cost.startMs.push(performance.now() - started);
    await settle();
    const now = process.memoryUsage().rss;
    cost.rssMiB.push((now - rss) / 2 ** 20);
    rss = now;
  }
  await Promise.all(pools.map((pool) => pool.close()));
  process.stdout.write(JSON.stringify(cost));
}

function workerCost(): Promise<WorkerCost> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [SELF, 'memory'], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`memory probe failed: ${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as WorkerCost);
    });
  });
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmt(value: number, digits = 0): string {
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

interface Options {
  quick: boolean;
  runs: number;
  clients: number;
  seconds: number;
  json: string | undefined;
  only: Set<string> | undefined;
}

function parseOptions(args: readonly string[]): Options {
  const quick = args.includes('--quick');
  const options: Options = {
    quick,
    runs: quick ? 3 : 5,
    clients: 8,
    seconds: quick ? 0.5 : 2,
    json: undefined,
    only: undefined,
  };
  for (const arg of args) {
    const [key, value = ''] = arg.split('=', 2) as [string, string?];
    if (key === '--runs') options.runs = Math.max(1, Number(value));
    else if (key === '--clients') options.clients = Math.max(1, Number(value));
    else if (key === '--seconds') options.seconds = Math.max(0.1, Number(value));
    else if (key === '--json') options.json = value;
    else if (key === '--only') options.only = new Set(value.split(','));
    else if (key !== '--quick') throw new Error(`unknown option ${arg}`);
  }
  return options;
}

async function driverMain(args: readonly string[]): Promise<void> {
  const options = parseOptions(args);
  const { runs, clients } = options;
  const measureMs = options.seconds * 1000;
  const warmMs = Math.min(500, measureMs / 2);
  const all: (Scenario & { key: string })[] = [
    {
      key: 'cpu',
      title: `CPU-bound (8 KiB request, ${ROUNDS} x sha256), ${clients} clients`,
      kind: 'cpu',
      clients,
      configs: [IN_THREAD, ONE, TWO],
    },
    {
      key: 'latency',
      title: 'ping, 1 client (latency)',
      kind: 'ping',
      clients: 1,
      configs: [IN_THREAD, ONE],
    },
    {
      key: 'ping',
      title: `ping, ${clients} clients`,
      kind: 'ping',
      clients,
      configs: [IN_THREAD, ONE, TWO],
    },
  ];
  const scenarios = all.filter((s) => options.only === undefined || options.only.has(s.key));
  const dir = mkdtempSync(join(tmpdir(), 'sipc-bench-workers-'));
  const load = loadavg()[0]!;
  console.log(
    `${cpus().length} x ${cpus()[0]?.model.trim() ?? 'CPU'}, Node ${process.version}; ` +
      `${runs} runs of ${options.seconds} s, load ${load.toFixed(1)}`,
  );
  const report = [];
  try {
    for (const scenario of scenarios) {
      const samples = new Map<Config, Sample[]>(scenario.configs.map((c) => [c, []]));
      for (let run = 0; run < runs; run++) {
        // Rotate the order so that no side always goes first (or last) in a round.
        const order = scenario.configs.map(
          (_, i) => scenario.configs[(i + run) % scenario.configs.length]!,
        );
        for (const config of order) {
          samples.get(config)!.push(await measure(dir, scenario, config, warmMs, measureMs));
        }
      }
      const base = samples.get(IN_THREAD)!;
      const rows = scenario.configs.map((config) => {
        const mine = samples.get(config)!;
        return {
          config: config.name,
          rps: median(mine.map((s) => s.rps)),
          ratio: median(mine.map((s, i) => s.rps / base[i]!.rps)),
          latencyUs: 1e6 / median(mine.map((s) => s.rps)),
          cpuUs: median(mine.map((s) => s.cpuUs)),
        };
      });
      report.push({ scenario: scenario.title, clients: scenario.clients, rows });
      console.log(`\n${scenario.title}`);
      console.log('  server         req/s   vs in-thread   server CPU µs/request');
      for (const row of rows) {
        console.log(
          `  ${row.config.padEnd(10)} ${fmt(row.rps).padStart(9)}   ${fmt(row.ratio, 2).padStart(12)}` +
            `   ${fmt(row.cpuUs, 1).padStart(21)}`,
        );
      }
      if (scenario.clients === 1) {
        const [own, hop] = rows as [(typeof rows)[0], (typeof rows)[0]];
        console.log(
          `  round trip: ${fmt(own.latencyUs, 1)} µs in-thread, ${fmt(hop.latencyUs, 1)} µs ` +
            `with a worker: the hop adds ${fmt(hop.latencyUs - own.latencyUs, 1)} µs ` +
            `(${fmt(hop.cpuUs - own.cpuUs, 1)} µs of CPU) per request`,
        );
      }
    }
    const memory =
      options.only === undefined || options.only.has('memory') ? await workerCost() : undefined;
    if (memory !== undefined) {
      console.log(
        `\neach started worker: RSS +${memory.rssMiB.map((mb) => fmt(mb, 1)).join(', ')} MiB ` +
          `(median ${fmt(median(memory.rssMiB), 1)}), ready in ` +
          `${memory.startMs.map((ms) => fmt(ms)).join(', ')} ms`,
      );
    }
    console.log(`load ${load.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}`);
    if (options.json !== undefined) {
      const data = { node: process.version, runs, seconds: options.seconds, report, memory };
      writeFileSync(options.json, `${JSON.stringify(data, null, 2)}\n`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Loaded as a worker module, the file only provides its default export.
if (isMainThread && process.argv[1] === SELF) {
  const [role, ...rest] = process.argv.slice(2);
  const main =
    role === 'client'
      ? clientMain(rest)
      : role === 'memory'
        ? memoryMain()
        : driverMain(process.argv.slice(2));
  main.catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}

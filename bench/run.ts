/**
 * `npm run bench`: runs each scenario against the project and against a plain `node:net`
 * baseline doing the same bytes, in the same run, and prints the table (also written as JSON
 * and as an SVG chart of the ratios).
 *
 * Every server and every client is its own process. The two sides of a scenario run their
 * measured runs alternately (project, baseline, baseline, project, ...) so that both meet the
 * same background load; figures are medians over the runs, and each ratio is the median of the
 * per-round ratios. See docs/benchmarks.md.
 *
 * Options: `--quick` (smoke run), `--only=a,c` (scenarios by letter), `--runs=N`,
 * `--clients=N` (client processes for (a), default 1), `--cross` (also project server +
 * baseline client and the reverse), `--against=DIR` (also the library of another checkout
 * with a built dist/, to measure a change before and after in the same run), `--cpu-prof=server|client|both` (profile the servers or
 * clients of both sides, into `DIR/<scenario>/<side>-<part>/`; `--cpu-prof-dir=DIR`), `--out=DIR`.
 */

import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type Command,
  type Impl,
  type Job,
  type JobResult,
  LIBRARY_ROOT_ENV,
  type Reply,
} from './protocol.js';
import { chart, combine, figures, pairedRatio, type RowReport, type Run, table } from './report.js';
import { FULL, QUICK, type Scale, type Scenario, scenarios } from './scenarios.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Options {
  quick: boolean;
  only: Set<string> | undefined;
  runs: number | undefined;
  clients: number;
  cross: boolean;
  profile: 'server' | 'client' | 'both' | undefined;
  profileDir: string | undefined;
  out: string | undefined;
  against: string | undefined;
}

function parseOptions(args: readonly string[]): Options {
  const options: Options = {
    quick: false,
    only: undefined,
    runs: undefined,
    clients: 1,
    cross: false,
    profile: undefined,
    profileDir: undefined,
    out: undefined,
    against: undefined,
  };
  for (const arg of args) {
    const [key, value] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    switch (key) {
      case '--quick':
        options.quick = true;
        break;
      case '--only':
        options.only = new Set((value ?? '').split(',').map((s) => s.trim().toLowerCase()));
        break;
      case '--runs':
        options.runs = Math.max(1, Number(value));
        break;
      case '--clients':
        options.clients = Math.max(1, Math.min(8, Number(value)));
        break;
      case '--cross':
        options.cross = true;
        break;
      case '--cpu-prof':
        if (value !== 'server' && value !== 'client' && value !== 'both') {
          throw new Error('--cpu-prof=server|client|both');
        }
        options.profile = value;
        break;
      case '--cpu-prof-dir':
        options.profileDir = value;
        break;
      case '--out':
        options.out = value;
        break;
      case '--against':
        options.against = value === undefined ? undefined : resolve(value);
        break;
      default:
        throw new Error(`unknown option ${arg} (see docs/benchmarks.md)`);
    }
  }
  return options;
}

/** A child process spoken to one command at a time. */
class Child {
  readonly process: ChildProcess;
  /** For messages: `project server`, `baseline client`, ... */
  readonly label: string;
  #pending: { resolve(reply: Reply): void; reject(err: Error): void } | undefined;
  #exited: Error | undefined;

  private constructor(process: ChildProcess, label: string) {
    this.process = process;
    this.label = label;
    process.on('message', (reply: Reply) => {
      const pending = this.#pending;
      this.#pending = undefined;
      if (pending === undefined) return;
      if ('error' in reply) pending.reject(new Error(reply.error));
      else pending.resolve(reply);
    });
    process.on('exit', (code, signal) => {
      this.#exited = new Error(`the ${this.label} exited (${code ?? signal})`);
      this.#pending?.reject(this.#exited);
      this.#pending = undefined;
    });
  }

  /** Forks `script` and waits for it to say it is ready. */
  static async start(
    script: string,
    args: string[],
    execArgv: string[],
    env: NodeJS.ProcessEnv,
  ): Promise<Child> {
    const stdio = ['ignore', 'inherit', 'inherit', 'ipc'] as const;
    const child = new Child(
      fork(join(HERE, script), args, { execArgv, env, stdio: [...stdio] }),
      `${args[0]} ${script.replace('.js', '')}`,
    );
    await child.#next(30_000);
    return child;
  }

  #next(timeoutMs: number): Promise<Reply> {
    if (this.#exited !== undefined) return Promise.reject(this.#exited);
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending = undefined;
        reject(new Error(`the ${this.label} gave no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending = {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
    });
  }

  async ask(command: Command, timeoutMs: number): Promise<Reply> {
    const answer = this.#next(timeoutMs);
    this.process.send(command);
    return answer;
  }

  async run(job: Job, timeoutMs: number): Promise<JobResult> {
    const reply = await this.ask({ cmd: 'run', job }, timeoutMs);
    if (!('result' in reply)) throw new Error('unexpected answer to run');
    return reply.result;
  }

  async cpu(): Promise<number> {
    const reply = await this.ask({ cmd: 'cpu' }, 10_000);
    return 'cpuUs' in reply ? reply.cpuUs : Number.NaN;
  }

  async rss(): Promise<number> {
    const reply = await this.ask({ cmd: 'rss' }, 10_000);
    return 'rss' in reply ? reply.rss : Number.NaN;
  }

  /** Asks the child to exit cleanly (a CPU profile is written then); kills it if it won't. */
  async stop(): Promise<void> {
    const child = this.process;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      child.send({ cmd: 'exit' } satisfies Command);
    } catch {
      child.kill('SIGKILL');
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Who plays which part in a side of a scenario. */
interface Side {
  readonly name: string;
  readonly server: Impl;
  readonly client: Impl;
  /** Another checkout whose library the project parts load (`--against`). */
  readonly root?: string | undefined;
}

const SIDES: readonly Side[] = [
  { name: 'project', server: 'project', client: 'project' },
  { name: 'baseline', server: 'baseline', client: 'baseline' },
];
const CROSS_SIDES: readonly Side[] = [
  { name: 'project server', server: 'project', client: 'baseline' },
  { name: 'project client', server: 'baseline', client: 'project' },
];

/** Which server process a side talks to: `project`, `baseline` or `against`. */
function serverKey(side: Side): string {
  return side.root === undefined ? side.server : 'against';
}

const live = new Set<Child>();

/** Longest a run of the quick suite may take. */
const QUICK_TIMEOUT_MS = 20_000;

async function startChild(
  script: string,
  args: string[],
  execArgv: string[],
  root: string | undefined,
): Promise<Child> {
  const env = { ...process.env };
  if (root !== undefined) env[LIBRARY_ROOT_ENV] = root;
  else delete env[LIBRARY_ROOT_ENV];
  const child = await Child.start(script, args, execArgv, env);
  live.add(child);
  child.process.once('exit', () => live.delete(child));
  return child;
}

async function measure(
  scenario: Scenario,
  scale: Scale,
  options: Options,
  socketDir: string,
): Promise<RowReport> {
  const sides: Side[] = [...SIDES, ...(options.cross ? CROSS_SIDES : [])];
  if (options.against !== undefined) {
    sides.push({ name: 'against', server: 'project', client: 'project', root: options.against });
  }
  // Every side is profiled, each into its own directory, so that they can be compared.
  const profileArgs = (part: 'server' | 'client', who: string): string[] =>
    options.profile === part || options.profile === 'both'
      ? ['--cpu-prof', `--cpu-prof-dir=${join(options.profileDir!, scenario.id, `${who}-${part}`)}`]
      : [];
  const servers = new Map<string, Child>();
  const clients = new Map<string, Child[]>();
  const report: RowReport = {
    id: scenario.id,
    title: scenario.title,
    label: scenario.label,
    metric: scenario.metric,
    target: scenario.target,
    // The issue's 2 GB/s end to end is for 1 GiB transfers, not the quick run's small ones.
    minMbps: scenario.metric === 'mbps' && !options.quick ? 2000 : undefined,
    error: undefined,
    sides: [],
  };
  const socketOf = (side: Side): string =>
    join(socketDir, `${scenario.id}-${serverKey(side)}.sock`);
  try {
    for (const side of sides) {
      const key = serverKey(side);
      if (servers.has(key)) continue;
      const args = [side.server, scenario.mode, socketOf(side)];
      args.push(...scenario.responseSizes(scale).map(String));
      servers.set(key, await startChild('server.js', args, profileArgs('server', key), side.root));
    }
    const processes = scenario.clientProcesses;
    for (const side of sides) {
      const group: Child[] = [];
      const who = side.root === undefined ? side.client : 'against';
      for (let i = 0; i < processes; i++) {
        const args = [side.client, socketOf(side)];
        group.push(await startChild('client.js', args, profileArgs('client', who), side.root));
      }
      clients.set(side.name, group);
    }
    const runOnce = async (side: Side, job: Job): Promise<Run> => {
      const group = clients.get(side.name)!;
      const server = servers.get(serverKey(side))!;
      const timeout = options.quick ? QUICK_TIMEOUT_MS : scenario.timeoutMs;
      const cpu0 = await server.cpu();
      const results = await Promise.all(group.map((c) => c.run(job, timeout)));
      return combine(results, (await server.cpu()) - cpu0);
    };
    for (const side of sides) await runOnce(side, scenario.warmup(scale, processes));
    const runs = new Map<string, Run[]>(sides.map((s) => [s.name, []]));
    const rounds = options.runs ?? scale.runs;
    for (let round = 0; round < rounds; round++) {
      // Alternate the order so neither side always runs right after another.
      const order = round % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        runs.get(side.name)!.push(await runOnce(side, scenario.job(scale, processes)));
      }
    }
    const serverRss = new Map<string, number>();
    for (const [key, server] of servers) serverRss.set(key, await server.rss());
    const base = runs.get('baseline')!;
    for (const side of sides) {
      let clientRss = 0;
      for (const c of clients.get(side.name)!) clientRss = Math.max(clientRss, await c.rss());
      const own = runs.get(side.name)!;
      report.sides.push({
        name: side.name,
        ratio: pairedRatio(own, base, scenario.metric),
        figures: figures(
          own,
          scenario.metric,
          side.server,
          side.client,
          serverRss.get(serverKey(side))!,
          clientRss,
        ),
      });
    }
    if (options.against !== undefined) {
      report.projectVsAgainst = pairedRatio(
        runs.get('project')!,
        runs.get('against')!,
        scenario.metric,
      );
    }
  } catch (err) {
    report.error = err instanceof Error ? err.message.split('\n')[0]! : String(err);
  } finally {
    const all = [...servers.values(), ...[...clients.values()].flat()];
    await Promise.all(all.map((c) => c.stop()));
  }
  return report;
}

function machine(): Record<string, string | number> {
  const cpu = cpus();
  return {
    cpu: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
  };
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const scale: Scale = options.quick ? QUICK : FULL;
  const selected = scenarios(options.clients).filter(
    (s) => options.only === undefined || options.only.has(s.letter) || options.only.has(s.id),
  );
  if (selected.length === 0) throw new Error('--only selected no scenario (letters a to e)');
  // Only a complete default run replaces the committed results.
  const complete =
    !options.quick &&
    options.only === undefined &&
    options.runs === undefined &&
    options.profile === undefined &&
    !options.cross &&
    options.against === undefined &&
    options.clients === 1;
  const out = options.out ?? join(ROOT, 'bench', 'results', complete ? '' : 'partial');
  if (options.profile !== undefined) {
    options.profileDir ??= mkdtempSync(join(tmpdir(), 'simple-ipc-prof-'));
  }
  const socketDir = mkdtempSync(join(tmpdir(), 'sipc-bench-'));
  const stopAll = (): void => {
    for (const child of live) child.process.kill('SIGKILL');
    rmSync(socketDir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    stopAll();
    process.exit(130);
  });
  const load = [loadavg()[0]!];
  const started = Date.now();
  const rows: RowReport[] = [];
  try {
    for (const scenario of selected) {
      process.stderr.write(`bench: ${scenario.title} ...`);
      const t0 = Date.now();
      const row = await measure(scenario, scale, options, socketDir);
      rows.push(row);
      process.stderr.write(
        row.error === undefined
          ? ` ${((Date.now() - t0) / 1000).toFixed(1)} s\n`
          : ` FAILED: ${row.error}\n`,
      );
    }
  } finally {
    stopAll();
  }
  load.push(loadavg()[0]!);
  const seconds = (Date.now() - started) / 1000;
  const info = machine();
  const runs = options.runs ?? scale.runs;
  const subtitle = `${info.cores} x ${info.cpu}, Node ${info.node}; ${options.quick ? 'quick, ' : ''}median of ${runs} runs; load ${load.map((l) => l.toFixed(1)).join(' -> ')}`;
  const text = table(rows);
  process.stdout.write(`\n${text}\n\n${subtitle}; ${seconds.toFixed(0)} s in all\n`);
  if (options.against !== undefined) {
    const pairs = rows.map((r) => `${r.id} ${r.projectVsAgainst?.toFixed(2) ?? '-'}`);
    process.stdout.write(`project / against (${options.against}): ${pairs.join(', ')}\n`);
  }
  process.stdout.write(
    'ratio: median over rounds of (side / baseline of the same round); >1 is faster.\n',
  );
  mkdirSync(out, { recursive: true });
  const record = {
    date: new Date(started).toISOString(),
    machine: info,
    options: {
      quick: options.quick,
      runs,
      clientsForA: options.clients,
      scale,
    },
    loadAverage: { start: load[0], end: load[1] },
    seconds: Math.round(seconds),
    rows,
  };
  writeFileSync(join(out, 'latest.json'), `${JSON.stringify(record, null, 2)}\n`);
  writeFileSync(join(out, 'chart.svg'), chart(rows, subtitle));
  writeFileSync(join(out, 'table.md'), `${text}\n\n${subtitle}\n`);
  process.stdout.write(`written: ${join(out, 'latest.json')}, chart.svg, table.md\n`);
  if (options.profileDir !== undefined) {
    process.stdout.write(`CPU profiles: ${options.profileDir}\n`);
  }
  if (rows.some((r) => r.error !== undefined)) process.exitCode = 1;
}

await main();

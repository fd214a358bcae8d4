/**
 * Optional, local only: times Git's own C peers against ours on this machine.
 *
 *   SIMPLE_IPC_GIT_TEST_TOOL=/path/to/git/t/helper/test-tool node dist/bench/git-compare.js
 *
 * Without that variable it says so and exits 0 (it is not part of `npm run bench`). Each
 * workload is one run of a client command (`test-tool simple-ipc multiple` / `sendbytes`, or our
 * CLI's drop-in) against a test daemon (`run-daemon`, C or ours), timed from spawn to exit;
 * every client x server pair runs once per round, rounds alternate the order, and the figure is
 * the median. The result is each pair's time divided by the C client + C server time, so below
 * 1 is faster than C. Three more columns: our daemon in two processes sharing its socket
 * (`run-daemon --processes=2`), and the plain `node:net` server and client of the benchmarks
 * (`server.ts`, `git-compare-client.ts`) facing Git's C peers: how far Node itself gets on this
 * machine. Node's start-up time is in every run of a Node client; it is printed separately so
 * that it can be taken into account.
 *
 * Options: `--quick`, `--runs=N`.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ActiveState, getActiveState, sendCommand } from '../src/index.js';
import { median } from './report.js';

const CLI = fileURLToPath(new URL('../../bin/simple-ipc.js', import.meta.url));
const THREADS = 8;

type Peer = 'C' | 'ours';
/** A client: Git's, ours, or a plain `node:net` client doing the same bytes (a reference). */
type ClientPeer = Peer | 'baseline';
/**
 * A server: Git's, ours, ours in two processes sharing the socket (`--processes=2`), or the
 * benchmark's plain `node:net` baseline server (a reference only).
 */
type ServerPeer = Peer | 'ours-2' | 'baseline';

const BASELINE_SERVER = fileURLToPath(new URL('./server.js', import.meta.url));
const BASELINE_CLIENT = fileURLToPath(new URL('./git-compare-client.js', import.meta.url));

interface Workload {
  readonly name: string;
  readonly args: readonly string[];
  /** What a successful run prints last. */
  readonly expect: RegExp;
}

function pad8(n: number): string {
  return String(n).padStart(8, '0');
}

function workloads(quick: boolean): Workload[] {
  const batch = quick ? 200 : 2000;
  const sequential = quick ? 500 : 4000;
  const bytes = quick ? 10_000_000 : 100_000_000;
  return [
    {
      name: `(a) multiple: ${THREADS} threads x ${batch} small requests`,
      args: ['multiple', `--threads=${THREADS}`, `--batchsize=${batch}`, '--bytecount=1'],
      expect: new RegExp(`client \\(good ${THREADS * batch}\\) \\(join 0\\), \\(errors 0\\)`),
    },
    {
      name: `(b) multiple: 1 thread x ${sequential} small requests`,
      args: ['multiple', '--threads=1', `--batchsize=${sequential}`, '--bytecount=1'],
      expect: new RegExp(`client \\(good ${sequential}\\) \\(join 0\\), \\(errors 0\\)`),
    },
    {
      name: `(c) sendbytes: one ${bytes / 1e6} MB request`,
      args: ['sendbytes', `--bytecount=${bytes}`],
      expect: new RegExp(`sent:x${pad8(bytes)} rcvd:x${pad8(bytes)}`),
    },
  ];
}

function command(peer: ClientPeer, tool: string, args: readonly string[]): [string, string[]] {
  if (peer === 'C') return [tool, ['simple-ipc', ...args]];
  return [process.execPath, [peer === 'ours' ? CLI : BASELINE_CLIENT, ...args]];
}

/** Runs a client command; resolves with its wall time in ms, or rejects if it failed. */
function timeClient(file: string, args: string[], expect: RegExp): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    let errors = '';
    child.stdout.setEncoding('latin1').on('data', (text: string) => {
      tail = (tail + text).slice(-200);
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      errors += text;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (code === 0 && expect.test(tail)) resolve(ms);
      else reject(new Error(`${args.join(' ')}: exit ${code}: ${errors.trim()} ${tail.trim()}`));
    });
  });
}

async function startDaemon(peer: ServerPeer, tool: string, path: string): Promise<ChildProcess> {
  const daemon = ['run-daemon', `--name=${path}`, `--threads=${THREADS}`];
  const [file, args] =
    peer === 'baseline'
      ? [process.execPath, [BASELINE_SERVER, 'baseline', 'ping', path]]
      : peer === 'ours-2'
        ? command('ours', tool, [...daemon, '--processes=2'])
        : command(peer, tool, daemon);
  const child = spawn(file, args, { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    if ((await getActiveState(path)) === ActiveState.LISTENING) return child;
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`the ${peer} daemon did not start at ${path}`);
}

async function stopDaemon(peer: ServerPeer, child: ChildProcess, path: string): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  if (peer === 'baseline') child.kill('SIGTERM');
  else await sendCommand(path, 'quit').catch(() => child.kill('SIGKILL'));
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function main(): Promise<void> {
  const tool = process.env['SIMPLE_IPC_GIT_TEST_TOOL'];
  if (tool === undefined || tool === '') {
    process.stdout.write(
      'git-compare: skipped (set SIMPLE_IPC_GIT_TEST_TOOL to the path of a built Git test-tool)\n',
    );
    return;
  }
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const runsArg = args.find((a) => a.startsWith('--runs='));
  const runs = runsArg ? Math.max(1, Number(runsArg.slice(7))) : quick ? 3 : 5;
  const dir = mkdtempSync(join(tmpdir(), 'sipc-gitcmp-'));
  const daemons = new Map<ServerPeer, { child: ChildProcess; path: string }>();
  try {
    for (const peer of ['C', 'ours', 'ours-2', 'baseline'] as const) {
      const path = join(dir, `${peer}.sock`);
      daemons.set(peer, { child: await startDaemon(peer, tool, path), path });
    }
    const startup = {
      C: [] as number[],
      ours: [] as number[],
    };
    for (let i = 0; i < runs; i++) {
      for (const peer of ['C', 'ours'] as const) {
        const [file, a] = command(peer, tool, ['SUPPORTS_SIMPLE_IPC']);
        startup[peer].push(await timeClient(file, a, /^$/));
      }
    }
    const pairs: { client: ClientPeer; server: ServerPeer; title: string }[] = [
      { client: 'C', server: 'C', title: 'C client, C server' },
      { client: 'C', server: 'ours', title: 'C client, our server' },
      { client: 'C', server: 'ours-2', title: 'C client, our server in 2 processes' },
      { client: 'ours', server: 'C', title: 'our client, C server' },
      { client: 'ours', server: 'ours', title: 'our client, our server' },
      { client: 'C', server: 'baseline', title: 'C client, node:net server' },
      { client: 'baseline', server: 'C', title: 'node:net client, C server' },
    ];
    const lines = [
      `| workload | ${pairs.map((pair) => pair.title).join(' | ')} |`,
      `|---|${pairs.map(() => '---:').join('|')}|`,
    ];
    for (const workload of workloads(quick)) {
      process.stderr.write(`git-compare: ${workload.name} ...\n`);
      const times = pairs.map(() => [] as number[]);
      for (let round = -1; round < runs; round++) {
        const forward = pairs.map((_, i) => i);
        const order = round % 2 === 0 ? forward : forward.reverse();
        for (const i of order) {
          const pair = pairs[i]!;
          const path = daemons.get(pair.server)!.path;
          const [file, a] = command(pair.client, tool, [...workload.args, `--name=${path}`]);
          const ms = await timeClient(file, a, workload.expect);
          if (round >= 0) times[i]!.push(ms); // round -1 warms up
        }
      }
      const base = median(times[0]!);
      const cells = times.map((t, i) => {
        const ms = median(t);
        return i === 0 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(0)} ms (${(ms / base).toFixed(2)})`;
      });
      lines.push(`| ${workload.name} | ${cells.join(' | ')} |`);
    }
    process.stdout.write(`\n${lines.join('\n')}\n\n`);
    process.stdout.write(
      `Median of ${runs} runs; (x) = time / C-with-C time. Process start-up alone: C ` +
        `${median(startup.C).toFixed(0)} ms, ours (node) ${median(startup.ours).toFixed(0)} ms.\n`,
    );
  } finally {
    for (const [peer, { child, path }] of daemons) await stopDaemon(peer, child, path);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

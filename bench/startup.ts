/**
 * Start-up, timed from spawn to exit, in two groups of commands started in turn (interleaved, so
 * that all meet the same background load; the order is reversed every other round):
 *
 * - **pairs**: one request each to a server (the library's, in a process of its own), against
 *   the plain `node:net` script that sends the same bytes (`bench/startup/plain.mjs`):
 *   `simple-ipc call PATH ping`, a script that imports `simple-ipc/client` and sends one request
 *   (`bench/startup/client.mjs`) and one that imports the main entry (`index.mjs`). Each is
 *   reported as the median over the rounds of its time divided by the plain script's time of the
 *   same round.
 * - **cli**: `node -e 0` and CLI commands that do no I/O, with and without Node's compile cache,
 *   reported as the median of the CLI's time minus `node -e 0`'s time of the same round.
 *
 * Every row also gets its median wall time and the children's mean CPU time (user + system, from
 * `/proc/self/stat`, in ticks of 10 ms, so only the mean over many rounds says anything; less
 * moved by load than wall time).
 *
 *   node dist/bench/startup.js [--runs=41] [--only=pairs|cli] [--node=PATH] [--env=NAME=VALUE ...]
 *                              [--against=DIR]
 *
 * `--against=DIR` adds the same commands run from another checkout (`DIR/bin` and
 * `DIR/bench/startup/*.mjs` where they exist, with `DIR/dist` built), to compare two versions in
 * one run. The Node that runs this script runs the children unless `--node` says otherwise.
 */

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './report.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const args = process.argv.slice(2);
const option = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const runs = Math.max(1, Number(option('runs') ?? 41));
const only = option('only');
const node = option('node') ?? process.execPath;
const against = option('against');
const env: NodeJS.ProcessEnv = { ...process.env };
for (const arg of args.filter((a) => a.startsWith('--env='))) {
  const [name, ...value] = arg.slice(6).split('=');
  env[name!] = value.join('=');
}

// Node's switch for its compile cache (Node 22.1+; the CLI turns the cache on where it exists).
const NO_CACHE = { NODE_DISABLE_COMPILE_CACHE: '1' };

interface Row {
  title: string;
  argv: string[];
  expect: number;
  env?: NodeJS.ProcessEnv;
  /** The row this one is compared with: its ratio (pairs) or difference (cli) to that row. */
  base?: number;
  ratio?: boolean;
}
const rows: Row[] = [];

const dir = mkdtempSync(join(tmpdir(), 'simple-ipc-startup-'));
const socket = join(dir, 's');
let server: ReturnType<typeof spawn> | undefined;

if (only !== 'cli') {
  // The server runs in a process of its own: this one blocks in spawnSync while a child runs.
  server = spawn(node, [join(ROOT, 'bench/startup/server.mjs'), socket], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    server!.once('error', reject);
    server!.once('exit', (code) => reject(new Error(`startup server: exit ${code}`)));
    server!.stdout!.once('data', () => resolve());
  });
  const plain = rows.length;
  const pair = (title: string, argv: string[]): void => {
    rows.push({ title, argv, expect: 0, base: plain, ratio: true });
  };
  rows.push({
    title: 'plain node:net script',
    argv: [join(ROOT, 'bench/startup/plain.mjs'), socket],
    expect: 0,
  });
  pair('simple-ipc call PATH ping', [join(ROOT, 'bin/simple-ipc.js'), 'call', socket, 'ping']);
  pair('script importing simple-ipc/client', [join(ROOT, 'bench/startup/client.mjs'), socket]);
  pair('script importing simple-ipc', [join(ROOT, 'bench/startup/index.mjs'), socket]);
  if (against !== undefined) {
    pair('against: call PATH ping', [join(against, 'bin/simple-ipc.js'), 'call', socket, 'ping']);
    for (const name of ['client', 'index']) {
      const script = join(against, 'bench/startup', `${name}.mjs`);
      if (existsSync(script)) pair(`against: ${name}.mjs`, [script, socket]);
    }
  }
}

if (only !== 'pairs') {
  const cli = join(ROOT, 'bin/simple-ipc.js');
  const nodeRow = rows.length;
  const add = (title: string, argv: string[], expect: number, extra?: NodeJS.ProcessEnv): void => {
    rows.push({ title, argv, expect, base: nodeRow, ...(extra && { env: extra }) });
  };
  rows.push({ title: 'node -e 0', argv: ['-e', '0'], expect: 0 });
  add('simple-ipc --version', [cli, '--version'], 0);
  add('simple-ipc SUPPORTS_SIMPLE_IPC', [cli, 'SUPPORTS_SIMPLE_IPC'], 0);
  // A client command up to its first system call on the socket: the probe of a missing path.
  add('simple-ipc send (no server)', [cli, 'send', '--name=/nonexistent/x'], 1);
  add(
    'simple-ipc SUPPORTS_SIMPLE_IPC, compile cache off',
    [cli, 'SUPPORTS_SIMPLE_IPC'],
    0,
    NO_CACHE,
  );
  add(
    'simple-ipc send (no server), compile cache off',
    [cli, 'send', '--name=/nonexistent/x'],
    1,
    NO_CACHE,
  );
  if (against !== undefined) {
    const other = join(against, 'bin', 'simple-ipc.js');
    add('against: SUPPORTS_SIMPLE_IPC', [other, 'SUPPORTS_SIMPLE_IPC'], 0);
    add('against: send (no server)', [other, 'send', '--name=/nonexistent/x'], 1);
  }
}

// CPU time of this process's waited-for children, in ticks (fields 16 and 17 of stat).
function childTicks(): number {
  const stat = readFileSync('/proc/self/stat', 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[13]) + Number(fields[14]);
}

const wall = rows.map(() => [] as number[]);
const cpu = rows.map(() => [] as number[]);
const relative = rows.map(() => [] as number[]);
try {
  // One warm-up round (fills the compile cache where it is on), then the measured ones.
  for (let round = -1; round < runs; round++) {
    const order = rows.map((_, i) => i);
    if (round % 2 !== 0) order.reverse();
    const times: number[] = [];
    for (const i of order) {
      const row = rows[i]!;
      const ticks = childTicks();
      const t0 = performance.now();
      const result = spawnSync(node, row.argv, { env: { ...env, ...row.env }, stdio: 'ignore' });
      times[i] = performance.now() - t0;
      if (result.status !== row.expect) {
        throw new Error(`${row.title}: exit ${result.status}, expected ${row.expect}`);
      }
      if (round >= 0) {
        wall[i]!.push(times[i]);
        cpu[i]!.push((childTicks() - ticks) * 10);
      }
    }
    if (round < 0) continue;
    rows.forEach((row, i) => {
      if (row.base === undefined) return;
      const base = times[row.base]!;
      relative[i]!.push(row.ratio === true ? times[i]! / base : times[i]! - base);
    });
  }
} finally {
  server?.stdin!.end();
  rmSync(dir, { recursive: true, force: true });
}

const loads = readFileSync('/proc/loadavg', 'latin1').split(' ').slice(0, 3).join(' ');
process.stdout.write(
  `Node ${spawnSync(node, ['-v']).stdout.toString().trim()}, ${runs} rounds, load average ${loads} at the end\n`,
);
process.stdout.write('| command | wall ms | relative | mean CPU ms |\n|---|--:|--:|--:|\n');
function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}
rows.forEach((row, i) => {
  const rel =
    row.base === undefined
      ? ''
      : row.ratio === true
        ? `${median(relative[i]!).toFixed(3)}×`
        : `+${median(relative[i]!).toFixed(1)} ms`;
  process.stdout.write(
    `| \`${row.title}\` | ${median(wall[i]!).toFixed(1)} | ${rel} | ${mean(cpu[i]!).toFixed(1)} |\n`,
  );
});

/**
 * CLI start-up against Node's own: `node -e 0` and CLI commands that do no I/O, started in turn
 * (interleaved, so that all meet the same background load), each timed from spawn to exit. It
 * prints the median wall time of each, the median of the CLI's time minus `node -e 0`'s time of
 * the same round, and the children's CPU time (user + system, from `/proc/self/stat`, in ticks
 * of 10 ms: coarse, but less moved by load than wall time).
 *
 *   node dist/bench/startup.js [--runs=21] [--node=PATH] [--env=NAME=VALUE ...] [--against=DIR]
 *
 * `--against=DIR` adds the same commands run by the CLI of another checkout (`DIR/bin`, with
 * `DIR/dist` built), to compare two versions in one run.
 * The Node that runs this script runs the children unless `--node` says otherwise.
 */

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './report.js';

const CLI = fileURLToPath(new URL('../../bin/simple-ipc.js', import.meta.url));

const args = process.argv.slice(2);
const runsArg = args.find((a) => a.startsWith('--runs='));
const runs = runsArg === undefined ? 21 : Math.max(1, Number(runsArg.slice(7)));
const nodeArg = args.find((a) => a.startsWith('--node='));
const node = nodeArg === undefined ? process.execPath : nodeArg.slice(7);
const env: NodeJS.ProcessEnv = { ...process.env };
for (const arg of args.filter((a) => a.startsWith('--env='))) {
  const [name, ...value] = arg.slice(6).split('=');
  env[name!] = value.join('=');
}

// Node's switch for its compile cache (Node 22.1+; the CLI turns the cache on where it exists).
const NO_CACHE = { NODE_DISABLE_COMPILE_CACHE: '1' };

const commands: { title: string; argv: string[]; expect: number; env?: NodeJS.ProcessEnv }[] = [
  { title: 'node -e 0', argv: ['-e', '0'], expect: 0 },
  { title: 'simple-ipc --version', argv: [CLI, '--version'], expect: 0 },
  { title: 'simple-ipc SUPPORTS_SIMPLE_IPC', argv: [CLI, 'SUPPORTS_SIMPLE_IPC'], expect: 0 },
  // A client command up to its first system call on the socket: the probe of a missing path.
  { title: 'simple-ipc send (no server)', argv: [CLI, 'send', '--name=/nonexistent/x'], expect: 1 },
  {
    title: 'simple-ipc SUPPORTS_SIMPLE_IPC, compile cache off',
    argv: [CLI, 'SUPPORTS_SIMPLE_IPC'],
    expect: 0,
    env: NO_CACHE,
  },
  {
    title: 'simple-ipc send (no server), compile cache off',
    argv: [CLI, 'send', '--name=/nonexistent/x'],
    expect: 1,
    env: NO_CACHE,
  },
];
const againstArg = args.find((a) => a.startsWith('--against='));
if (againstArg !== undefined) {
  const other = join(againstArg.slice(10), 'bin', 'simple-ipc.js');
  commands.push(
    { title: 'against: SUPPORTS_SIMPLE_IPC', argv: [other, 'SUPPORTS_SIMPLE_IPC'], expect: 0 },
    {
      title: 'against: send (no server)',
      argv: [other, 'send', '--name=/nonexistent/x'],
      expect: 1,
    },
  );
}

// CPU time of this process's waited-for children, in ticks (fields 16 and 17 of stat).
function childTicks(): number {
  const stat = readFileSync('/proc/self/stat', 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[13]) + Number(fields[14]);
}

const wall = commands.map(() => [] as number[]);
const cpu = commands.map(() => [] as number[]);
const overNode = commands.map(() => [] as number[]);
// One warm-up round (fills the compile cache where it is on), then the measured ones.
for (let round = -1; round < runs; round++) {
  const order = commands.map((_, i) => i);
  if (round % 2 !== 0) order.reverse();
  const times: number[] = [];
  for (const i of order) {
    const ticks = childTicks();
    const t0 = performance.now();
    const result = spawnSync(node, commands[i]!.argv, {
      env: { ...env, ...commands[i]!.env },
      stdio: 'ignore',
    });
    times[i] = performance.now() - t0;
    if (result.status !== commands[i]!.expect) {
      throw new Error(
        `${commands[i]!.title}: exit ${result.status}, expected ${commands[i]!.expect}`,
      );
    }
    if (round >= 0) {
      wall[i]!.push(times[i]);
      cpu[i]!.push((childTicks() - ticks) * 10);
    }
  }
  if (round >= 0) for (const i of order) overNode[i]!.push(times[i]! - times[0]!);
}

process.stdout.write(`Node ${spawnSync(node, ['-v']).stdout.toString().trim()}, ${runs} rounds\n`);
process.stdout.write('| command | wall ms | over node -e 0 ms | CPU ms |\n|---|--:|--:|--:|\n');
commands.forEach((command, i) => {
  process.stdout.write(
    `| \`${command.title}\` | ${median(wall[i]!).toFixed(1)} | ${
      i === 0 ? '' : median(overNode[i]!).toFixed(1)
    } | ${median(cpu[i]!).toFixed(0)} |\n`,
  );
});

/**
 * What the diagnostics channels cost a process that does not subscribe to them: this checkout
 * against another one built without them (`--against=DIR`, its `dist/` built), the same
 * workload in both, in one run, the two taking turns.
 *
 *   node dist/bench/diagnostics-overhead.js --against=DIR [--runs=5] [--subscribed]
 *     [--callgrind [--small=1000] [--large=3000]]
 *
 * The workload is one process that serves and sends: `sendCommand()` round trips to its own
 * server, one at a time and 8 at once, so that both the server's and the client's request
 * paths run. Two figures per build, medians over `--runs` rounds:
 * - CPU time per round trip (user + system, `process.cpuUsage()`), measured over the requests
 *   after a warm-up. Moves with the machine's load.
 * - With `--callgrind`: instructions per round trip, counted by valgrind's callgrind for the
 *   whole process at two request counts (`--small`, `--large`), the difference divided by the
 *   difference in requests (start-up and warm-up cancel out). Steadier on a loaded machine;
 *   slow (minutes a run).
 *
 * "vs against" is the median over rounds of (this build / against, the same round).
 *
 * `--subscribed` adds a run of this checkout with a subscriber on every channel (what
 * observing costs, for comparison).
 */

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Build {
  readonly name: string;
  readonly root: string;
  readonly subscribed: boolean;
}

/** The workload, in a child process: `worker ROOT REQUESTS SUBSCRIBED`. Prints CPU µs / request. */
async function worker(root: string, requests: number, subscribed: boolean): Promise<void> {
  const lib = (await import(pathToFileURL(join(root, 'dist', 'src', 'index.js')).href)) as {
    startServer: typeof import('../src/index.js').startServer;
    sendCommand: typeof import('../src/index.js').sendCommand;
  };
  if (subscribed) {
    const dc = await import('node:diagnostics_channel');
    const noop = (): void => {};
    for (const name of ['simple-ipc:client:request', 'simple-ipc:server:request']) {
      dc.tracingChannel(name).subscribe({
        start: noop,
        end: noop,
        asyncStart: noop,
        asyncEnd: noop,
        error: noop,
      });
    }
    for (const name of ['simple-ipc:server:rejected', 'simple-ipc:client:retry']) {
      dc.subscribe(name, noop);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'sipc-dc-'));
  const path = join(dir, 's');
  const server = await lib.startServer(path, (_request, reply) => reply('pong'));
  const round = async (count: number): Promise<void> => {
    // Half one at a time (latency path), half 8 at once (the pool).
    for (let i = 0; i < count / 2; i++) await lib.sendCommand(path, 'ping');
    for (let i = 0; i < count / 2; i += 8) {
      await Promise.all(Array.from({ length: 8 }, () => lib.sendCommand(path, 'ping')));
    }
  };
  await round(400); // warm-up: the JIT settles
  const before = process.cpuUsage();
  await round(requests);
  const used = process.cpuUsage(before);
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`${(used.user + used.system) / requests}\n`);
}

function run(
  command: string,
  args: readonly string[],
): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ stdout, stderr, code }));
  });
}

async function cpuPerRequest(build: Build, requests: number): Promise<number> {
  const result = await run(process.execPath, [
    HERE,
    'worker',
    build.root,
    String(requests),
    String(build.subscribed),
  ]);
  if (result.code !== 0) throw new Error(`${build.name}: ${result.stderr}`);
  return Number(result.stdout.trim());
}

async function instructions(build: Build, requests: number): Promise<number> {
  const result = await run('valgrind', [
    '--tool=callgrind',
    '--callgrind-out-file=/dev/null',
    process.execPath,
    HERE,
    'worker',
    build.root,
    String(requests),
    String(build.subscribed),
  ]);
  const match = /Collected : (\d+)/.exec(result.stderr);
  if (result.code !== 0 || match === null) throw new Error(`${build.name}: ${result.stderr}`);
  return Number(match[1]);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function main(args: readonly string[]): Promise<void> {
  const option = (name: string): string | undefined =>
    args.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
  const against = option('against');
  if (against === undefined) throw new Error('--against=DIR (a checkout without the channels)');
  const runs = Number(option('runs') ?? 5);
  const callgrind = args.includes('--callgrind');
  const smallCount = Number(option('small') ?? 1000);
  const largeCount = Number(option('large') ?? 3000);
  const builds: Build[] = [
    { name: 'this checkout', root: ROOT, subscribed: false },
    { name: 'against', root: resolve(against), subscribed: false },
  ];
  if (args.includes('--subscribed')) {
    builds.push({ name: 'this, subscribed', root: ROOT, subscribed: true });
  }
  const cpu = new Map(builds.map((build) => [build.name, [] as number[]]));
  const counted = new Map(builds.map((build) => [build.name, [] as number[]]));
  for (let round = 0; round < runs; round++) {
    // The order flips every round, so that both meet the same background load.
    const order = round % 2 === 0 ? builds : [...builds].reverse();
    for (const build of order) {
      cpu.get(build.name)!.push(await cpuPerRequest(build, 4000));
      if (callgrind) {
        const small = await instructions(build, smallCount);
        const large = await instructions(build, largeCount);
        counted.get(build.name)!.push((large - small) / (largeCount - smallCount));
      }
    }
    process.stderr.write(`round ${round + 1} of ${runs}\n`);
  }
  const base = builds[1]!.name;
  process.stdout.write(
    `| build | CPU µs / round trip | vs against |${callgrind ? ' instructions / round trip | vs against |' : ''}\n`,
  );
  process.stdout.write(`|---|---:|---:|${callgrind ? '---:|---:|' : ''}\n`);
  for (const build of builds) {
    const c = median(cpu.get(build.name)!);
    // The median over rounds of this build's figure over the other one's of the same round.
    const paired = median(cpu.get(build.name)!.map((value, i) => value / cpu.get(base)![i]!));
    let line = `| ${build.name} | ${c.toFixed(1)} | ${((paired - 1) * 100).toFixed(2)}% |`;
    if (callgrind) {
      const i = median(counted.get(build.name)!);
      const iPaired = median(
        counted.get(build.name)!.map((value, k) => value / counted.get(base)![k]!),
      );
      line += ` ${Math.round(i).toLocaleString('en')} | ${((iPaired - 1) * 100).toFixed(2)}% |`;
    }
    process.stdout.write(`${line}\n`);
  }
  process.stdout.write(
    `runs: ${runs}; per-run CPU µs: ${builds
      .map(
        (b) =>
          `${b.name} [${cpu
            .get(b.name)!
            .map((v) => v.toFixed(1))
            .join(', ')}]`,
      )
      .join('; ')}\n`,
  );
  if (callgrind) {
    process.stdout.write(
      `per-run instructions: ${builds
        .map(
          (b) =>
            `${b.name} [${counted
              .get(b.name)!
              .map((v) => Math.round(v))
              .join(', ')}]`,
        )
        .join('; ')}\n`,
    );
  }
}

if (process.argv[2] === 'worker') {
  await worker(process.argv[3]!, Number(process.argv[4]), process.argv[5] === 'true');
} else {
  await main(process.argv.slice(2));
}

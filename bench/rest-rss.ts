/**
 * What a daemon built on the library costs at rest: the resident set (VmRSS, from
 * `/proc/PID/status`) of a process that waits, against `node -e 'setInterval(()=>{},1e9)'`.
 * Each kind is started `--runs` times in turn; each process is left a second to settle (and,
 * for the served rows, a second after its last request) before it is read. Medians, in MiB.
 *
 *   node dist/bench/rest-rss.js [--runs=7] [--node=PATH] [--requests=1000]
 *
 * Linux only (it reads /proc).
 */

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sendCommand } from '../src/client.js';
import { median } from './report.js';

const args = process.argv.slice(2);
const option = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const runs = Math.max(1, Number(option('runs') ?? 7));
const requests = Number(option('requests') ?? 1000);
const node = option('node') ?? process.execPath;
const INDEX = new URL('../src/index.js', import.meta.url).href;
const PING = new URL('./ping-handler.js', import.meta.url).href;

// Each prints `ready` when it waits (the servers once they listen on argv[1]).
const kinds: { title: string; code: string; serve: boolean }[] = [
  { title: "node -e 'setInterval(()=>{},1e9)'", code: 'setInterval(()=>{},1e9)', serve: false },
  {
    title: 'plain node:net server',
    code: `import { createServer } from 'node:net';
      createServer((s) => s.on('data', () => s.end('0008pong0000'))).listen(process.argv[1], () => console.log('ready'));`,
    serve: true,
  },
  {
    title: 'startServer(path, ping)',
    code: `const { startServer } = await import(${JSON.stringify(INDEX)});
      const { default: ping } = await import(${JSON.stringify(PING)});
      await startServer(process.argv[1], ping); console.log('ready');`,
    serve: true,
  },
  {
    title: 'startServer + stopWhenIdle + stopOnSignals',
    code: `const { startServer, stopWhenIdle, stopOnSignals } = await import(${JSON.stringify(INDEX)});
      const { default: ping } = await import(${JSON.stringify(PING)});
      const server = await startServer(process.argv[1], ping);
      stopWhenIdle(server, 3_600_000); stopOnSignals(server); console.log('ready');`,
    serve: true,
  },
];

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) / 1024;
}

const dir = mkdtempSync(join(tmpdir(), 'simple-ipc-rss-'));
const idle = kinds.map(() => [] as number[]);
const served = kinds.map(() => [] as number[]);
try {
  for (let run = 0; run < runs; run++) {
    for (const [i, kind] of kinds.entries()) {
      const path = join(dir, `s${run}-${i}`);
      const argv = ['--input-type=module', '-e', kind.code, path];
      const child = spawn(node, kind.serve ? argv : ['-e', kind.code], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      if (kind.serve) await new Promise((resolve) => child.stdout.once('data', resolve));
      await sleep(1000);
      idle[i]!.push(rssMiB(child.pid!));
      if (kind.serve) {
        for (let n = 0; n < requests; n++) await sendCommand(path, 'ping');
        await sleep(1000);
        served[i]!.push(rssMiB(child.pid!));
      }
      child.kill();
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const version = (await import('node:child_process')).spawnSync(node, ['-v']).stdout.toString();
process.stdout.write(`Node ${version.trim()}, ${runs} runs, ${requests} requests\n`);
process.stdout.write(
  `| process | RSS at rest, MiB | after ${requests} requests |\n|---|--:|--:|\n`,
);
kinds.forEach((kind, i) => {
  const after = kind.serve ? median(served[i]!).toFixed(1) : '';
  process.stdout.write(`| \`${kind.title}\` | ${median(idle[i]!).toFixed(1)} | ${after} |\n`);
});

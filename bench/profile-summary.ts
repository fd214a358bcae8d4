/**
 * Summarizes V8 CPU profiles (`node --cpu-prof`, or `npm run bench -- --cpu-prof=server`):
 * where the time goes, by function (self and total time) and by area (the project's files,
 * Node's internals, GC, idle).
 *
 *   node dist/bench/profile-summary.js [--top=N] FILE.cpuprofile...
 *
 * Several files are added together (e.g. the profiles of every run of one scenario).
 */

import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where a function lives, in short: `src/server.ts`, `node:net`, `(gc)`, ... */
function area(frame: CallFrame): string {
  const url = frame.url;
  if (url === '') return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  const project = /\/dist\/((?:src|cli|bench)\/[^/]+)\.js$/.exec(url);
  if (project) return `${project[1]}.ts`;
  if (url.startsWith('node:')) return url.replace(/^node:internal\//, 'node:internal/');
  return url.replace(/^file:\/\//, '');
}

function key(frame: CallFrame): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
  return frame.url === '' ? name : `${name} ${area(frame)}:${frame.lineNumber + 1}`;
}

/** Self and total microseconds by function, and self microseconds by area. */
function summarize(profiles: readonly Profile[]): {
  wallUs: number;
  self: Map<string, number>;
  total: Map<string, number>;
  areas: Map<string, number>;
} {
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const areas = new Map<string, number>();
  let wallUs = 0;
  const add = (map: Map<string, number>, k: string, us: number): void => {
    map.set(k, (map.get(k) ?? 0) + us);
  };
  for (const profile of profiles) {
    wallUs += profile.endTime - profile.startTime;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const selfById = new Map<number, number>();
    // A sample's time runs until the next sample.
    for (let i = 0; i < profile.samples.length; i++) {
      const us = profile.timeDeltas[i + 1] ?? 0;
      const id = profile.samples[i]!;
      selfById.set(id, (selfById.get(id) ?? 0) + us);
    }
    for (const [id, us] of selfById) {
      const frame = byId.get(id)!.callFrame;
      add(self, key(frame), us);
      add(areas, area(frame), us);
      // Total time: once per distinct function on the stack.
      const seen = new Set<string>();
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const k = key(byId.get(at)!.callFrame);
        if (seen.has(k)) continue;
        seen.add(k);
        add(total, k, us);
      }
    }
  }
  return { wallUs, self, total, areas };
}

function top(map: Map<string, number>, n: number, wallUs: number, filter = (_k: string) => true) {
  return [...map]
    .filter(([k]) => filter(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, us]) => `${((100 * us) / wallUs).toFixed(1).padStart(5)}%  ${k}`)
    .join('\n');
}

function main(): void {
  const args = process.argv.slice(2);
  const topArg = args.find((a) => a.startsWith('--top='));
  const n = topArg ? Number(topArg.slice(6)) : 25;
  const files = args.filter((a) => !a.startsWith('--'));
  if (files.length === 0) {
    process.stderr.write('usage: profile-summary [--top=N] FILE.cpuprofile...\n');
    process.exitCode = 2;
    return;
  }
  const profiles = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Profile);
  const { wallUs, self, total, areas } = summarize(profiles);
  const busy = wallUs - (self.get('(idle)') ?? 0);
  const out = [
    `${files.length} profile(s), ${(wallUs / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy (${((100 * busy) / wallUs).toFixed(0)}%)`,
    '',
    '-- self time by area (% of sampled time) --',
    top(areas, n, wallUs),
    '',
    '-- self time by function --',
    top(self, n, wallUs),
    '',
    "-- total time of the project's functions --",
    top(total, n, wallUs, (k) => /\s(src|cli)\//.test(k)),
    '',
  ];
  process.stdout.write(out.join('\n'));
}

main();

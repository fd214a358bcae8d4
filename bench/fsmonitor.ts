/**
 * Optional, local only: `git status` on a worktree of 100,000 files in 1,000 folders, with no
 * monitor, with Git's own `git fsmonitor--daemon`, and with examples/git-fsmonitor (ours).
 *
 *   npm run bench:fsmonitor                  # needs a Git 2.55 build (see below)
 *   node dist/bench/fsmonitor.js --runs=21 --files=100000 --folders=1000
 *
 * Git comes from `SIMPLE_IPC_GIT_DIR` (a folder with `bin/git`), else `../shared/git` beside the
 * project; without one it says so and exits 0. Each run first changes a few tracked files (5,
 * a different 5 each time) and adds one untracked file, then times `git status --porcelain`
 * from spawn to exit; the figure is the median. All three use `core.untrackedCache=true`
 * (what Git advises with a monitor; without it every status reads every folder anyway). The
 * monitors' memory is their resident set (VmRSS, VmHWM) after the runs.
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  accessSync,
  constants,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ActiveState, getActiveState, sendCommand } from '../src/index.js';
import { median } from './report.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MONITOR = join(ROOT, 'dist', 'examples', 'git-fsmonitor', 'main.js');

function option(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? fallback : Math.max(1, Number(arg.slice(name.length + 3)));
}

function gitDir(): string | undefined {
  const dir = resolve(process.env['SIMPLE_IPC_GIT_DIR'] || join(ROOT, '..', 'shared', 'git'));
  try {
    accessSync(join(dir, 'bin', 'git'), constants.X_OK);
    return dir;
  } catch {
    return undefined;
  }
}

function rss(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 120_000) {
  const end = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<void> {
  const build = gitDir();
  if (build === undefined) {
    process.stdout.write('fsmonitor bench: skipped (no Git build: set SIMPLE_IPC_GIT_DIR)\n');
    return;
  }
  const runs = option('runs', 11);
  const files = option('files', 100_000);
  const folders = option('folders', 1000);
  const git = join(build, 'bin', 'git');
  const top = mkdtempSync(join(tmpdir(), 'sipc-fsmbench-'));
  const root = join(top, 'w');
  const ipc = join(root, '.git', 'fsmonitor--daemon.ipc');
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GIT_')) env[k] = v;
  Object.assign(env, {
    HOME: join(top, 'home'),
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: join(top, 'home', '.gitconfig'),
    GIT_EXEC_PATH: join(build, 'bin'),
    GIT_AUTHOR_NAME: 'A',
    GIT_AUTHOR_EMAIL: 'a@example.com',
    GIT_COMMITTER_NAME: 'C',
    GIT_COMMITTER_EMAIL: 'c@example.com',
    LC_ALL: 'C',
  });
  mkdirSync(join(top, 'home'));
  const runGit = (args: string[]) => {
    const r = spawnSync(git, args, { cwd: root, env, maxBuffer: 1 << 28 });
    if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr.toString()}`);
    return r.stdout.toString();
  };
  const children: ChildProcess[] = [];
  try {
    process.stdout.write(`making ${files} files in ${folders} folders...\n`);
    spawnSync(git, ['init', '-q', '--template=', root], { env });
    runGit(['config', 'core.fsmonitor', 'false']);
    runGit(['config', 'core.untrackedCache', 'true']);
    const perFolder = Math.ceil(files / folders);
    const tracked: string[] = [];
    for (let d = 0; d < folders; d++) {
      const dir = `d${String(d).padStart(4, '0')}`;
      mkdirSync(join(root, dir));
      for (let f = 0; f < perFolder && tracked.length < files; f++) {
        const name = `${dir}/f${String(f).padStart(4, '0')}.txt`;
        writeFileSync(join(root, name), `${name}\n`);
        tracked.push(name);
      }
    }
    runGit(['add', '-A']);
    runGit(['commit', '-q', '-m', 'files']);
    runGit(['status', '--porcelain']);

    let edit = 0;
    const editAndTime = () => {
      for (let i = 0; i < 5; i++) {
        const name = tracked[(edit * 7919 + i * 104729) % tracked.length]!;
        writeFileSync(join(root, name), `edit ${edit}\n`);
      }
      writeFileSync(join(root, `new-${edit}.txt`), 'x\n');
      edit++;
      const start = performance.now();
      const r = spawnSync(git, ['status', '--porcelain'], { cwd: root, env, maxBuffer: 1 << 28 });
      const ms = performance.now() - start;
      if (r.status !== 0) throw new Error(`git status: ${r.stderr.toString()}`);
      return ms;
    };
    const measure = (label: string) => {
      editAndTime(); // warm-up: a first status after a change of monitor rescans
      editAndTime();
      const times = Array.from({ length: runs }, editAndTime);
      process.stdout.write(`  ${label}: median ${median(times).toFixed(1)} ms\n`);
      return median(times);
    };

    const results: { label: string; ms: number; memory?: { rss: number; hwm: number } }[] = [];
    results.push({ label: 'no monitor', ms: measure('no monitor') });

    runGit(['config', 'core.fsmonitor', 'true']);
    const daemonStart = performance.now();
    const gits = spawn(git, ['fsmonitor--daemon', 'run'], { cwd: root, env, stdio: 'ignore' });
    children.push(gits);
    await waitFor('Git daemon', async () => (await getActiveState(ipc)) === ActiveState.LISTENING);
    const gitsReady = performance.now() - daemonStart;
    results.push({ label: "Git's fsmonitor--daemon", ms: measure("Git's daemon") });
    const gitsMemory = rss(gits.pid!);
    results[1]!.memory = gitsMemory;
    await sendCommand(ipc, 'quit');
    await waitFor('Git daemon stops', () => Promise.resolve(gits.exitCode !== null));

    const oursStart = performance.now();
    const ours = spawn(process.execPath, [MONITOR, 'run'], { cwd: root, env, stdio: 'ignore' });
    children.push(ours);
    await waitFor('our monitor', async () => (await getActiveState(ipc)) === ActiveState.LISTENING);
    const oursReady = performance.now() - oursStart;
    results.push({ label: 'ours (examples/git-fsmonitor)', ms: measure('ours') });
    results[2]!.memory = rss(ours.pid!);
    await sendCommand(ipc, 'quit');
    await waitFor('our monitor stops', () => Promise.resolve(ours.exitCode !== null));

    const base = results[0]!.ms;
    const lines = [
      `\`git status --porcelain\`, ${files.toLocaleString('en')} files in ${folders.toLocaleString('en')} folders, ` +
        `5 tracked files changed and 1 file added before each run, median of ${runs} runs ` +
        `(Node ${process.version}, ${runGit(['--version']).trim()}):`,
      '',
      '| monitor | git status | vs no monitor | monitor memory (RSS / peak) | ready after start |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...results.map((r, i) => {
        const memory = r.memory
          ? `${r.memory.rss.toFixed(0)} / ${r.memory.hwm.toFixed(0)} MiB`
          : '';
        const ready =
          i === 1 ? `${gitsReady.toFixed(0)} ms` : i === 2 ? `${oursReady.toFixed(0)} ms` : '';
        return `| ${r.label} | ${r.ms.toFixed(1)} ms | ${(r.ms / base).toFixed(2)} | ${memory} | ${ready} |`;
      }),
      '',
      `ours / Git's daemon: ${(results[2]!.ms / results[1]!.ms).toFixed(2)}`,
    ];
    process.stdout.write(`\n${lines.join('\n')}\n`);
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(top, { recursive: true, force: true, maxRetries: 5 });
  }
}

await main();

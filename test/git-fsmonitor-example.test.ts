/**
 * examples/git-fsmonitor: a filesystem monitor for Git on our server.
 * - Its protocol and bookkeeping, with our client (Linux; no Git needed): tokens, the trivial
 *   answer whenever it cannot be sure (start, another instance's token, flush, overflow), the
 *   exact paths after edits, new nested folders, folders renamed and replaced.
 * - With the Git build (test/git-build.ts; skipped with a message without it): over a seeded
 *   script of more than 200 edits (files and nested folders created, changed, deleted and
 *   renamed, .gitignored files, commits between), `git status --porcelain` is the same with
 *   our monitor, with Git's own daemon, and with no monitor at all.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, type TestContext } from 'node:test';
import { type Monitor, startMonitor } from '../examples/git-fsmonitor/monitor.js';
import {
  decodeResponse,
  encodeQuery,
  FLUSH_COMMAND,
  type QueryResult,
} from '../examples/git-fsmonitor/protocol.js';
import { ActiveState, getActiveState, sendCommand } from '../src/index.js';
import { GIT_BUILD_SKIP } from './git-build.js';
import { makeWorktree, until, type Worktree } from './git-worktree.js';
import { ROOT, removeTree, testWithDeadline } from './helpers.js';

// Each test runs Git.
const test = testWithDeadline(120_000);

const MAIN = join(ROOT, 'dist', 'examples', 'git-fsmonitor', 'main.js');
const LINUX = process.platform === 'linux' ? false : 'the example watches with inotify (Linux)';

/** A folder with a `.git` folder (all the monitor needs) and a monitor on it. */
async function monitored(
  t: TestContext,
  options: Parameters<typeof startMonitor>[1] = {},
): Promise<{ root: string; ipc: string; monitor: Monitor; log: string[] }> {
  const root = mkdtempSync(join(tmpdir(), 'sipc-mon-'));
  t.after(() => removeTree(root));
  mkdirSync(join(root, '.git'));
  writeFileSync(join(root, 'tracked.txt'), 'x\n');
  mkdirSync(join(root, 'old', 'sub'), { recursive: true });
  writeFileSync(join(root, 'old', 'sub', 'f.txt'), 'f\n');
  const log: string[] = [];
  const monitor = await startMonitor(root, { ...options, log: (m) => log.push(m) });
  t.after(() => monitor.close());
  return {
    root: monitor.root,
    ipc: join(monitor.root, '.git', 'fsmonitor--daemon.ipc'),
    monitor,
    log,
  };
}

async function ask(ipc: string, token: string): Promise<QueryResult> {
  return decodeResponse(await sendCommand(ipc, encodeQuery(token), { timeout: 20_000 }));
}

async function paths(ipc: string, token: string): Promise<string[]> {
  const answer = await ask(ipc, token);
  assert.equal(answer.trivial, false, `trivial answer to ${token}`);
  return answer.trivial ? [] : [...answer.paths].sort();
}

describe('the example monitor, with our client', { skip: LINUX }, () => {
  test('trivial for tokens it cannot vouch for; then exactly what changed', async (t) => {
    const { root, ipc } = await monitored(t);
    assert.equal(await getActiveState(ipc), ActiveState.LISTENING);
    // Git's token, a V1 timestamp, garbage, our token from a previous run: trivial.
    for (const token of ['builtin:1.2.3:4', '1700000000000', '', 'sipc-fsmonitor:1.2.3:0']) {
      assert.equal((await ask(ipc, token)).trivial, true, token);
    }
    const start = (await ask(ipc, 'no token yet')).token;
    assert.deepEqual(await paths(ipc, start), []);

    writeFileSync(join(root, 'tracked.txt'), 'changed\n');
    mkdirSync(join(root, 'a', 'b', 'c'), { recursive: true });
    writeFileSync(join(root, 'a', 'b', 'c', 'new.txt'), 'new\n');
    renameSync(join(root, 'old'), join(root, 'moved'));
    writeFileSync(join(root, 'moved', 'sub', 'after-move.txt'), 'm\n');
    const expected = [
      'a',
      'a/b',
      'a/b/c',
      'a/b/c/new.txt',
      'moved',
      'moved/sub',
      'moved/sub/after-move.txt',
      'moved/sub/f.txt',
      'old',
      'tracked.txt',
    ];
    // The monitor syncs with a cookie before it answers: the first answer is complete.
    assert.deepEqual(await paths(ipc, start), expected);
    // A later token sees only later changes; the folder watched under its new name.
    const later = (await ask(ipc, start)).token;
    writeFileSync(join(root, 'moved', 'sub', 'f.txt'), 'f2\n');
    rmSync(join(root, 'a'), { recursive: true });
    assert.deepEqual(await paths(ipc, later), [
      'a',
      'a/b',
      'a/b/c',
      'a/b/c/new.txt',
      'moved/sub/f.txt',
    ]);
  });

  test('a folder replaced by another is watched anew', async (t) => {
    const { root, ipc } = await monitored(t);
    const token = (await ask(ipc, 'start')).token;
    rmSync(join(root, 'old'), { recursive: true });
    mkdirSync(join(root, 'old'));
    const next = (await ask(ipc, token)).token;
    writeFileSync(join(root, 'old', 'inside.txt'), 'i\n');
    assert.deepEqual(await paths(ipc, next), ['old/inside.txt']);
  });

  test('flush and a burst the size of an overflow start a new token id', async (t) => {
    const { root, ipc, log } = await monitored(t, { overflowAfter: 40 });
    const token = (await ask(ipc, 'start')).token;
    const flushed = await ask(ipc, FLUSH_COMMAND);
    assert.equal(flushed.trivial, true);
    assert.equal((await ask(ipc, token)).trivial, true, 'the token before the flush');
    assert.deepEqual(await paths(ipc, flushed.token), []);
    const before = (await ask(ipc, flushed.token)).token;
    for (let i = 0; i < 100; i++) writeFileSync(join(root, `burst-${i}`), '');
    assert.equal((await ask(ipc, before)).trivial, true, 'events may have been lost');
    assert.ok(
      log.some((m) => m.includes('may have overflowed')),
      log.join('\n'),
    );
  });

  test('20 queries at once, and quit', async (t) => {
    const { root, ipc, monitor } = await monitored(t);
    const token = (await ask(ipc, 'start')).token;
    writeFileSync(join(root, 'tracked.txt'), 'changed\n');
    const answers = await Promise.all(Array.from({ length: 20 }, () => paths(ipc, token)));
    for (const answer of answers) assert.deepEqual(answer, ['tracked.txt']);
    assert.equal((await sendCommand(ipc, 'quit')).length, 0);
    await monitor.server.closed;
    assert.equal(existsSync(ipc), false);
  });
});

// ---------------------------------------------------------------------------------------------
// The same script of edits in two worktrees: one watched by our monitor (its main.js, as a
// user runs it), one by Git's daemon. After every few steps, `git status --porcelain` in both,
// and in ours again with no monitor, must agree.

/** A small seeded generator (mulberry32), so a failing run can be replayed from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every file and folder below `root` but `.git`, relative. */
function listTree(root: string, dir = ''): { files: string[]; dirs: string[] } {
  const files: string[] = [];
  const dirs: string[] = [];
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    if (dir === '' && entry.name === '.git') continue;
    const path = dir === '' ? entry.name : `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      dirs.push(path);
      const below = listTree(root, path);
      files.push(...below.files);
      dirs.push(...below.dirs);
    } else files.push(path);
  }
  return { files: files.sort(), dirs: dirs.sort() };
}

type Step =
  | { op: 'write'; path: string; content: string }
  | { op: 'delete'; path: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'rmdir'; path: string }
  | { op: 'commit' };

/** The next step of the script, chosen from what is in `root` now. */
function nextStep(rnd: () => number, root: string, n: number): Step {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
  const { files, dirs } = listTree(root);
  const folders = ['', ...dirs];
  const inFolder = (folder: string, name: string) => (folder === '' ? name : `${folder}/${name}`);
  const roll = rnd();
  if (n % 60 === 59) return { op: 'commit' };
  if (roll < 0.25 || files.length < 5) {
    // A new file, sometimes in new nested folders, sometimes one that .gitignore hides.
    let folder = pick(folders);
    if (rnd() < 0.3) folder = inFolder(folder, `d${n}/e${n}`);
    const name = rnd() < 0.2 ? `junk-${n}.log` : `f${n}.txt`;
    return { op: 'write', path: inFolder(folder, name), content: `new ${n}\n` };
  }
  if (roll < 0.5) return { op: 'write', path: pick(files), content: `changed at ${n}\n` };
  if (roll < 0.65) return { op: 'delete', path: pick(files) };
  if (roll < 0.85) {
    const from = pick(files);
    return { op: 'rename', from, to: inFolder(pick(folders), `r${n}.txt`) };
  }
  if (roll < 0.93 && dirs.length > 0) {
    const from = pick(dirs);
    const parent = pick(folders.filter((f) => f !== from && !f.startsWith(`${from}/`)));
    return { op: 'rename', from, to: inFolder(parent, `moved${n}`) };
  }
  if (dirs.length > 0) return { op: 'rmdir', path: pick(dirs) };
  return { op: 'write', path: pick(files), content: `changed at ${n}\n` };
}

function apply(root: string, step: Step): void {
  switch (step.op) {
    case 'write':
      mkdirSync(dirname(join(root, step.path)), { recursive: true });
      writeFileSync(join(root, step.path), step.content);
      break;
    case 'delete':
      rmSync(join(root, step.path));
      break;
    case 'rename':
      renameSync(join(root, step.from), join(root, step.to));
      break;
    case 'rmdir':
      rmSync(join(root, step.path), { recursive: true });
      break;
    case 'commit':
      break;
  }
}

const STEPS = 240;

describe('the example monitor against Git', { skip: LINUX || GIT_BUILD_SKIP }, () => {
  test(`git status is the same with our monitor, Git's daemon and none, over ${STEPS} steps`, async (t) => {
    const files: Record<string, string> = { '.gitignore': '*.log\nbuild/\n' };
    for (let i = 0; i < 20; i++) files[`src/m${i % 4}/file${i}.txt`] = `${i}\n`;
    files['build/out.bin'] = 'ignored\n';
    const ours = await makeWorktree(t, files);
    const gits = await makeWorktree(t, files);

    // Our monitor as a user runs it: main.js run, from inside the worktree.
    const child = spawn(process.execPath, [MAIN, 'run'], {
      cwd: ours.root,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    await until(
      'our monitor listens',
      async () => (await getActiveState(ours.ipc)) === ActiveState.LISTENING,
    );
    await gits.git(['fsmonitor--daemon', 'start'], { timeoutMs: 30_000 });

    const status = async (wt: Worktree, args: string[] = []) =>
      (await wt.git([...args, 'status', '--porcelain', '--untracked-files=all'])).stdout.toString();
    const seed = Number(process.env['SIMPLE_IPC_FSMONITOR_SEED'] ?? 20261201);
    const rnd = random(seed);
    let compared = 0;
    for (let n = 0; n < STEPS; n++) {
      const step = nextStep(rnd, ours.root, n);
      apply(ours.root, step);
      apply(gits.root, step);
      if (step.op === 'commit') {
        for (const wt of [ours, gits]) {
          await wt.git(['add', '-A']);
          await wt.git(['commit', '-q', '--allow-empty', '-m', `step ${n}`]);
        }
      }
      if (n % 4 !== 3 && step.op !== 'commit') continue;
      const withOurs = await status(ours);
      const withGits = await status(gits);
      const withNone = await status(ours, ['--no-optional-locks', '-c', 'core.fsmonitor=false']);
      const where = `step ${n} (${JSON.stringify(step)}), seed ${seed}`;
      assert.equal(withOurs, withNone, `our monitor vs no monitor at ${where}`);
      assert.equal(withGits, withNone, `Git's daemon vs no monitor at ${where}`);
      compared++;
    }
    assert.ok(compared >= 60, `${compared} comparisons`);
    // Our monitor answered all along (a dead one would have let Git start its own).
    assert.equal(child.exitCode, null, stderr);
    assert.match(stderr, /new token id .*: start/);
    assert.doesNotMatch(stderr, /overflow|cannot watch|stopping/);
    // Git took our lists of paths: only its first question (a token from before our monitor
    // started) got the trivial answer.
    assert.equal(stderr.match(/trivial answer/g)?.length, 1, stderr);
  });
});

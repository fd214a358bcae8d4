/**
 * Temporary Git worktrees for the live-Git tests, run with the Git build (test/git-build.ts).
 * A worktree with `core.fsmonitor=true` makes Git start its own daemon by itself whenever a
 * command reads the index and nothing listens, so every worktree made here, when its test
 * ends, stops whatever daemon listens at its `.git/fsmonitor--daemon.ipc` (Git's `stop`) and
 * checks that none is left, before its folder is removed.
 */

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { ActiveState, getActiveState } from '../src/index.js';
import { GIT_BUILD, gitEnv } from './git-build.js';
import { delay, type RunResult, removeTree, runProcess } from './helpers.js';

/** A worktree and how to run the Git build in it. */
export interface Worktree {
  /** The worktree's root. */
  readonly root: string;
  /** Its `.git/fsmonitor--daemon.ipc`, where Git looks for the monitor. */
  readonly ipc: string;
  /** The environment Git runs with here. */
  readonly env: NodeJS.ProcessEnv;
  /** Runs the build's `git` in the worktree; fails the test unless it exits 0. */
  git(args: readonly string[], options?: { timeoutMs?: number }): Promise<RunResult>;
  /** Runs the build's `git` in the worktree, whatever it exits with. */
  gitAnyExit(args: readonly string[], options?: { timeoutMs?: number }): Promise<RunResult>;
}

/**
 * A fresh worktree with one commit of `files` (made with `core.fsmonitor=false`), and then
 * `core.fsmonitor` set as asked. Removed when the test ends, after any daemon there stopped.
 */
export async function makeWorktree(
  t: TestContext,
  files: Readonly<Record<string, string>> = { 'README.md': 'hello\n' },
  options: { fsmonitor?: boolean } = {},
): Promise<Worktree> {
  const build = GIT_BUILD;
  if (build === undefined) throw new Error('no Git build (check GIT_BUILD_SKIP first)');
  const top = mkdtempSync(join(tmpdir(), 'sipc-git-'));
  const root = join(top, 'w');
  const env = gitEnv(join(top, 'home'));
  const gitAnyExit = (args: readonly string[], o: { timeoutMs?: number } = {}) =>
    runProcess(build.git, args, { cwd: root, env, timeoutMs: o.timeoutMs ?? 60_000 });
  const git = async (args: readonly string[], o: { timeoutMs?: number } = {}) => {
    const result = await gitAnyExit(args, o);
    assert.equal(result.code, 0, `git ${args.join(' ')}: ${result.stderr}`);
    return result;
  };
  const ipc = join(root, '.git', 'fsmonitor--daemon.ipc');
  t.after(async () => {
    try {
      await stopMonitor(ipc, gitAnyExit);
    } finally {
      // A server of this process may still be removing its socket from .git while this runs
      // (clean-ups registered later run after this one).
      await removeTree(top);
    }
  });
  const init = await runProcess(build.git, ['init', '-q', '--template=', '-b', 'main', root], {
    env,
  });
  assert.equal(init.code, 0, init.stderr);
  await git(['config', 'core.fsmonitor', 'false']);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, name)), { recursive: true });
    writeFileSync(join(root, name), content);
  }
  await git(['add', '-A']);
  await git(['commit', '-q', '-m', 'first']);
  await git(['config', 'core.fsmonitor', String(options.fsmonitor ?? true)]);
  return { root, ipc, env, git, gitAnyExit };
}

/**
 * Stops the monitor listening at `ipc`, if any (with Git's `git fsmonitor--daemon stop`, which
 * sends it `quit` and waits until it no longer listens), and fails if one still listens.
 */
async function stopMonitor(
  ipc: string,
  gitAnyExit: (args: readonly string[], o?: { timeoutMs?: number }) => Promise<RunResult>,
): Promise<void> {
  if ((await getActiveState(ipc)) !== ActiveState.LISTENING) return;
  await gitAnyExit(['fsmonitor--daemon', 'stop'], { timeoutMs: 20_000 });
  for (let i = 0; (await getActiveState(ipc)) === ActiveState.LISTENING; i++) {
    if (i >= 100) throw new Error(`a monitor still listens at ${ipc} after stop`);
    await delay(50);
  }
}

/** Resolves once `check` returns true, polling every 20 ms; fails after `timeoutMs`. */
export async function until(
  what: string | (() => string),
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > end)
      throw new Error(`timed out waiting: ${typeof what === 'string' ? what : what()}`);
    await delay(20);
  }
}

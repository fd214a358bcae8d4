/**
 * The examples as a user runs them, stopped as a user stops them: each is started as a child
 * process, and once it serves it gets SIGTERM or SIGINT (Ctrl-C). It must exit 0 and leave no
 * socket behind.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { getActiveState } from '../src/index.js';
import { killAndWait, ROOT, tempDir, test, unixOnly, until } from './helpers.js';

const EXAMPLES = join(ROOT, 'dist', 'examples');
const SIGNALS = ['SIGTERM', 'SIGINT'] as const;
// Windows has no signals to send to another process: Node's kill() there terminates it.
const SKIP = unixOnly('POSIX signals sent to another process');

interface Started {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>;
  output(): string;
}

/** Starts `node script args` in `cwd` with `env` added; killed when the test ends. */
function start(
  t: TestContext,
  script: string,
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv = {},
): Started {
  const child = spawn(process.execPath, [script, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => killAndWait(child));
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    output: string;
  }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, output })));
  return { child, exited, output: () => output };
}

async function listening(path: string): Promise<void> {
  await until(
    `a server at ${path}`,
    async () => (await getActiveState(path)) === 'listening',
    30_000,
  );
}

for (const signal of SIGNALS) {
  test(
    `counter-daemon --serve stops on ${signal}: exit 0, socket removed`,
    { skip: SKIP },
    async (t) => {
      // Its socket is in userSocketDirectory(): $XDG_RUNTIME_DIR, a directory of this test's.
      const runtime = tempDir(t);
      const path = join(runtime, 'counter-daemon.sock');
      const daemon = start(t, join(EXAMPLES, 'counter-daemon.js'), ['--serve'], ROOT, {
        XDG_RUNTIME_DIR: runtime,
      });
      await listening(path);
      await until('its signal handlers', () => daemon.output().includes('listening at'));
      daemon.child.kill(signal);
      const result = await daemon.exited;
      assert.deepEqual([result.code, result.signal], [0, null], result.output);
      assert.equal(existsSync(path), false, 'the socket is removed');
    },
  );

  test(
    `git-fsmonitor main.js run stops on ${signal}: exit 0, socket removed`,
    { skip: SKIP },
    async (t) => {
      const worktree = tempDir(t);
      try {
        execFileSync('git', ['init', '-q', worktree], { stdio: 'ignore' });
      } catch {
        mkdirSync(join(worktree, '.git')); // all the example looks for
      }
      const path = join(worktree, '.git', 'fsmonitor--daemon.ipc');
      const monitor = start(t, join(EXAMPLES, 'git-fsmonitor', 'main.js'), ['run'], worktree);
      await listening(path);
      await until('its signal handlers', () => monitor.output().includes('running fsmonitor'));
      monitor.child.kill(signal);
      const result = await monitor.exited;
      assert.deepEqual([result.code, result.signal], [0, null], result.output);
      assert.equal(existsSync(path), false, 'the socket is removed');
    },
  );

  test(
    `the demo stops on ${signal} while it runs: exit 0, its temporary directory removed`,
    { skip: SKIP },
    async (t) => {
      const demo = start(t, join(EXAMPLES, 'demo.js'), [], ROOT);
      let dir = '';
      await until('the demo to start its server', () => {
        const match = /socket (.*)[\\/]demo\.sock\n[\s\S]*server listening/.exec(demo.output());
        if (match !== null) dir = match[1]!;
        return match !== null;
      });
      demo.child.kill(signal);
      const result = await demo.exited;
      assert.deepEqual([result.code, result.signal], [0, null], result.output);
      assert.equal(existsSync(dir), false, `${dir} is removed`);
    },
  );
}

/**
 * A filesystem monitor for Git, in TypeScript on simple-ipc: the commands of
 * `git fsmonitor--daemon`, run from inside a worktree.
 *
 *   git config core.fsmonitor true                      # Git asks .git/fsmonitor--daemon.ipc
 *   node dist/examples/git-fsmonitor/main.js start      # in the background
 *   git status                                          # now asks the monitor what changed
 *   node dist/examples/git-fsmonitor/main.js status     # watching '<worktree>'
 *   node dist/examples/git-fsmonitor/main.js stop
 *   node dist/examples/git-fsmonitor/main.js run        # in the foreground (Ctrl-C stops)
 *
 * See README.md next to this file.
 */

import { existsSync, lstatSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ActiveState,
  getActiveState,
  isSimpleIpcError,
  sendCommand,
  startDaemon,
  stopOnSignals,
} from '../../src/index.js';
import { startMonitor } from './monitor.js';
import { IPC_NAME, QUIT_COMMAND } from './protocol.js';

const USAGE = 'usage: main.js run|start|stop|status   (from inside a Git worktree)';

/** The worktree around `from`: the nearest folder upwards that holds a `.git` folder. */
function findWorktree(from: string): string | undefined {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const git = join(dir, '.git');
    if (existsSync(git)) return lstatSync(git).isDirectory() ? dir : undefined;
    if (dirname(dir) === dir) return undefined;
  }
}

async function main(command: string | undefined): Promise<number> {
  if (command === undefined || !['run', 'start', 'stop', 'status'].includes(command)) {
    process.stderr.write(`${USAGE}\n`);
    return 129;
  }
  const root = findWorktree(process.cwd());
  if (root === undefined) {
    process.stderr.write('fatal: not in a worktree whose .git is a folder\n');
    return 128;
  }
  const ipc = join(root, '.git', IPC_NAME);
  const state = await getActiveState(ipc);

  switch (command) {
    case 'status':
      process.stdout.write(
        `fsmonitor is ${state === ActiveState.LISTENING ? '' : 'not '}watching '${root}'\n`,
      );
      return state === ActiveState.LISTENING ? 0 : 1;

    case 'stop': {
      if (state !== ActiveState.LISTENING) {
        process.stderr.write(`fsmonitor is not watching '${root}'\n`);
        return 1;
      }
      await sendCommand(ipc, QUIT_COMMAND, { timeout: 10_000 });
      // Like Git's `stop`: wait until nothing listens any more.
      while ((await getActiveState(ipc)) === ActiveState.LISTENING) {
        await new Promise((r) => setTimeout(r, 50));
      }
      return 0;
    }

    case 'start':
      if (state === ActiveState.LISTENING) {
        process.stderr.write(`fatal: fsmonitor is already running '${root}'\n`);
        return 128;
      }
      await startDaemon(ipc, {
        command: process.execPath,
        args: [fileURLToPath(import.meta.url), 'run'],
        cwd: root,
        logFile: join(root, '.git', 'sipc-fsmonitor.log'),
        timeout: 60_000,
      });
      return 0;

    case 'run':
    default: {
      if (state === ActiveState.LISTENING) {
        process.stderr.write(`fatal: fsmonitor is already running '${root}'\n`);
        return 128;
      }
      const monitor = await startMonitor(root, {
        log: (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`),
      });
      stopOnSignals(monitor.server); // Ctrl-C or SIGTERM: stop, remove the socket, exit 0
      process.stdout.write(`running fsmonitor in '${monitor.root}'\n`);
      await monitor.server.closed;
      await monitor.close();
      return 0;
    }
  }
}

try {
  process.exitCode = await main(process.argv[2]);
} catch (err) {
  const message = isSimpleIpcError(err) ? `${err.message} (${err.code})` : String(err);
  process.stderr.write(`fatal: ${message}\n`);
  process.exitCode = 128;
}

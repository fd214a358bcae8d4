/**
 * A filesystem monitor for Git, on simple-ipc's server: it listens where Git looks
 * (`.git/fsmonitor--daemon.ipc`), watches the worktree, and answers `git status` with the
 * paths changed since the token Git sends back (protocol V2, see protocol.ts).
 *
 * How it stays right:
 * - Tokens are `sipc-fsmonitor:<id>:<seq>`. The id is new each time the monitor starts and
 *   each time it may have missed events; a token with another id gets the trivial answer
 *   ("look at everything"), so a gap in what we saw is never taken for "nothing changed".
 * - Changes go into numbered bins: each path remembers the bin it last changed in. Answering
 *   a token `<id>:<seq>` lists the paths of bins `seq` and later, and the answer's token opens
 *   a new bin, in one synchronous step, so no event falls between the list and the new token.
 * - Before it answers, the monitor writes a cookie file into the git directory and waits for
 *   its event: events arrive in order, so once the cookie's event is here, so is every event
 *   of every change made before the request. No cookie event in time: the trivial answer.
 */

import { closeSync, openSync, realpathSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { QUIT, type Server, startServer } from '../../src/index.js';
import {
  encodeResponse,
  encodeTrivialResponse,
  FLUSH_COMMAND,
  IPC_NAME,
  QUIT_COMMAND,
} from './protocol.js';
import { TreeWatcher } from './watcher.js';

const TOKEN_PREFIX = 'sipc-fsmonitor';
const COOKIE_PREFIX = '.sipc-fsmonitor-cookie-';

/** Options of {@link startMonitor}. */
export interface MonitorOptions {
  /** How long to wait for a cookie's event before answering trivially, in ms. Default 5000. */
  cookieTimeout?: number;
  /** More changed paths than this are forgotten for a new token id. Default 1,000,000. */
  maxPaths?: number;
  /**
   * Events in one read of the kernel's queue from which on events may have been lost. Default
   * half of `/proc/sys/fs/inotify/max_queued_events` (see watcher.ts).
   */
  overflowAfter?: number;
  /** Told about each time the monitor starts over (a new token id) and why. */
  log?: (message: string) => void;
}

/** A running monitor. */
export interface Monitor {
  /** The server at `.git/fsmonitor--daemon.ipc`. */
  readonly server: Server;
  /** The worktree's root. */
  readonly root: string;
  /** How many folders are watched. */
  readonly folders: number;
  /** Stops watching and serving. */
  close(): Promise<void>;
}

/**
 * Starts a monitor for the worktree at `root` (its `.git` must be a folder). Fails with the
 * server's `ERR_IPC_IN_USE` when a monitor (ours or Git's) already listens there.
 */
export async function startMonitor(root: string, options: MonitorOptions = {}): Promise<Monitor> {
  const cookieTimeout = options.cookieTimeout ?? 5000;
  const maxPaths = options.maxPaths ?? 1_000_000;
  const log = options.log ?? (() => {});
  root = realpathSync(root);
  const gitDir = join(root, '.git');

  let resets = 0;
  let id = '';
  let bin = 0;
  const changes = new Map<string, number>();
  const newId = (why: string) => {
    id = `${process.pid}.${Date.now()}.${resets++}`;
    bin = 0;
    changes.clear();
    log(`new token id ${id}: ${why}`);
  };
  newId('start');

  const cookies = new Map<string, () => void>();
  let cookieCount = 0;
  let server: Server | undefined;
  const watcher = new TreeWatcher(root, gitDir, {
    change(path) {
      changes.set(path, bin);
      if (changes.size > maxPaths) newId(`more than ${maxPaths} changed paths`);
    },
    gitDirEntry(name) {
      cookies.get(name)?.();
    },
    overflow(reason) {
      newId(reason);
    },
    fatal(error) {
      log(`stopping: ${error.message}`);
      newId('fatal');
      void server?.stop();
    },
  });

  if (options.overflowAfter !== undefined) watcher.burstLimit = options.overflowAfter;

  /** Resolves true once every event before now has been seen, false if unsure. */
  const sync = (): Promise<boolean> => {
    const name = `${COOKIE_PREFIX}${process.pid}-${cookieCount++}`;
    const path = join(gitDir, name);
    return new Promise<boolean>((resolve) => {
      const done = (seen: boolean) => {
        clearTimeout(timer);
        cookies.delete(name);
        try {
          unlinkSync(path);
        } catch {
          // Already gone.
        }
        resolve(seen);
      };
      const timer = setTimeout(() => done(false), cookieTimeout);
      cookies.set(name, () => done(true));
      try {
        closeSync(openSync(path, 'wx'));
      } catch {
        done(false);
      }
    });
  };

  const token = () => `${TOKEN_PREFIX}:${id}:${bin}`;

  try {
    server = await startServer(join(gitDir, IPC_NAME), async (request, reply) => {
      const command = request.toString('utf8');
      if (command === QUIT_COMMAND) return QUIT;
      if (command === FLUSH_COMMAND) {
        newId('flush');
        await reply(encodeTrivialResponse(token()));
        return undefined;
      }
      const asked = parseToken(command);
      const idBefore = id;
      const why =
        asked === undefined || asked.id !== id || asked.seq > bin
          ? 'a token of another monitor'
          : watcher.blind
            ? 'some folders cannot be watched'
            : !(await sync())
              ? 'no cookie event in time'
              : // The id may have changed while we waited: then events may have been missed.
                id !== idBefore
                ? 'a new token id while syncing'
                : undefined;
      if (why !== undefined || asked === undefined) {
        bin++;
        log(`trivial answer: ${why}`);
        await reply(encodeTrivialResponse(token()));
        return undefined;
      }
      const paths: string[] = [];
      for (const [path, changedIn] of changes) if (changedIn >= asked.seq) paths.push(path);
      bin++;
      for (const piece of encodeResponse(token(), paths)) await reply(piece);
      return undefined;
    });
  } catch (err) {
    watcher.close();
    throw err;
  }
  const running = server;
  void running.closed.then(() => watcher.close());
  return {
    server: running,
    root,
    get folders() {
      return watcher.folders;
    },
    async close() {
      watcher.close();
      await running.stop();
    },
  };
}

/** `sipc-fsmonitor:<id>:<seq>`, or undefined for any other token (Git's, a V1 timestamp). */
function parseToken(token: string): { id: string; seq: number } | undefined {
  const parts = token.split(':');
  if (parts.length !== 3 || parts[0] !== TOKEN_PREFIX) return undefined;
  const seq = Number(parts[2]);
  if (!Number.isSafeInteger(seq) || seq < 0) return undefined;
  return { id: parts[1]!, seq };
}

/**
 * Daemons on demand: start a server process detached (no terminal, outliving its starter),
 * wait until it listens, and connect to it. Mirrors the `start-daemon` logic of Git's
 * `t/helper/test-simple-ipc.c`: poll the active state; `not-listening` and `path-not-found`
 * mean "keep waiting", any other state means "give up".
 *
 * @module
 */

import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ActiveState,
  type Connection,
  type ConnectOptions,
  getActiveState,
  tryConnect,
} from './client.js';
import { abortError, ErrorCode, SimpleIpcError } from './errors.js';

/** How to start a daemon, for {@link startDaemon} and {@link connectOrStart}. */
export interface DaemonOptions {
  /** The program to run (for a Node script: `process.execPath`). */
  command: string;
  /** Its arguments. */
  args?: readonly string[] | undefined;
  /** Its working directory. Default: this process's. */
  cwd?: string | undefined;
  /** Its environment. Default: this process's. */
  env?: NodeJS.ProcessEnv | undefined;
  /**
   * A file that receives the daemon's standard output and error (appended). Default: none,
   * both go to the null device, as with Git's `start-daemon`.
   */
  logFile?: string | undefined;
  /** How long to wait for the daemon to listen, in ms. Default 60000 (Git's 60 s). */
  timeout?: number | undefined;
  /** How often to look, in ms. Default 20. */
  pollInterval?: number | undefined;
  /** Aborts the wait (the daemon, once spawned, is left running). */
  signal?: AbortSignal | undefined;
}

/** A daemon started by {@link startDaemon}. */
export interface StartedDaemon {
  /** The daemon's process id. */
  readonly pid: number;
}

/**
 * Starts `options.command` detached and resolves once a server listens at `path`.
 *
 * If the started process exits first, one last look decides: a server that listens (another
 * starter's, which won the start-up lock) counts as success.
 *
 * @throws {SimpleIpcError} `ERR_IPC_DAEMON_FAILED` (spawn failed, or the path is unusable:
 *   `invalid-path` / `other-error`), `ERR_IPC_DAEMON_NOT_ONLINE` (deadline passed; the process
 *   is left running), `ERR_IPC_DAEMON_TERMINATED` (it exited before listening), `ABORT_ERR`.
 */
export async function startDaemon(path: string, options: DaemonOptions): Promise<StartedDaemon> {
  const { signal } = options;
  if (signal?.aborted) throw abortError(signal);
  const timeout = options.timeout ?? 60_000;
  const interval = Math.max(1, options.pollInterval ?? 20);
  let logFd: number | undefined;
  if (options.logFile !== undefined) {
    try {
      logFd = openSync(options.logFile, 'a', 0o600);
    } catch (cause) {
      throw new SimpleIpcError(
        ErrorCode.DAEMON_FAILED,
        `daemon failed to start: cannot open the log file '${options.logFile}'`,
        { cause, path },
      );
    }
  }
  const exited = { yes: false, code: null as number | null, signal: null as string | null };
  let pid: number;
  try {
    const child = spawn(options.command, options.args ?? [], {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ['ignore', logFd ?? 'ignore', logFd ?? 'ignore'],
      windowsHide: true,
    });
    const spawned = await new Promise<Error | undefined>((resolve) => {
      child.once('spawn', () => resolve(undefined));
      child.once('error', (err) => resolve(err));
    });
    if (spawned !== undefined || child.pid === undefined) {
      throw new SimpleIpcError(
        ErrorCode.DAEMON_FAILED,
        `daemon failed to start: cannot run '${options.command}': ${spawned?.message ?? 'no pid'}`,
        { cause: spawned, path },
      );
    }
    pid = child.pid;
    child.once('exit', (code, sig) => {
      exited.yes = true;
      exited.code = code;
      exited.signal = sig;
    });
    child.unref();
  } finally {
    if (logFd !== undefined) closeSync(logFd);
  }

  const deadline = performance.now() + timeout;
  for (;;) {
    const wasExited = exited.yes;
    const state = await getActiveState(path, { signal });
    if (state === ActiveState.LISTENING) return { pid };
    if (state !== ActiveState.NOT_LISTENING && state !== ActiveState.PATH_NOT_FOUND) {
      throw new SimpleIpcError(
        ErrorCode.DAEMON_FAILED,
        `daemon failed to start: '${path}' is ${state}`,
        { path },
      );
    }
    if (wasExited) {
      const how =
        exited.signal !== null
          ? `was killed by ${exited.signal}`
          : `exited with code ${exited.code}`;
      throw new SimpleIpcError(
        ErrorCode.DAEMON_TERMINATED,
        `daemon terminated: it ${how} before listening at '${path}'${options.logFile ? ` (see ${options.logFile})` : ''}`,
        { path },
      );
    }
    if (performance.now() >= deadline) {
      throw new SimpleIpcError(
        ErrorCode.DAEMON_NOT_ONLINE,
        `daemon not online yet: nothing listens at '${path}' after ${timeout} ms (process ${pid} left running)`,
        { path },
      );
    }
    try {
      await sleep(interval, undefined, { signal });
    } catch {
      throw abortError(signal!);
    }
  }
}

/**
 * Returns a connection to the server at `path`, starting it first if none listens.
 *
 * Concurrent callers may each start a process; the servers' start-up lock lets exactly one of
 * them serve, the others exit with "already in use", and every caller connects to the one.
 *
 * @example
 * ```ts
 * const conn = await connectOrStart(sock, {
 *   command: process.execPath, args: ['my-daemon.js', sock], logFile: `${sock}.log`,
 * });
 * const answer = await conn.send('status');
 * ```
 * @throws {SimpleIpcError} the errors of {@link startDaemon} and of `connect()`.
 */
export async function connectOrStart(
  path: string,
  options: DaemonOptions & ConnectOptions,
): Promise<Connection> {
  const first = await tryConnect(path, { ...options, waitIfBusy: false, waitIfNotFound: false });
  if (first.state === ActiveState.LISTENING) return first.connection;
  if (first.state === ActiveState.INVALID_PATH) throw first.error;
  await startDaemon(path, options);
  const result = await tryConnect(path, { waitIfBusy: true, waitIfNotFound: true, ...options });
  if (result.state === ActiveState.LISTENING) return result.connection;
  throw result.error;
}

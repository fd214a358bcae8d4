/**
 * The server socket's life: take the start-up lock, make sure no live server is replaced, bind
 * and install the socket atomically with its final permissions, remember whose it is, notice
 * when it is stolen, and remove it at the end only if it is still ours.
 *
 * Mirrors Git's `compat/simple-ipc/ipc-unix-socket.c` and `unix-stream-server.c`, with the
 * improvements of SPEC section 8 (never remove a non-socket, break dead locks, never delete a
 * successor's socket, notice theft within a second, no permission window).
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import {
  closeSync,
  type FSWatcher,
  constants as fsConstants,
  openSync,
  readFileSync,
  watch,
  writeSync,
} from 'node:fs';
import {
  chmod,
  link,
  lstat,
  mkdtemp,
  readFile,
  rename,
  rmdir,
  stat,
  unlink,
} from 'node:fs/promises';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { USES_NAMED_PIPES, withSocketAddress } from './address.js';
import { ActiveState, tryConnect } from './client.js';
import { ErrorCode, SimpleIpcError, systemCode } from './errors.js';

/** How long start-up waits for the lock, in ms (Git's). */
export const LOCK_TIMEOUT_MS = 100;
/** A lock with no readable owner (Git's servers write none) is stale after this many ms. */
export const LOCK_STALE_MS = 5000;
/** Listen backlog (Git's). */
export const LISTEN_BACKLOG = 50;
/** How often the socket's identity is checked besides file-system events, in ms. */
export const OWNERSHIP_CHECK_MS = 1000;

/** The device and inode that identify our socket file. */
export interface SocketIdentity {
  readonly dev: number;
  readonly ino: number;
}

/** Options of {@link installSocket}. */
export interface InstallOptions {
  /** Socket file permissions. Default 0o600 (owner only). */
  mode: number;
  /** Listen backlog. Default 50. */
  backlog: number;
  /** Never change directory to reach a long path. */
  disallowChdir: boolean;
  /** How long to wait for the start-up lock, in ms. */
  lockTimeout: number;
  /** Called for each accepted connection. */
  onConnection: (socket: Socket) => void;
}

/** A listening socket installed at its path. */
export interface InstalledSocket {
  readonly listener: NetServer;
  /** Undefined for a named pipe. */
  readonly identity: SocketIdentity | undefined;
}

/**
 * Creates the listening socket at `path`, guarded so that two servers can never both own it:
 * 1. take `<path>.lock` (exclusive create, holding our pid; a dead owner's lock is broken);
 * 2. if a server answers at `path`, fail with `ERR_IPC_IN_USE` (a live server is never
 *    replaced); if `path` is not a socket, fail with `ERR_IPC_INVALID_PATH` (never removed);
 * 3. bind in a private (0700) directory beside `path`, set the mode, then rename over `path`:
 *    nobody can connect before the mode is set, and `path` is never missing during a
 *    replacement;
 * 4. drop the lock.
 */
export async function installSocket(
  path: string,
  options: InstallOptions,
): Promise<InstalledSocket> {
  if (USES_NAMED_PIPES) return { listener: await listenOnPipe(path, options), identity: undefined };
  const lock = await acquireLock(`${path}.lock`, options.lockTimeout);
  try {
    const replacing = await checkPath(path);
    const privateDir = await mkdtemp(join(dirname(path), '.sipc-'));
    const temporary = join(privateDir, `.sipc-${randomBytes(6).toString('hex')}.sock`);
    let listener: NetServer | undefined;
    try {
      listener = await listen(temporary, options);
      await chmod(temporary, options.mode);
      const stats = await lstat(temporary);
      if (replacing) {
        await rename(temporary, path);
      } else {
        try {
          await link(temporary, path);
        } catch (err) {
          if (systemCode(err) === 'EEXIST') throw inUse(path, err);
          throw err;
        }
        await unlink(temporary);
      }
      return { listener, identity: { dev: stats.dev, ino: stats.ino } };
    } catch (err) {
      listener?.close();
      await unlink(temporary).catch(ignore);
      throw wrapInstallError(err, path);
    } finally {
      await rmdir(privateDir).catch(ignore);
    }
  } finally {
    await lock.release();
  }
}

// Decides whether `path` may be taken: true when a dead socket is to be replaced, false when
// nothing is there.
async function checkPath(path: string): Promise<boolean> {
  let stats: Awaited<ReturnType<typeof lstat>>;
  try {
    stats = await lstat(path);
  } catch (err) {
    const code = systemCode(err);
    if (code === 'ENOENT') return false;
    throw new SimpleIpcError(
      ErrorCode.INVALID_PATH,
      `cannot use '${path}' as a socket path: ${(err as Error).message}`,
      { cause: err, path },
    );
  }
  if (!stats.isSocket()) {
    const what = stats.isDirectory()
      ? 'a directory'
      : stats.isSymbolicLink()
        ? 'a symbolic link'
        : stats.isFile()
          ? 'a regular file'
          : 'not a socket';
    throw new SimpleIpcError(
      ErrorCode.INVALID_PATH,
      `'${path}' is ${what}; it is left alone (remove it or choose another path)`,
      { path },
    );
  }
  const probe = await tryConnect(path, { timeout: 0 });
  if (probe.state === ActiveState.LISTENING) {
    probe.connection.destroy();
    throw inUse(path);
  }
  return true;
}

function inUse(path: string, cause?: unknown): SimpleIpcError {
  return new SimpleIpcError(
    ErrorCode.IN_USE,
    `socket/pipe already in use: '${path}' (another server answers there)`,
    { path, cause },
  );
}

function wrapInstallError(err: unknown, path: string): SimpleIpcError {
  if (err instanceof SimpleIpcError) return err;
  return new SimpleIpcError(
    ErrorCode.OTHER,
    `cannot create the socket '${path}': ${(err as Error).message}`,
    { cause: err, path },
  );
}

function listen(path: string, options: InstallOptions): Promise<NetServer> {
  return new Promise<NetServer>((resolve, reject) => {
    const listener = createServer({ pauseOnConnect: false }, options.onConnection);
    listener.once('error', reject);
    listener.once('listening', () => {
      listener.off('error', reject);
      resolve(listener);
    });
    withSocketAddress(path, { disallowChdir: options.disallowChdir }, (address) =>
      listener.listen({ path: address, backlog: options.backlog }),
    );
  });
}

async function listenOnPipe(path: string, options: InstallOptions): Promise<NetServer> {
  try {
    return await listen(path, options);
  } catch (err) {
    if (systemCode(err) === 'EADDRINUSE') throw inUse(path, err);
    throw wrapInstallError(err, path);
  }
}

/** A held start-up lock. */
interface Lock {
  release(): Promise<void>;
}

/**
 * Takes the lock file `lockPath` (exclusive create, content: our pid), retrying for `timeout`
 * ms. A lock whose owner is dead, or which has no readable owner and is older than
 * {@link LOCK_STALE_MS}, is broken.
 *
 * @throws {SimpleIpcError} `ERR_IPC_LOCKED` when a live owner keeps it past the timeout.
 */
export async function acquireLock(lockPath: string, timeout: number): Promise<Lock> {
  const deadline = performance.now() + timeout;
  for (;;) {
    try {
      const fd = openSync(
        lockPath,
        fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL,
        0o600,
      );
      try {
        writeSync(fd, `${process.pid}\n`);
      } finally {
        closeSync(fd);
      }
      const ours = await stat(lockPath);
      return { release: () => releaseLock(lockPath, ours.ino) };
    } catch (err) {
      if (systemCode(err) !== 'EEXIST') {
        throw new SimpleIpcError(
          ErrorCode.INVALID_PATH,
          `cannot create the lock file '${lockPath}': ${(err as Error).message}`,
          { cause: err, path: lockPath },
        );
      }
    }
    if (await breakStaleLock(lockPath)) continue;
    if (performance.now() >= deadline) {
      const owner = readOwner(lockPath);
      throw new SimpleIpcError(
        ErrorCode.LOCKED,
        `the lock file '${lockPath}' is held${owner === undefined ? '' : ` by process ${owner}`}: another server is starting at this path`,
        { path: lockPath },
      );
    }
    await sleep(10);
  }
}

async function releaseLock(lockPath: string, ino: number): Promise<void> {
  try {
    if ((await lstat(lockPath)).ino === ino) await unlink(lockPath);
  } catch {
    // Already gone: someone judged it stale. Nothing of ours to remove.
  }
}

function readOwner(lockPath: string): number | undefined {
  try {
    const text = readFileSync(lockPath, 'latin1').trim();
    return /^[1-9][0-9]*$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

/** True when `pid` names a running process (one we may not signal counts as running). */
export function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return systemCode(err) === 'EPERM';
  }
}

// Breaks the lock if it is stale. To avoid breaking a fresh lock that replaced the stale one
// in between, the lock is first renamed aside and checked again there.
async function breakStaleLock(lockPath: string): Promise<boolean> {
  let stats: Awaited<ReturnType<typeof stat>>;
  let text: string;
  try {
    stats = await stat(lockPath);
    text = await readFile(lockPath, 'latin1');
  } catch {
    return true; // gone already: try to take it again
  }
  if (!isStale(text, stats.mtimeMs)) return false;
  const aside = `${lockPath}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(lockPath, aside);
  } catch {
    return true; // someone else moved it first
  }
  try {
    const moved = await stat(aside);
    if (moved.ino !== stats.ino) {
      // Not the lock we judged: put it back if nobody has taken the name since.
      await link(aside, lockPath).catch(ignore);
    }
  } finally {
    await unlink(aside).catch(ignore);
  }
  return true;
}

function isStale(text: string, mtimeMs: number): boolean {
  const trimmed = text.trim();
  if (/^[1-9][0-9]*$/.test(trimmed)) {
    const pid = Number(trimmed);
    return pid !== process.pid && !processIsAlive(pid);
  }
  // No readable owner (Git's servers write none, or a writer died mid-write): go by age.
  return Date.now() - mtimeMs > LOCK_STALE_MS;
}

/**
 * Removes the socket at `path` only if it is still ours (same device and inode).
 * @returns true when it was removed.
 */
export async function removeIfOurs(path: string, identity: SocketIdentity): Promise<boolean> {
  try {
    const stats = await lstat(path);
    if (stats.dev !== identity.dev || stats.ino !== identity.ino) return false;
    await unlink(path);
    return true;
  } catch {
    return false;
  }
}

/** Why {@link OwnershipWatch} thinks the socket is no longer ours. */
export type TheftReason = 'removed' | 'not-a-socket' | 'replaced';

/**
 * Watches `path` and calls `onStolen` once if it disappears, stops being a socket, or gets
 * another device/inode. Uses file-system events on the directory for a prompt answer and a
 * check every {@link OWNERSHIP_CHECK_MS} ms in case events are missed or unavailable. Neither
 * keeps the process alive.
 */
export class OwnershipWatch {
  readonly #path: string;
  readonly #identity: SocketIdentity;
  readonly #onStolen: (reason: TheftReason) => void;
  readonly #timer: NodeJS.Timeout;
  #watcher: FSWatcher | undefined;
  #checking = false;
  #stopped = false;

  constructor(path: string, identity: SocketIdentity, onStolen: (reason: TheftReason) => void) {
    this.#path = path;
    this.#identity = identity;
    this.#onStolen = onStolen;
    this.#timer = setInterval(checkOwnership, OWNERSHIP_CHECK_MS, this);
    this.#timer.unref();
    const name = basename(path);
    try {
      this.#watcher = watch(dirname(path), { persistent: false }, (_event, file) => {
        if (file === null || file === name) this.check();
      });
      this.#watcher.on('error', () => this.#closeWatcher());
    } catch {
      this.#watcher = undefined; // inotify limits or an odd file system: the timer still runs
    }
  }

  /** Checks the socket now. */
  check(): void {
    if (this.#stopped || this.#checking) return;
    this.#checking = true;
    lstat(this.#path).then(
      (stats) => {
        this.#checking = false;
        if (!stats.isSocket()) this.#stolen('not-a-socket');
        else if (stats.dev !== this.#identity.dev || stats.ino !== this.#identity.ino) {
          this.#stolen('replaced');
        }
      },
      (err) => {
        this.#checking = false;
        if (systemCode(err) === 'ENOENT' || systemCode(err) === 'ENOTDIR') this.#stolen('removed');
      },
    );
  }

  /** Stops watching. Idempotent. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#closeWatcher();
  }

  #closeWatcher(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  #stolen(reason: TheftReason): void {
    if (this.#stopped) return;
    this.stop();
    this.#onStolen(reason);
  }
}

function checkOwnership(watch: OwnershipWatch): void {
  watch.check();
}

function ignore(): void {}

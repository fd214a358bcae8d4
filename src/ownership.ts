/**
 * Who owns the socket at a path: our socket is known by its device and inode. While the server
 * runs, `OwnershipWatch` notices within about a second when someone removes or replaces
 * it (Git looks every 60 s); at the end, {@link removeIfOurs} removes it only if it is still
 * ours, never a successor's.
 *
 * @module
 */

import type { FSWatcher, Stats } from 'node:fs';
import { ErrorCode, isSimpleIpcError, systemCode } from './errors.js';
import { probe } from './lifecycle.js';
import { acquireLock, LOCK_TIMEOUT_MS, type Lock } from './lock.js';
import type { SocketIdentity } from './trust.js';

// Node built-ins: taken, not imported, the heavy ones where first used (trust.ts says why).
const { watch } = process.getBuiltinModule('node:fs');
// eslint-disable-next-line @typescript-eslint/unbound-method -- node:path's functions take no `this`
const { basename, dirname, resolve } = process.getBuiltinModule('node:path');
const fsp = (): typeof import('node:fs/promises') => process.getBuiltinModule('node:fs/promises');

/**
 * How long a stopping server waits for a start-up that holds the lock, in ms. A start-up holds
 * it for milliseconds, but on a loaded machine its look at our socket can outlast the start-up
 * lock's own {@link LOCK_TIMEOUT_MS}.
 */
export const REMOVE_LOCK_TIMEOUT_MS = 20 * LOCK_TIMEOUT_MS;

/** How often the socket's identity is checked besides file-system events, in ms. */
export const OWNERSHIP_CHECK_MS = 1000;

/**
 * Removes the socket at `path` only if it is still ours (same device and inode).
 *
 * The final look and the unlink happen under the start-up lock, which every server (ours and
 * Git's) takes before it puts a socket at the path, so a successor's socket cannot slip in
 * between. A server starting meanwhile holds the lock: we wait for it, up to `lockTimeout`,
 * because it may have looked while we were still listening and be about to give up with "in
 * use", leaving our socket to us; or it replaces our socket, which is then no longer ours to
 * remove. Only a lock held past `lockTimeout` leaves the socket (dead, so the next server
 * replaces it). A socket that is already gone or not ours is left without taking the lock, so
 * nothing is created in a directory that someone is removing.
 *
 * The final look also connects, and only a socket that refuses is removed. Call this once
 * nothing serves on our socket any more (our listener closed, and those of our other
 * processes): a socket that answers is then a successor's, even one with our device and inode
 * number, which the file system may give out again once ours is replaced or removed.
 *
 * @returns true when it was removed.
 */
export async function removeIfOurs(
  path: string,
  identity: SocketIdentity,
  lockTimeout = REMOVE_LOCK_TIMEOUT_MS,
): Promise<boolean> {
  if (!(await isOurs(path, identity))) return false;
  let lock: Lock | undefined;
  try {
    lock = await acquireLock(`${path}.lock`, lockTimeout);
  } catch (err) {
    if (isSimpleIpcError(err, ErrorCode.LOCKED)) return false;
    // No lock can be made (read-only or vanished directory): go on without it.
  }
  try {
    if (!(await isOurs(path, identity))) return false;
    // Our listener is closed, so a socket there that answers is not ours, whatever its inode
    // number says: once ours was replaced (or removed) while we waited for the lock, its inode
    // was freed, and the file system may have given its number to the socket of a server
    // started since (ext4 gives it to the next file made, at once).
    if ((await probe(path)) !== 'dead') return false;
    await fsp().unlink(path);
    return true;
  } catch {
    return false;
  } finally {
    await lock?.release();
  }
}

async function isOurs(path: string, identity: SocketIdentity): Promise<boolean> {
  try {
    const stats = await fsp().lstat(path);
    return stats.dev === identity.dev && stats.ino === identity.ino;
  } catch {
    return false;
  }
}

/** Why `OwnershipWatch` thinks the socket is no longer ours. */
export type TheftReason = 'removed' | 'not-a-socket' | 'replaced';

/** A {@link TheftReason} as a sentence, for logs and error messages. */
export function describeTheft(path: string, why: TheftReason): string {
  switch (why) {
    case 'removed':
      return `the socket '${path}' was removed by someone else; this server stopped`;
    case 'not-a-socket':
      return `something that is not a socket was put at '${path}'; this server stopped and left it alone`;
    default:
      return `another socket was put at '${path}' (another server took over); this server stopped and left it alone`;
  }
}

/**
 * Watches `path` and calls `onStolen` once if it disappears, stops being a socket, or gets
 * another device/inode. Uses file-system events on the directory for a prompt answer and a
 * check every {@link OWNERSHIP_CHECK_MS} ms in case events are missed or unavailable (no busy
 * polling). Neither keeps the process alive.
 */
export class OwnershipWatch {
  readonly #path: string;
  readonly #identity: SocketIdentity;
  readonly #onStolen: (reason: TheftReason) => void;
  readonly #timer: NodeJS.Timeout;
  #watcher: FSWatcher | undefined;
  #checking = false;
  #again = false;
  #stopped = false;

  /**
   * @param path - the socket path (resolved now, so a later change of directory does not
   *   matter).
   * @param identity - the device and inode of our socket.
   * @param onStolen - called at most once, after the watch has stopped.
   */
  constructor(path: string, identity: SocketIdentity, onStolen: (reason: TheftReason) => void) {
    this.#path = resolve(path);
    this.#identity = identity;
    this.#onStolen = onStolen;
    this.#timer = setInterval(checkOwnership, OWNERSHIP_CHECK_MS, this);
    this.#timer.unref();
    const name = basename(this.#path);
    try {
      this.#watcher = watch(dirname(this.#path), { persistent: false }, (_event, file) => {
        if (file === null || file === name) this.check();
      });
      this.#watcher.on('error', () => this.#closeWatcher());
    } catch {
      this.#watcher = undefined; // inotify limits or an odd file system: the timer still runs
    }
    // Whatever happened between the install and now.
    this.check();
  }

  /** Checks the socket now. */
  check(): void {
    if (this.#stopped) return;
    if (this.#checking) {
      // An event during a look may not be seen by it: look once more afterwards.
      this.#again = true;
      return;
    }
    this.#checking = true;
    fsp()
      .lstat(this.#path)
      .then(
        (stats) => this.#checked(stats, undefined),
        (err: unknown) => this.#checked(undefined, err),
      );
  }

  /** Stops watching. Idempotent. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#closeWatcher();
  }

  #checked(stats: Stats | undefined, err: unknown): void {
    this.#checking = false;
    const reason = theftReason(stats, err, this.#identity);
    if (reason !== undefined) this.#stolen(reason);
    else if (this.#again) {
      this.#again = false;
      this.check();
    }
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

// What an lstat() of the path says about our ownership; undefined: still ours, or unknown
// (EACCES after a chmod of the directory, say, proves nothing).
function theftReason(
  stats: Stats | undefined,
  err: unknown,
  identity: SocketIdentity,
): TheftReason | undefined {
  if (stats === undefined) {
    const code = systemCode(err);
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'removed' : undefined;
  }
  if (!stats.isSocket()) return 'not-a-socket';
  if (stats.dev !== identity.dev || stats.ino !== identity.ino) return 'replaced';
  return undefined;
}

function checkOwnership(watch: OwnershipWatch): void {
  watch.check();
}

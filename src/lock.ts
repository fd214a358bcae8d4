/**
 * The start-up lock `<path>.lock`, as Git's lockfile takes it (exclusive create), holding its
 * owner's pid so that a lock left by a killed server can be told from a live one and broken
 * (Git's lock has no owner and blocks start-up forever).
 *
 * @module
 */

import type { FileHandle } from 'node:fs/promises';
import { ErrorCode, fileSystemError, SimpleIpcError, systemCode } from './errors.js';
import { trustedOwner } from './trust.js';

// Node built-ins: taken, not imported, the heavy ones where first used (trust.ts says why).
const { lstatSync, readFileSync } = process.getBuiltinModule('node:fs');
const fsp = (): typeof import('node:fs/promises') => process.getBuiltinModule('node:fs/promises');
const timers = (): typeof import('node:timers/promises') =>
  process.getBuiltinModule('node:timers/promises');

/** How long start-up waits for the lock, in ms (Git's `DEFAULT_LOCK_TIMEOUT`). */
export const LOCK_TIMEOUT_MS = 100;
/**
 * A lock with no readable owner (Git's servers write none) is stale after this many ms; so is
 * a lock whose owner's process started this long after the lock was written (its pid was
 * reused). Locks are held for milliseconds, so this is generous.
 */
export const LOCK_STALE_MS = 5000;
/** A held start-up lock. */
export interface Lock {
  /** Removes the lock file if it is still ours. Never throws. */
  release(): Promise<void>;
}

/**
 * Takes the lock file `lockPath` (exclusive create, content: our pid and a newline), retrying
 * for `timeout` ms. A lock whose owner is dead (or whose pid now names a younger process), or
 * which has no readable owner and is older than {@link LOCK_STALE_MS}, is broken.
 *
 * A lock file of another user's (not this one's, not root's) is neither waited for nor broken:
 * no server of this user made it, and removing it would be acting on another user's file.
 *
 * @throws {@link SimpleIpcError} `ERR_IPC_LOCKED` when a live owner keeps it past the timeout;
 *   `ERR_IPC_UNTRUSTED_OWNER` when the lock file (or a breaker's `<lockPath>.break`) belongs to
 *   another user; `ERR_IPC_ACCESS_DENIED`, `ERR_IPC_INVALID_PATH`, `ERR_IPC_NAME_TOO_LONG`, `ERR_IPC_OTHER`
 *   when it cannot be created.
 */
export async function acquireLock(lockPath: string, timeout: number): Promise<Lock> {
  const deadline = performance.now() + Math.max(0, timeout);
  let broken = 0;
  for (;;) {
    const lock = await createLock(lockPath);
    if (lock !== undefined) return lock;
    // Breaking is bounded too, in case something keeps putting stale locks back.
    if (broken < 10 && (await breakIfStale(lockPath))) {
      broken++;
      continue;
    }
    if (performance.now() >= deadline) throw lockedError(lockPath);
    // Jittered, as Git's lockfile.c backs off randomly, so that racers do not move in step.
    await timers().setTimeout(4 + Math.random() * 8);
  }
}

async function createLock(lockPath: string): Promise<Lock | undefined> {
  let handle: FileHandle;
  try {
    // 'wx' = O_CREAT | O_EXCL: fails on anything already there, a symbolic link included.
    handle = await fsp().open(lockPath, 'wx', 0o644);
  } catch (err) {
    if (systemCode(err) === 'EEXIST') return undefined;
    throw fileSystemError(err, lockPath, 'create the lock file');
  }
  let ino: number;
  try {
    await handle.writeFile(`${process.pid}\n`);
    ino = (await handle.stat()).ino;
  } catch (err) {
    await handle.close().catch(ignore);
    await fsp().unlink(lockPath).catch(ignore);
    throw fileSystemError(err, lockPath, 'write the lock file');
  }
  await handle.close();
  return { release: () => releaseLock(lockPath, ino) };
}

async function releaseLock(lockPath: string, ino: number): Promise<void> {
  try {
    if ((await fsp().lstat(lockPath)).ino === ino) await fsp().unlink(lockPath);
  } catch {
    // Already gone. Nothing of ours to remove.
  }
}

function lockedError(lockPath: string): SimpleIpcError {
  const lock = readLock(lockPath);
  if (lock !== undefined) checkLockOwner(lock, lockPath);
  const owner = lock?.owner;
  // Only a live owner's lock, or a fresh one without an owner, is still there after the wait: a
  // dead owner's is broken, and so is an ownerless one once it is LOCK_STALE_MS old.
  const what =
    owner === undefined
      ? `is held, naming no owner (as Git's servers leave it) (try again: a lock left behind that way is broken once it is ${LOCK_STALE_MS / 1000} s old)`
      : `is held by process ${owner}, which is running (try again once it has started its server; if process ${owner} is no server starting here, stop it or remove the lock file)`;
  return new SimpleIpcError(
    ErrorCode.LOCKED,
    `another server is starting here: the lock file '${lockPath}' ${what}`,
    { path: lockPath },
  );
}

/**
 * Throws `ERR_IPC_UNTRUSTED_OWNER` when the lock file `lock` at `lockPath` is another user's.
 */
function checkLockOwner(lock: LockInfo, lockPath: string): void {
  if (trustedOwner(lock.uid)) return;
  throw new SimpleIpcError(
    ErrorCode.UNTRUSTED_OWNER,
    `the lock file '${lockPath}' belongs to user ${lock.uid}, not to you (user ${process.geteuid!()}) or root: no server of yours made it, so it is neither waited for nor removed (another user may be trying to block or pose as your server there; put your socket in a directory of your own: userSocketDirectory(), see docs/security.md)`,
    { path: lockPath },
  );
}

/** What a lock file says. */
interface LockInfo {
  /** Who owns the file itself (not what a symbolic link there points to). */
  readonly uid: number;
  readonly ino: number;
  readonly mtimeMs: number;
  /** The pid written in it, if it is a well-formed one. */
  readonly owner: number | undefined;
}

function readLock(lockPath: string): LockInfo | undefined {
  try {
    const stats = lstatSync(lockPath);
    return {
      uid: stats.uid,
      ino: stats.ino,
      mtimeMs: stats.mtimeMs,
      owner: parseOwner(readFileSync(lockPath)),
    };
  } catch {
    return undefined;
  }
}

async function readLockAsync(lockPath: string): Promise<LockInfo | undefined> {
  try {
    const stats = await fsp().lstat(lockPath);
    return {
      uid: stats.uid,
      ino: stats.ino,
      mtimeMs: stats.mtimeMs,
      owner: parseOwner(await fsp().readFile(lockPath)),
    };
  } catch {
    return undefined;
  }
}

function parseOwner(content: Buffer): number | undefined {
  const text = content.toString('latin1').trim();
  return /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : undefined;
}

/**
 * True while `lockPath` is a lock that start-up would respect: its owner runs (and is older
 * than the lock), or it has no readable owner and is younger than {@link LOCK_STALE_MS}.
 * False when it is absent or stale.
 *
 * @throws {@link SimpleIpcError} `ERR_IPC_UNTRUSTED_OWNER` when the lock file belongs to
 *   another user (not this one, not root): start-up would refuse it, not wait for it.
 */
export function isLockHeld(lockPath: string): boolean {
  const lock = readLock(lockPath);
  if (lock === undefined) return false;
  checkLockOwner(lock, lockPath);
  return !isStale(lock);
}

function isStale(lock: LockInfo): boolean {
  // No readable owner: Git's servers write none, or a writer died before writing: go by age.
  if (lock.owner === undefined) return Date.now() - lock.mtimeMs > LOCK_STALE_MS;
  return !ownerIsAlive(lock.owner, lock.mtimeMs);
}

// Breaks the lock at `lockPath` if it is stale; true when it is gone. Breakers take turns
// through `<lock>.break`, and the lock is judged again inside that turn: only an owner (who is
// dead) or a breaker removes a lock, so the one judged stale is the one removed, never a fresh
// lock that replaced it in between. Another user's lock or turn file is never removed: it
// throws ERR_IPC_UNTRUSTED_OWNER.
async function breakIfStale(lockPath: string): Promise<boolean> {
  const judged = await readLockAsync(lockPath);
  if (judged === undefined) return true;
  checkLockOwner(judged, lockPath);
  if (!isStale(judged)) return false;
  const turn = await createLock(`${lockPath}.break`).catch(() => undefined);
  if (turn === undefined) {
    // Another breaker is at work; its turn file is stale only if it died in that instant.
    const breaker = await readLockAsync(`${lockPath}.break`);
    if (breaker !== undefined) checkLockOwner(breaker, `${lockPath}.break`);
    if (breaker !== undefined && isStale(breaker))
      await fsp().unlink(`${lockPath}.break`).catch(ignore);
    return false;
  }
  try {
    const now = await readLockAsync(lockPath);
    if (now === undefined) return true;
    if (now.ino !== judged.ino || now.uid !== judged.uid || !isStale(now)) return false;
    await fsp().unlink(lockPath);
    return true;
  } catch {
    return false;
  } finally {
    await turn.release();
  }
}

/** True when `pid` names a running process (one we may not signal counts as running). */
function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return systemCode(err) === 'EPERM';
  }
  return processState(pid) !== 'Z';
}

// The owner of a lock written at `writtenMs` is alive if its pid runs and that process is not
// younger than the lock: a lock left by a killed server must not be kept alive forever by an
// unrelated process that got the same pid later (after a reboot, or in a container, where the
// same small pids come back).
function ownerIsAlive(pid: number, writtenMs: number): boolean {
  if (!processIsAlive(pid)) return false;
  const started = processStartMs(pid);
  return started === undefined || started <= writtenMs + 2000;
}

// Linux only: field 3 of /proc/<pid>/stat (Z for a zombie: dead, not yet reaped).
function processState(pid: number): string | undefined {
  return procStat(pid)?.[0];
}

// Linux only: when `pid` started, in ms since the epoch (boot time + field 22 of
// /proc/<pid>/stat, in clock ticks of 1/100 s: USER_HZ is 100 on every Linux we run on).
function processStartMs(pid: number): number | undefined {
  const ticks = Number(procStat(pid)?.[19]);
  if (!Number.isFinite(ticks)) return undefined;
  try {
    const boot = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'latin1'))?.[1];
    return boot === undefined ? undefined : Number(boot) * 1000 + ticks * 10;
  } catch {
    return undefined;
  }
}

// The fields of /proc/<pid>/stat after the command name (which may hold spaces and
// parentheses), starting at field 3.
function procStat(pid: number): string[] | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function ignore(): void {}

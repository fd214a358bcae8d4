/**
 * The server socket's life: take the start-up lock, make sure no live server is replaced, bind
 * and install the socket atomically with its final permissions, remember whose it is, notice
 * when it is stolen, and remove it at the end only if it is still ours.
 *
 * Mirrors Git's `compat/simple-ipc/ipc-unix-socket.c` and `unix-stream-server.c`, with the
 * improvements of SPEC section 8 (never remove a non-socket, break dead locks, never delete a
 * successor's socket, notice theft within a second, no permission window).
 *
 * Node's `net.Server#close()` unlinks the name it bound, whoever owns that name by then. So we
 * never bind at the application's path: the socket is bound under a random name in a private
 * directory and renamed into place. What Node unlinks at close is that random name, long gone.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { type FSWatcher, readFileSync, type Stats, statSync, watch } from 'node:fs';
import {
  chmod,
  link,
  lstat,
  mkdtemp,
  open,
  readFile,
  rename,
  rmdir,
  stat,
  unlink,
} from 'node:fs/promises';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkSocketPath, USES_NAMED_PIPES, withSocketAddress } from './address.js';
import { ActiveState, tryConnect } from './client.js';
import { ErrorCode, isSimpleIpcError, SimpleIpcError, systemCode } from './errors.js';

/** How long start-up waits for the lock, in ms (Git's `DEFAULT_LOCK_TIMEOUT`). */
export const LOCK_TIMEOUT_MS = 100;
/**
 * A lock with no readable owner (Git's servers write none) is stale after this many ms; so is
 * a lock whose owner's process started this long after the lock was written (its pid was
 * reused). Locks are held for milliseconds, so this is generous.
 */
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
  /** Socket file permissions (ignored for Windows named pipes). Default 0o600 (owner only). */
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
 *    replaced); if `path` is not a socket, fail with `ERR_IPC_INVALID_PATH` (it is never
 *    removed);
 * 3. bind in a private (0700) directory beside `path`, set the mode, then rename over the dead
 *    socket, or hard-link into the empty place: nobody can connect before the mode is set, and
 *    `path` is never missing during a replacement;
 * 4. drop the lock.
 *
 * On Windows the pipe is created with `FILE_FLAG_FIRST_PIPE_INSTANCE` (by libuv), which is
 * atomic by itself: no lock, and `mode` does not apply.
 *
 * @throws {SimpleIpcError} `ERR_IPC_IN_USE`, `ERR_IPC_LOCKED`, `ERR_IPC_INVALID_PATH`,
 *   `ERR_IPC_ACCESS_DENIED`, `ERR_IPC_NAME_TOO_LONG`, `ERR_IPC_INVALID_ARGUMENT` (mode),
 *   `ERR_IPC_OTHER`.
 */
export async function installSocket(
  path: string,
  options: InstallOptions,
): Promise<InstalledSocket> {
  if (!Number.isInteger(options.mode) || options.mode < 0 || options.mode > 0o777) {
    throw new SimpleIpcError(
      ErrorCode.INVALID_ARGUMENT,
      `the socket mode must be an integer from 0 to 0o777, not ${String(options.mode)}`,
    );
  }
  if (USES_NAMED_PIPES) return { listener: await listenOnPipe(path, options), identity: undefined };
  // Fail before touching anything if no client could ever reach the path.
  checkSocketPath(path);
  let lock: Lock;
  try {
    lock = await acquireLock(`${path}.lock`, options.lockTimeout);
  } catch (err) {
    // The lock holder may have started serving while we waited: say what the user will see.
    if (isSimpleIpcError(err, ErrorCode.LOCKED) && (await probe(path)) === 'live') {
      throw inUse(path, 'a server answers there', err);
    }
    throw err;
  }
  let bound: Bound | undefined;
  try {
    const found = await inspectPath(path);
    bound = await bindPrivately(path, options);
    await moveIntoPlace(bound.temporary, path, found);
    return { listener: bound.listener, identity: bound.identity };
  } catch (err) {
    bound?.listener.close();
    if (bound !== undefined) await unlink(bound.temporary).catch(ignore);
    throw err;
  } finally {
    await lock.release();
    if (bound !== undefined) await rmdir(bound.directory).catch(ignore);
  }
}

/** What {@link inspectPath} found at the path: nothing, or a socket nobody listens on. */
type Found = 'absent' | 'dead-socket';

// Decides whether `path` may be taken, without touching it. Throws when it may not.
async function inspectPath(path: string): Promise<Found> {
  let stats: Stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return 'absent';
    throw fsError(err, path, 'look at');
  }
  if (!stats.isSocket()) {
    throw new SimpleIpcError(
      ErrorCode.INVALID_PATH,
      `'${path}' is ${describe(stats)}, not a socket; it is left alone (remove it yourself, or choose another path)`,
      { path },
    );
  }
  const state = await probe(path);
  switch (state) {
    case 'dead':
      return 'dead-socket';
    case 'gone':
      return 'absent';
    case 'live':
      throw inUse(path, 'a server answers there');
    case 'busy':
      throw inUse(path, 'a server is there, too busy to accept a connection');
    default:
      if (systemCode(state.cause) === 'EACCES' || systemCode(state.cause) === 'EPERM') {
        throw new SimpleIpcError(
          ErrorCode.ACCESS_DENIED,
          `cannot tell whether a server answers at '${path}': no permission to connect; it is left alone (it belongs to someone else: choose another path)`,
          { path, cause: state.cause },
        );
      }
      throw new SimpleIpcError(
        ErrorCode.OTHER,
        `cannot tell whether a server answers at '${path}': ${state.message}; it is left alone`,
        { path, cause: state },
      );
  }
}

function describe(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isSymbolicLink()) return 'a symbolic link';
  if (stats.isFile()) return 'a regular file';
  return 'a special file';
}

/**
 * One connection attempt, no waiting: `live` (it accepted), `busy` (its backlog is full:
 * alive), `dead` (refused: nobody listens on that socket), `gone` (nothing there), or the error.
 */
async function probe(path: string): Promise<'live' | 'busy' | 'dead' | 'gone' | SimpleIpcError> {
  const result = await tryConnect(path, { timeout: 0 });
  if (result.state === ActiveState.LISTENING) {
    result.connection.destroy();
    return 'live';
  }
  if (result.state === ActiveState.PATH_NOT_FOUND) return 'gone';
  if (result.state === ActiveState.NOT_LISTENING) {
    return systemCode(result.error.cause) === 'ECONNREFUSED' ? 'dead' : 'busy';
  }
  return result.error;
}

function inUse(path: string, why: string, cause?: unknown): SimpleIpcError {
  return new SimpleIpcError(
    ErrorCode.IN_USE,
    `socket/pipe already in use: '${path}' (${why}; stop that server first, or choose another path)`,
    { path, cause },
  );
}

/** A socket listening under a temporary name in a private directory beside the path. */
interface Bound {
  listener: NetServer;
  directory: string;
  temporary: string;
  identity: SocketIdentity;
}

async function bindPrivately(path: string, options: InstallOptions): Promise<Bound> {
  let directory: string;
  try {
    // mkdtemp creates it 0700: until the mode is set, only this user can reach the socket.
    directory = await mkdtemp(join(dirname(path), '.sipc'));
  } catch (err) {
    throw fsError(err, dirname(path), 'create a temporary directory in');
  }
  // A random name, so that what Node unlinks when the listener closes is never anyone's file
  // (with a long path the bound name is relative, or under /proc/self/fd/N/).
  const temporary = join(directory, randomBytes(6).toString('hex'));
  let listener: NetServer | undefined;
  try {
    listener = await listen(temporary, options);
    await chmod(temporary, options.mode);
    const stats = await lstat(temporary);
    return { listener, directory, temporary, identity: { dev: stats.dev, ino: stats.ino } };
  } catch (err) {
    listener?.close();
    await unlink(temporary).catch(ignore);
    await rmdir(directory).catch(ignore);
    if (err instanceof SimpleIpcError) throw err;
    throw fsError(err, path, 'create the socket');
  }
}

// Puts the bound socket at `path`: rename() over a dead socket replaces it atomically (the
// path never goes missing); link() into an empty place fails rather than replace whatever
// appeared there since we looked (someone who does not take the lock).
async function moveIntoPlace(temporary: string, path: string, found: Found): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      if (found === 'dead-socket') {
        await rename(temporary, path);
        return;
      }
      await link(temporary, path);
      await unlink(temporary).catch(ignore);
      return;
    } catch (err) {
      if (systemCode(err) !== 'EEXIST' || attempt > 0) {
        if (err instanceof SimpleIpcError) throw err;
        throw fsError(err, path, 'create the socket');
      }
    }
    found = await inspectPath(path);
  }
}

function listen(path: string, options: InstallOptions): Promise<NetServer> {
  return new Promise<NetServer>((resolve, reject) => {
    const listener = createServer({ pauseOnConnect: false }, options.onConnection);
    listener.once('error', reject);
    listener.once('listening', () => {
      listener.off('error', reject);
      resolve(listener);
    });
    try {
      withSocketAddress(path, { disallowChdir: options.disallowChdir }, (address) =>
        listener.listen({ path: address, backlog: options.backlog }),
      );
    } catch (err) {
      reject(err);
    }
  });
}

async function listenOnPipe(path: string, options: InstallOptions): Promise<NetServer> {
  try {
    return await listen(path, options);
  } catch (err) {
    if (systemCode(err) === 'EADDRINUSE') throw inUse(path, 'another server owns the pipe', err);
    if (err instanceof SimpleIpcError) throw err;
    throw fsError(err, path, 'create the pipe');
  }
}

// A file-system failure, with the code that tells the user what to fix.
function fsError(err: unknown, path: string, action: string): SimpleIpcError {
  const message = (err as Error).message;
  switch (systemCode(err)) {
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new SimpleIpcError(
        ErrorCode.ACCESS_DENIED,
        `no permission to ${action} '${path}': ${message} (use a directory you may write to)`,
        { path, cause: err },
      );
    case 'ENOENT':
    case 'ENOTDIR':
      return new SimpleIpcError(
        ErrorCode.INVALID_PATH,
        `cannot ${action} '${path}': its directory does not exist (${message})`,
        { path, cause: err },
      );
    case 'ENAMETOOLONG':
      return new SimpleIpcError(
        ErrorCode.NAME_TOO_LONG,
        `cannot ${action} '${path}': a name is too long (use a shorter path)`,
        { path, cause: err },
      );
    default:
      return new SimpleIpcError(ErrorCode.OTHER, `cannot ${action} '${path}': ${message}`, {
        path,
        cause: err,
      });
  }
}

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
 * @throws {SimpleIpcError} `ERR_IPC_LOCKED` when a live owner keeps it past the timeout;
 *   `ERR_IPC_ACCESS_DENIED`, `ERR_IPC_INVALID_PATH`, `ERR_IPC_NAME_TOO_LONG`, `ERR_IPC_OTHER`
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
    await sleep(4 + Math.random() * 8);
  }
}

async function createLock(lockPath: string): Promise<Lock | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    // 'wx' = O_CREAT | O_EXCL: fails on anything already there, a symbolic link included.
    handle = await open(lockPath, 'wx', 0o644);
  } catch (err) {
    if (systemCode(err) === 'EEXIST') return undefined;
    throw fsError(err, lockPath, 'create the lock file');
  }
  let ino: number;
  try {
    await handle.writeFile(`${process.pid}\n`);
    ino = (await handle.stat()).ino;
  } catch (err) {
    await handle.close().catch(ignore);
    await unlink(lockPath).catch(ignore);
    throw fsError(err, lockPath, 'write the lock file');
  }
  await handle.close();
  return { release: () => releaseLock(lockPath, ino) };
}

async function releaseLock(lockPath: string, ino: number): Promise<void> {
  try {
    if ((await lstat(lockPath)).ino === ino) await unlink(lockPath);
  } catch {
    // Already gone. Nothing of ours to remove.
  }
}

function lockedError(lockPath: string): SimpleIpcError {
  const owner = readLock(lockPath)?.owner;
  const by = owner === undefined ? '' : ` by process ${owner}`;
  return new SimpleIpcError(
    ErrorCode.LOCKED,
    `another server is starting here: the lock file '${lockPath}' is held${by} (try again; if no server is starting, the lock was left behind: remove it)`,
    { path: lockPath },
  );
}

/** What a lock file says. */
interface LockInfo {
  readonly ino: number;
  readonly mtimeMs: number;
  /** The pid written in it, if it is a well-formed one. */
  readonly owner: number | undefined;
}

function readLock(lockPath: string): LockInfo | undefined {
  try {
    const stats = statSync(lockPath);
    return { ino: stats.ino, mtimeMs: stats.mtimeMs, owner: parseOwner(readFileSync(lockPath)) };
  } catch {
    return undefined;
  }
}

async function readLockAsync(lockPath: string): Promise<LockInfo | undefined> {
  try {
    const stats = await stat(lockPath);
    return { ino: stats.ino, mtimeMs: stats.mtimeMs, owner: parseOwner(await readFile(lockPath)) };
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
 */
export function isLockHeld(lockPath: string): boolean {
  const lock = readLock(lockPath);
  return lock !== undefined && !isStale(lock);
}

function isStale(lock: LockInfo): boolean {
  // No readable owner: Git's servers write none, or a writer died before writing: go by age.
  if (lock.owner === undefined) return Date.now() - lock.mtimeMs > LOCK_STALE_MS;
  return !ownerIsAlive(lock.owner, lock.mtimeMs);
}

// Breaks the lock at `lockPath` if it is stale; true when it is gone. Breakers take turns
// through `<lock>.break`, and the lock is judged again inside that turn: only an owner (who is
// dead) or a breaker removes a lock, so the one judged stale is the one removed, never a fresh
// lock that replaced it in between.
async function breakIfStale(lockPath: string): Promise<boolean> {
  const judged = await readLockAsync(lockPath);
  if (judged === undefined) return true;
  if (!isStale(judged)) return false;
  const turn = await createLock(`${lockPath}.break`).catch(() => undefined);
  if (turn === undefined) {
    // Another breaker is at work; its turn file is stale only if it died in that instant.
    const breaker = await readLockAsync(`${lockPath}.break`);
    if (breaker !== undefined && isStale(breaker)) await unlink(`${lockPath}.break`).catch(ignore);
    return false;
  }
  try {
    const now = await readLockAsync(lockPath);
    if (now === undefined) return true;
    if (now.ino !== judged.ino || !isStale(now)) return false;
    await unlink(lockPath);
    return true;
  } catch {
    return false;
  } finally {
    await turn.release();
  }
}

/** True when `pid` names a running process (one we may not signal counts as running). */
export function processIsAlive(pid: number): boolean {
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

/**
 * Removes the socket at `path` only if it is still ours (same device and inode).
 *
 * The final look and the unlink happen under the start-up lock, which every server (ours and
 * Git's) takes before it puts a socket at the path, so a successor's socket cannot slip in
 * between. If the lock is busy, a server is starting and will replace our dead socket: it is
 * left. A socket that is already gone or not ours is left without taking the lock, so nothing
 * is created in a directory that someone is removing.
 *
 * @returns true when it was removed.
 */
export async function removeIfOurs(
  path: string,
  identity: SocketIdentity,
  lockTimeout = LOCK_TIMEOUT_MS,
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
    await unlink(path);
    return true;
  } catch {
    return false;
  } finally {
    await lock?.release();
  }
}

async function isOurs(path: string, identity: SocketIdentity): Promise<boolean> {
  try {
    const stats = await lstat(path);
    return stats.dev === identity.dev && stats.ino === identity.ino;
  } catch {
    return false;
  }
}

/** Why {@link OwnershipWatch} thinks the socket is no longer ours. */
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
    lstat(this.#path).then(
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

function ignore(): void {}

/**
 * The server socket's life: take the start-up lock, make sure no live server is replaced, bind
 * and install the socket atomically with its final permissions, remember whose it is, notice
 * when it is stolen, and remove it at the end only if it is still ours.
 *
 * Mirrors Git's `compat/simple-ipc/ipc-unix-socket.c` and `unix-stream-server.c`, with the
 * improvements docs/lifecycle.md describes (never remove a non-socket, break dead locks, never
 * delete a successor's socket, notice theft within a second, no permission window).
 *
 * Node's `net.Server#close()` unlinks the name it bound, whoever owns that name by then. So we
 * never bind at the application's path: the socket is bound under a random name in a private
 * directory and renamed into place. What Node unlinks at close is that random name, long gone.
 *
 * @module
 */

import type { Stats } from 'node:fs';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { checkSocketPath, USES_NAMED_PIPES, withSocketAddress } from './address.js';
import { ActiveState, tryConnect } from './connect.js';
import {
  ErrorCode,
  fileSystemError,
  isSimpleIpcError,
  SimpleIpcError,
  systemCode,
} from './errors.js';
import { acquireLock, type Lock } from './lock.js';
import type { SocketIdentity } from './trust.js';
import { REFUSAL_CONFIRM_INTERVAL_MS, REFUSAL_CONFIRM_PROBES, refusal } from './refusal.js';
import { checkOwner, checkOwners } from './trust.js';

// Node built-ins: taken, not imported, the heavy ones where first used (trust.ts says why).
// eslint-disable-next-line @typescript-eslint/unbound-method -- node:path's functions take no `this`
const { dirname, join } = process.getBuiltinModule('node:path');
const fsp = (): typeof import('node:fs/promises') => process.getBuiltinModule('node:fs/promises');
const timers = (): typeof import('node:timers/promises') =>
  process.getBuiltinModule('node:timers/promises');

/** Listen backlog (Git's). */
export const LISTEN_BACKLOG = 50;

/** Options of {@link installSocket}. */
export interface InstallOptions {
  /** Socket file permissions (ignored for Windows named pipes). Default 0o600 (owner only). */
  mode: number;
  /** Listen backlog; with named pipes, how many instances wait for clients. Default 50. */
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
  /** A dead socket was at the path and has been replaced. */
  readonly replaced: boolean;
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
 * @throws {@link SimpleIpcError} `ERR_IPC_IN_USE`, `ERR_IPC_LOCKED`, `ERR_IPC_INVALID_PATH`,
 *   `ERR_IPC_UNTRUSTED_OWNER` (another user owns the directory or the socket there),
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
  if (USES_NAMED_PIPES)
    return {
      listener: await listenOnPipe(path, options),
      identity: undefined,
      replaced: false,
    };
  // Fail before touching anything if no client could ever reach the path, or if another user
  // owns its directory or the socket there (it could be posing as us: src/trust.ts).
  checkSocketPath(path);
  await checkOwners(path);
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
    return {
      listener: bound.listener,
      identity: bound.identity,
      replaced: found === 'dead-socket',
    };
  } catch (err) {
    bound?.listener.close();
    if (bound !== undefined) await fsp().unlink(bound.temporary).catch(ignore);
    throw err;
  } finally {
    await lock.release();
    if (bound !== undefined) await fsp().rmdir(bound.directory).catch(ignore);
  }
}

/** What {@link inspectPath} found at the path: nothing, or a socket nobody listens on. */
type Found = 'absent' | 'dead-socket';

// Decides whether `path` may be taken, without touching it. Throws when it may not.
async function inspectPath(path: string): Promise<Found> {
  let stats: Stats;
  try {
    stats = await fsp().lstat(path);
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return 'absent';
    throw fileSystemError(err, path, 'look at');
  }
  if (!stats.isSocket()) {
    throw new SimpleIpcError(ErrorCode.INVALID_PATH, notASocketMessage(path, stats), { path });
  }
  // Looked at again under the lock: it may have appeared since the first look.
  checkOwner(stats, path, '');
  const state = await probeConfirmed(path);
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

/**
 * Says what is in the way at `path`, whose it is, and what to do: a file of this user's may be
 * removed if nothing of theirs needs it; another user's (in a shared directory such as /tmp)
 * is theirs, and removing it would break what they run.
 */
function notASocketMessage(path: string, stats: Stats): string {
  const uid = process.getuid?.();
  const what = describe(stats);
  if (uid === undefined) {
    return `'${path}' is ${what}, not a socket; it is left alone (remove it if nothing needs it, or choose another path)`;
  }
  if (stats.uid === uid) {
    return `'${path}' is ${what} of yours, not a socket; it is left alone (remove it if nothing of yours needs it, or choose another path)`;
  }
  const owner = stats.uid === 0 ? 'root' : `user ${stats.uid}`;
  return `'${path}' is ${what} of ${owner}'s, not a socket; it is left alone (it is not yours to remove: choose another path, in a directory only you can reach such as userSocketDirectory(), 'simple-ipc socket-dir')`;
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
export async function probe(
  path: string,
): Promise<'live' | 'busy' | 'dead' | 'gone' | SimpleIpcError> {
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

/**
 * {@link probe}, where a refusal may come from a live server whose listen queue is full (macOS
 * and the BSDs, src/refusal.ts): a socket is dead only if it still refuses after
 * {@link REFUSAL_CONFIRM_PROBES} more probes, {@link REFUSAL_CONFIRM_INTERVAL_MS} ms apart. The
 * caller holds the start-up lock, so no server of ours can appear or go meanwhile. Git trusts
 * the first refusal and may replace a busy server's socket.
 */
async function probeConfirmed(path: string): ReturnType<typeof probe> {
  let state = await probe(path);
  for (let i = 0; state === 'dead' && refusal.ambiguous && i < REFUSAL_CONFIRM_PROBES; i++) {
    await timers().setTimeout(REFUSAL_CONFIRM_INTERVAL_MS);
    state = await probe(path);
  }
  return state;
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
    directory = await fsp().mkdtemp(join(dirname(path), '.sipc'));
  } catch (err) {
    throw fileSystemError(err, dirname(path), 'create a temporary directory in');
  }
  // A random name, so that what Node unlinks when the listener closes is never anyone's file
  // (with a long path the bound name is relative, or under /proc/self/fd/N/).
  const temporary = join(
    directory,
    process.getBuiltinModule('node:crypto').randomBytes(6).toString('hex'),
  );
  let listener: NetServer | undefined;
  try {
    listener = await listen(temporary, options);
    await fsp().chmod(temporary, options.mode);
    const stats = await fsp().lstat(temporary);
    return { listener, directory, temporary, identity: { dev: stats.dev, ino: stats.ino } };
  } catch (err) {
    listener?.close();
    await fsp().unlink(temporary).catch(ignore);
    await fsp().rmdir(directory).catch(ignore);
    if (err instanceof SimpleIpcError) throw err;
    throw fileSystemError(err, path, 'create the socket');
  }
}

// Puts the bound socket at `path`: rename() over a dead socket replaces it atomically (the
// path never goes missing); link() into an empty place fails rather than replace whatever
// appeared there since we looked (someone who does not take the lock).
async function moveIntoPlace(temporary: string, path: string, found: Found): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      if (found === 'dead-socket') {
        await fsp().rename(temporary, path);
        return;
      }
      await fsp().link(temporary, path);
      await fsp().unlink(temporary).catch(ignore);
      return;
    } catch (err) {
      if (systemCode(err) !== 'EEXIST' || attempt > 0) {
        if (err instanceof SimpleIpcError) throw err;
        throw fileSystemError(err, path, 'create the socket');
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
        USES_NAMED_PIPES
          ? withPipeInstances(options.backlog, () => listener.listen({ path: address }))
          : listener.listen({ path: address, backlog: options.backlog }),
      );
    } catch (err) {
      reject(err);
    }
  });
}

/**
 * The most named-pipe instances a server keeps waiting for clients. Each is a kernel object made
 * when the server starts, and libuv allocates the whole count at once: a backlog of 2^31 - 1
 * aborted the process (out of memory) before this cap. A Unix kernel likewise caps a listen
 * backlog (Linux at `net.core.somaxconn`).
 */
export const MAX_PIPE_INSTANCES = 1024;

/**
 * Runs `listen` with `backlog` pipe instances (1 to {@link MAX_PIPE_INSTANCES}) waiting for
 * clients, the named-pipe form of a listen backlog. libuv keeps 4 by default; when a burst of
 * clients finds every instance taken (ERROR_PIPE_BUSY) they all wait in WaitNamedPipeW, and each
 * freed instance wakes every one of them to race for it (docs/lifecycle.md, Windows). Node takes
 * the count only from NODE_PENDING_PIPE_INSTANCES, read while listen() makes the handle: set for
 * that call, unless the user set it.
 */
function withPipeInstances<T>(backlog: number, listen: () => T): T {
  const env = process.env;
  if (env.NODE_PENDING_PIPE_INSTANCES !== undefined) return listen();
  env.NODE_PENDING_PIPE_INSTANCES = String(Math.min(Math.max(1, backlog), MAX_PIPE_INSTANCES));
  try {
    return listen();
  } finally {
    delete env.NODE_PENDING_PIPE_INSTANCES;
  }
}

async function listenOnPipe(path: string, options: InstallOptions): Promise<NetServer> {
  // Windows refuses a second server by itself: libuv creates the first instance with
  // FILE_FLAG_FIRST_PIPE_INSTANCE, which fails (EADDRINUSE) while the pipe exists. Wine
  // ignores that flag and lets both serve, so we also look first, as on Unix: a server that
  // answers, or a pipe with every instance busy, is in use.
  const state = await probe(path);
  if (state === 'live') throw inUse(path, 'a server answers there');
  if (state === 'busy') throw inUse(path, 'a server is there, too busy to accept a connection');
  if (state instanceof SimpleIpcError) throw state;
  try {
    return await listen(path, options);
  } catch (err) {
    if (systemCode(err) === 'EADDRINUSE') throw inUse(path, 'another server owns the pipe', err);
    if (err instanceof SimpleIpcError) throw err;
    throw fileSystemError(err, path, 'create the pipe');
  }
}

function ignore(): void {}

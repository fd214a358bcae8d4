/**
 * Socket path rules: how an application path becomes an address Node can bind or connect to.
 *
 * - Unix: a socket address holds at most 107 path bytes on Linux (103 on macOS and the BSDs),
 *   and Node 20 silently truncates a longer path, binding or connecting somewhere else. We never
 *   let that happen: a long path goes through the directory's `/proc/self/fd/N/` alias on Linux,
 *   or through a short name relative to the directory elsewhere (Git's chdir trick, in
 *   `unix-socket.c`), or fails with `ERR_IPC_NAME_TOO_LONG`.
 * - Windows: the named pipe `\\.\pipe\` + the real absolute path, `C:` as `C_` and `/` as `\`
 *   (Git's `initialize_pipe_name()` in `compat/simple-ipc/ipc-win32.c`).
 *
 * @module
 */

import { ErrorCode, SimpleIpcError, systemCode } from './errors.js';

// Taken, not imported (trust.ts says why).
const { closeSync, constants, existsSync, openSync, realpathSync } =
  process.getBuiltinModule('node:fs');
// eslint-disable-next-line @typescript-eslint/unbound-method -- node:path's functions take no `this`
const { basename, dirname, win32 } = process.getBuiltinModule('node:path');

/** True when this platform uses named pipes instead of Unix domain sockets. */
export const USES_NAMED_PIPES = process.platform === 'win32';

/**
 * The longest socket path, in bytes, that fits in a `sockaddr_un` on this platform
 * (its `sun_path` size less the terminating NUL): 107 on Linux, 103 on macOS and the BSDs.
 */
export const SOCKET_PATH_MAX = process.platform === 'linux' ? 107 : 103;

/** The longest named-pipe name Windows accepts, in UTF-16 code units. */
export const PIPE_NAME_MAX = 256;

/**
 * The named-pipe name Git uses for `path` on Windows: `\\.\pipe\` followed by the real absolute
 * path, with a drive prefix `C:` written as `C_` and every `/` turned into `\`.
 *
 * Works on any platform (it only computes the name), so the mapping can be tested anywhere.
 *
 * @param path - the application's path.
 * @param realpath - resolves symbolic links in the absolute path; defaults to the file system's
 *   own (on the directory part when the path itself does not exist yet, as Git's
 *   `strbuf_realpath()` allows a missing last component).
 */
export function pipeNameFor(
  path: string,
  realpath: (p: string) => string = windowsRealpath,
): string {
  let name = realpath(win32.resolve(path));
  // Git looks at the second character only: any `X:` prefix becomes `X_`.
  if (name.length >= 2 && name[1] === ':') name = `${name[0]}_${name.slice(2)}`;
  return `\\\\.\\pipe\\${name.replaceAll('/', '\\')}`;
}

/**
 * {@link pipeNameFor}, checked against the length Windows allows.
 *
 * @throws {@link SimpleIpcError} `ERR_IPC_NAME_TOO_LONG` when the pipe name is longer than
 *   {@link PIPE_NAME_MAX}: it is never shortened.
 */
export function checkedPipeName(
  path: string,
  realpath: (p: string) => string = windowsRealpath,
): string {
  const name = pipeNameFor(path, realpath);
  if (name.length > PIPE_NAME_MAX) {
    throw new SimpleIpcError(
      ErrorCode.NAME_TOO_LONG,
      `the pipe name for '${path}' is ${name.length} characters, more than Windows' ${PIPE_NAME_MAX} (use a shorter path)`,
      { path },
    );
  }
  return name;
}

function windowsRealpath(absolute: string): string {
  if (!USES_NAMED_PIPES) return absolute;
  try {
    return realpathSync.native(absolute);
  } catch {
    try {
      return win32.join(realpathSync.native(win32.dirname(absolute)), win32.basename(absolute));
    } catch {
      return absolute;
    }
  }
}

/** Options of {@link withSocketAddress}. */
export interface AddressOptions {
  /**
   * Never change the working directory to reach a long path (Git's `uds_disallow_chdir`).
   * Only matters where the `/proc/self/fd` alias is not available. Default false.
   */
  disallowChdir?: boolean | undefined;
  /**
   * @internal How to reach a long path: `auto` (default: the `/proc/self/fd` alias where it
   * exists, else a change of directory) or `chdir` (forced, so tests can cover it on Linux).
   */
  longPath?: 'auto' | 'chdir' | undefined;
}

let procAliasKnown: boolean | undefined;
// The last path found short enough to be its own address (never set with named pipes).
let lastShortPath: string | undefined;

// The alias needs Linux with /proc mounted (it is not in some containers and chroots).
function procAliasAvailable(): boolean {
  procAliasKnown ??= process.platform === 'linux' && existsSync('/proc/self/fd');
  return procAliasKnown;
}

/**
 * Runs `use(address)` with an address that reaches `path` exactly, and tidies up after.
 *
 * `use` must do its bind or connect synchronously (Node's `listen()` and `connect()` on a pipe
 * both make their system call before returning), because the alias it may be given lives only
 * during the call: an open directory descriptor, or a changed working directory.
 *
 * @throws {@link SimpleIpcError} `ERR_IPC_NAME_TOO_LONG` when no safe address exists (never a
 *   truncated one), `ERR_IPC_INVALID_PATH` for an empty path or one with a NUL byte,
 *   `ERR_IPC_PATH_NOT_FOUND` when the directory of a long path does not exist, `ERR_IPC_OTHER`
 *   when it cannot be entered.
 */
export function withSocketAddress<T>(
  path: string,
  options: AddressOptions,
  use: (address: string) => T,
): T {
  // A client sending many requests passes the same path each time: checked once.
  if (path === lastShortPath) return use(path);
  if (path === '' || path.includes('\0')) throw invalidPath(path);
  if (USES_NAMED_PIPES) return use(checkedPipeName(path));
  if (Buffer.byteLength(path) <= SOCKET_PATH_MAX) {
    lastShortPath = path;
    return use(path);
  }

  const dir = dirname(path);
  const name = basename(path);
  if (options.longPath !== 'chdir' && procAliasAvailable()) {
    let fd: number | undefined;
    try {
      fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    } catch (cause) {
      // A directory we may enter but not read cannot be opened: try the chdir route.
      if (systemCode(cause) !== 'EACCES') throw directoryError(path, cause);
    }
    if (fd !== undefined) {
      const alias = `/proc/self/fd/${fd}/${name}`;
      try {
        if (Buffer.byteLength(alias) <= SOCKET_PATH_MAX) return use(alias);
      } finally {
        closeSync(fd);
      }
      // A file name too long for the alias may still fit on its own: the chdir route.
    }
  }

  if (Buffer.byteLength(name) > SOCKET_PATH_MAX) {
    throw tooLong(path, `and even its file name is too long (${Buffer.byteLength(name)} bytes)`);
  }
  if (options.disallowChdir) {
    throw tooLong(path, 'and changing directory to reach it is not allowed (disallowChdir)');
  }
  // process.chdir() moves every thread of the process; Node forbids it in workers.
  if (!isMainThread()) throw tooLong(path, 'and a worker thread cannot change directory');
  const previous = process.cwd();
  try {
    process.chdir(dir);
  } catch (cause) {
    throw directoryError(path, cause);
  }
  try {
    return use(name);
  } finally {
    process.chdir(previous);
  }
}

/**
 * Checks that some client could ever reach `path`: a path longer than
 * {@link SOCKET_PATH_MAX} bytes is reachable only through its directory, so its file name
 * must fit on its own. A server refuses a path no client can reach.
 *
 * @throws {@link SimpleIpcError} `ERR_IPC_INVALID_PATH` for an empty path or one with a NUL byte,
 *   `ERR_IPC_NAME_TOO_LONG` for a file name that can never fit.
 */
export function checkSocketPath(path: string): void {
  if (path === '' || path.includes('\0')) throw invalidPath(path);
  if (USES_NAMED_PIPES || Buffer.byteLength(path) <= SOCKET_PATH_MAX) return;
  const name = basename(path);
  if (Buffer.byteLength(name) > SOCKET_PATH_MAX) {
    throw tooLong(path, `and even its file name is too long (${Buffer.byteLength(name)} bytes)`);
  }
}

function invalidPath(path: string): SimpleIpcError {
  return new SimpleIpcError(
    ErrorCode.INVALID_PATH,
    `invalid pipe/socket name '${path.replaceAll('\0', '\\0')}' (it must be a non-empty path without NUL bytes)`,
    { path },
  );
}

function tooLong(path: string, why: string, cause?: unknown): SimpleIpcError {
  return new SimpleIpcError(
    ErrorCode.NAME_TOO_LONG,
    `socket path is longer than ${SOCKET_PATH_MAX} bytes ${why}: '${path}' (use a shorter path)`,
    { path, cause },
  );
}

// Git's chdir() failing: ENOENT means the path cannot exist (PATH_NOT_FOUND), anything else
// is an other-error.
function directoryError(path: string, cause: unknown): SimpleIpcError {
  const code = systemCode(cause);
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new SimpleIpcError(ErrorCode.PATH_NOT_FOUND, `path not found '${path}'`, {
      path,
      cause,
    });
  }
  return new SimpleIpcError(
    ErrorCode.OTHER,
    `cannot reach the directory of '${path}': ${(cause as Error).message}`,
    { path, cause },
  );
}

// node:worker_threads is loaded only here, for the rare chdir fallback: loading it costs a
// short-lived client several ms of start-up (see docs/benchmarks.md, "CLI start-up").
function isMainThread(): boolean {
  return process.getBuiltinModule('node:worker_threads').isMainThread;
}

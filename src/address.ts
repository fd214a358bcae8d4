/**
 * Socket path rules: how an application path becomes an address Node can bind or connect to.
 *
 * - Unix: a socket address holds at most 107 path bytes on Linux (103 on macOS and the BSDs),
 *   and Node 20 silently truncates a longer path, binding or connecting somewhere else. We never
 *   let that happen: a long path goes through the directory's `/proc/self/fd/N/` alias on Linux,
 *   or through a short name relative to the directory elsewhere (Git's chdir trick), or fails
 *   with `ERR_IPC_NAME_TOO_LONG`.
 * - Windows: the named pipe `\\.\pipe\` + the real absolute path, `C:` as `C_` and `/` as `\`
 *   (Git's `compat/simple-ipc/ipc-win32.c`).
 *
 * @module
 */

import { closeSync, constants, openSync, realpathSync } from 'node:fs';
import { basename, dirname, win32 } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { ErrorCode, SimpleIpcError } from './errors.js';

/** True when this platform uses named pipes instead of Unix domain sockets. */
export const USES_NAMED_PIPES = process.platform === 'win32';

/**
 * The longest socket path, in bytes, that fits in a `sockaddr_un` on this platform
 * (its `sun_path` size less the terminating NUL): 107 on Linux, 103 on macOS and the BSDs.
 */
export const SOCKET_PATH_MAX = process.platform === 'linux' ? 107 : 103;

/**
 * The named-pipe name Git uses for `path` on Windows: `\\.\pipe\` followed by the real absolute
 * path, with a drive prefix `C:` written as `C_` and every `/` turned into `\`.
 *
 * Works on any platform (it only computes the name), so the mapping can be tested anywhere.
 *
 * @param path - the application's path.
 * @param realpath - resolves symbolic links in the absolute path; defaults to the file system's
 *   own (on the directory part when the path itself does not exist yet).
 */
export function pipeNameFor(
  path: string,
  realpath: (p: string) => string = windowsRealpath,
): string {
  const absolute = realpath(win32.resolve(path));
  const mapped = absolute.replace(/^([A-Za-z]):/, '$1_').replace(/\//g, '\\');
  return `\\\\.\\pipe\\${mapped}`;
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
}

/**
 * Runs `use(address)` with an address that reaches `path` exactly, and tidies up after.
 *
 * `use` must do its bind or connect synchronously (Node's `listen()` and `connect()` on a pipe
 * both make their system call before returning), because the alias it may be given lives only
 * during the call: an open directory descriptor, or a changed working directory.
 *
 * @throws {SimpleIpcError} `ERR_IPC_NAME_TOO_LONG` when no safe address exists.
 */
export function withSocketAddress<T>(
  path: string,
  options: AddressOptions,
  use: (address: string) => T,
): T {
  if (USES_NAMED_PIPES) return use(pipeNameFor(path));
  if (Buffer.byteLength(path) <= SOCKET_PATH_MAX) return use(path);

  const dir = dirname(path);
  const name = basename(path);
  if (process.platform === 'linux') {
    let fd: number;
    try {
      fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    } catch (cause) {
      throw tooLong(path, `its directory cannot be opened (${(cause as Error).message})`, cause);
    }
    try {
      const alias = `/proc/self/fd/${fd}/${name}`;
      if (Buffer.byteLength(alias) > SOCKET_PATH_MAX) {
        throw tooLong(path, `even its file name is too long (${Buffer.byteLength(name)} bytes)`);
      }
      return use(alias);
    } finally {
      closeSync(fd);
    }
  }

  if (Buffer.byteLength(name) > SOCKET_PATH_MAX - 2) {
    throw tooLong(path, `even its file name is too long (${Buffer.byteLength(name)} bytes)`);
  }
  if (options.disallowChdir) throw tooLong(path, 'and changing directory is not allowed');
  if (!isMainThread) throw tooLong(path, 'and a worker thread cannot change directory');
  const previous = process.cwd();
  process.chdir(dir);
  try {
    return use(`./${name}`);
  } finally {
    process.chdir(previous);
  }
}

function tooLong(path: string, why: string, cause?: unknown): SimpleIpcError {
  return new SimpleIpcError(
    ErrorCode.NAME_TOO_LONG,
    `socket path is longer than ${SOCKET_PATH_MAX} bytes ${why}: '${path}' (use a shorter path)`,
    { path, cause },
  );
}

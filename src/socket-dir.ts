/**
 * A safe per-user place for sockets: a directory only this user can reach, so that no other
 * local user can put a socket at a name this user's clients will connect to (and send their
 * requests to), nor connect to this user's servers. docs/security.md says why.
 *
 * @module
 */

import type { Stats } from 'node:fs';
import { USES_NAMED_PIPES } from './address.js';
import { ErrorCode, fileSystemError, SimpleIpcError, systemCode } from './errors.js';
import { optionsObject, string } from './validate.js';

// Node built-ins: taken, not imported, the heavy ones where first used (trust.ts says why).
const { lstatSync, mkdirSync } = process.getBuiltinModule('node:fs');
// eslint-disable-next-line @typescript-eslint/unbound-method -- node:path's functions take no `this`
const { isAbsolute, join, normalize, sep, win32 } = process.getBuiltinModule('node:path');

/** Options of {@link userSocketDirectory}. */
export interface UserSocketDirectoryOptions {
  /**
   * Where `XDG_RUNTIME_DIR` (and, on Windows, `LOCALAPPDATA`) is read from. Default
   * `process.env`.
   */
  env?: Readonly<Record<string, string | undefined>> | undefined;
  /** The shared temporary directory the fallback is made in. Default `os.tmpdir()`. */
  tempDir?: string | undefined;
}

/**
 * A directory for this user's sockets that no other user can reach. Join a file name to it:
 * `join(userSocketDirectory(), 'my-daemon.sock')`.
 *
 * - Unix, when `XDG_RUNTIME_DIR` is set (Linux with systemd: `/run/user/<uid>`): that
 *   directory, after checking that it is a directory (not a symbolic link) owned by this user
 *   with no group or other permissions, as the XDG Base Directory specification requires.
 *   It is returned normalised (no trailing `/`, no `.` or `..` components), as it was checked:
 *   `/run/user/1000/` names the same directory, but through a symbolic link it would name the
 *   link's target. A relative value is invalid by the specification and ignored, as an unset
 *   or empty one is: the fallback below is used.
 * - Unix otherwise (macOS, containers, cron): `simple-ipc-<uid>` in the temporary directory,
 *   created with mode 0700 if missing, then checked the same way. One that another user made
 *   first is refused, never used.
 * - Windows: the user's `LOCALAPPDATA` (else the home directory), unchecked and not created.
 *   Pipe names are not files and no directory protects them: the path only keeps the name
 *   apart from other users' names; any local user can create a pipe of any name first.
 *   docs/security.md says what that means and what to do.
 *
 * Synchronous: it is meant to be called once, when the path is chosen.
 *
 * @throws {@link SimpleIpcError} `ERR_IPC_UNSAFE_DIRECTORY` when the directory exists but is
 *   another user's, a symbolic link, not a directory, or open to group or others (the message
 *   says what to do); `ERR_IPC_INVALID_PATH` when `XDG_RUNTIME_DIR` names a directory that does
 *   not exist (the message says what to do); `ERR_IPC_ACCESS_DENIED`, `ERR_IPC_INVALID_PATH` or
 *   `ERR_IPC_OTHER` when it cannot be created; `ERR_IPC_INVALID_ARGUMENT` for a bad option.
 */
export function userSocketDirectory(options: UserSocketDirectoryOptions = {}): string {
  const o = optionsObject(options);
  const env = o.env === undefined ? process.env : optionsObject(o.env, 'options.env');
  const base = string(o.tempDir, 'options.tempDir');
  if (USES_NAMED_PIPES) {
    return env.LOCALAPPDATA !== undefined && env.LOCALAPPDATA !== ''
      ? win32.resolve(env.LOCALAPPDATA)
      : process.getBuiltinModule('node:os').homedir();
  }
  const uid = process.geteuid!();
  // The specification: an unset or empty variable means there is none, and a relative one is
  // invalid and ignored, as if unset.
  const runtime = absoluteDirectory(env.XDG_RUNTIME_DIR);
  if (runtime !== undefined) {
    checkDirectory(runtime, lookAtRuntime(runtime), uid, 'XDG_RUNTIME_DIR', RUNTIME_FIX);
    return runtime;
  }
  const dir = join(base ?? process.getBuiltinModule('node:os').tmpdir(), `simple-ipc-${uid}`);
  try {
    // Not recursive: the temporary directory itself must exist, and nothing else is made.
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if (systemCode(err) !== 'EEXIST') throw fileSystemError(err, dir, 'create the directory');
  }
  // Checked also when just made: the umask or a racer may have had a say.
  checkDirectory(
    dir,
    lookAt(dir),
    uid,
    'the per-user socket directory',
    `remove it if it is yours, else ask an administrator to; or set XDG_RUNTIME_DIR or TMPDIR to a directory of your own with mode 0700`,
  );
  return dir;
}

// `dir` without trailing slashes or `.` components, or undefined when it is empty or relative.
// lstat() follows a symbolic link named with a trailing `/` or `/.`: the name must end with the
// link itself for the check to see the link.
function absoluteDirectory(dir: string | undefined): string | undefined {
  if (dir === undefined || !isAbsolute(dir)) return undefined;
  const normal = normalize(dir);
  return normal.length > 1 && normal.endsWith(sep) ? normal.slice(0, -1) : normal;
}

const RUNTIME_FIX = 'unset XDG_RUNTIME_DIR, or set it to a directory of your own with mode 0700';

// XDG_RUNTIME_DIR names a directory that must exist already. A stale one (after `su`, `sudo -E`,
// in a container, after logout) is common: name the variable and what to do, as the other
// refusals of it do, rather than blame a parent directory.
function lookAtRuntime(dir: string): Stats {
  try {
    return lstatSync(dir);
  } catch (err) {
    if (systemCode(err) !== 'ENOENT') throw fileSystemError(err, dir, 'look at');
    throw new SimpleIpcError(
      ErrorCode.INVALID_PATH,
      `XDG_RUNTIME_DIR '${dir}' does not exist; it is not used for sockets (${RUNTIME_FIX})`,
      { path: dir, cause: err },
    );
  }
}

function lookAt(dir: string): Stats {
  try {
    return lstatSync(dir);
  } catch (err) {
    throw fileSystemError(err, dir, 'look at');
  }
}

// A directory owned by `uid`, with every owner permission and none for group or others.
function checkDirectory(dir: string, stats: Stats, uid: number, what: string, fix: string): void {
  let why: string | undefined;
  if (stats.isSymbolicLink()) why = 'is a symbolic link';
  else if (!stats.isDirectory()) why = 'is not a directory';
  else if (stats.uid !== uid) {
    why = `belongs to user ${stats.uid}, not to you (user ${uid}): someone else may have made it to receive your requests`;
  } else if ((stats.mode & 0o777) !== 0o700) {
    why = `has mode 0${(stats.mode & 0o777).toString(8)}, not 0700: ${(stats.mode & 0o077) === 0 ? 'you cannot use it fully' : 'group or others may reach your sockets'}`;
  }
  if (why === undefined) return;
  throw new SimpleIpcError(
    ErrorCode.UNSAFE_DIRECTORY,
    `${what} '${dir}' ${why}; it is not used for sockets (${fix})`,
    { path: dir },
  );
}

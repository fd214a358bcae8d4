/**
 * Whose socket it is: before a request (and its secrets) goes to a socket, or a server puts
 * its socket somewhere, the socket and the directory it is in must belong to this user or to
 * root. Another local user who made a socket first at a path in a shared directory (`/tmp`)
 * would otherwise receive every request sent there. Git is safe here by layout (its sockets
 * live under `.git/`, and fsmonitor checks the directory it makes elsewhere); a library that
 * takes any path must check.
 *
 * Root is trusted: it can already read this user's files and memory, so a socket of root's is
 * no escalation. Windows named pipes have no file owner Node can read: nothing is checked there
 * (docs/security.md says what to do instead).
 *
 * @module
 */

import type { Stats } from 'node:fs';
import { USES_NAMED_PIPES } from './address.js';
import { ErrorCode, SimpleIpcError } from './errors.js';

// Node's built-ins are taken with process.getBuiltinModule here and in the other modules, not
// imported: an `import` of a built-in builds an ES module namespace for it, which reads every
// export, the lazy ones too: `node:fs` then loads `fs.promises`, `fs.Dir`, `fs.watch` and
// readline's internals (about 30 internal modules), `node:util` its argument parser, its diff
// and `worker_threads`. A short-lived client would pay for all of it at start-up. The modules
// only a server uses (child processes, workers, crypto, `node:fs/promises`) are taken where
// first used, so that importing the main entry does not load them either (docs/benchmarks.md,
// "Client start-up").
const fs = process.getBuiltinModule('node:fs');
// eslint-disable-next-line @typescript-eslint/unbound-method -- node:path's functions take no `this`
const { dirname } = process.getBuiltinModule('node:path');

/** `fs.promises.lstat` over the callback API: a client never loads `node:fs/promises`. */
export function lstat(path: string): Promise<Stats> {
  return new Promise((resolve, reject) => {
    fs.lstat(path, (err, stats) => (err === null ? resolve(stats) : reject(err)));
  });
}

/** `fs.promises.stat` over the callback API, as {@link lstat}. */
export function stat(path: string): Promise<Stats> {
  return new Promise((resolve, reject) => {
    fs.stat(path, (err, stats) => (err === null ? resolve(stats) : reject(err)));
  });
}

/** The device and inode that identify a socket file. */
export interface SocketIdentity {
  readonly dev: number;
  readonly ino: number;
}

/** True when a file owned by `uid` may be trusted by this process (its own, or root's). */
export function trustedOwner(uid: number): boolean {
  return uid === 0 || uid === process.geteuid!();
}

/**
 * Checks that the directory of `path` and the socket at `path`, if there is one, belong to
 * this user or root (a symbolic link, as the directory or at the socket path: both the link and
 * what it points to). Only the owner is looked at: a file this user may not look at is left to
 * the connect or bind, which will report it.
 *
 * @returns the identity of the socket found, or undefined when there is none (or on Windows).
 * @throws {@link SimpleIpcError} `ERR_IPC_UNTRUSTED_OWNER`.
 */
export async function checkOwners(path: string): Promise<SocketIdentity | undefined> {
  if (USES_NAMED_PIPES) return undefined;
  await checkDirectoryOwner(path);
  const socket = await lstat(path).catch(absent);
  if (socket === undefined) return undefined;
  checkOwner(socket, path, '');
  if (socket.isSymbolicLink()) {
    const target = await stat(path).catch(absent);
    if (target !== undefined) checkLinkTarget(target, path);
  }
  return { dev: socket.dev, ino: socket.ino };
}

/**
 * The look a client with the owner check makes before and after its connect: the directory of
 * `path` as {@link checkOwners} checks it, then what is at `path`, which must be a file of this
 * user's or root's and not a symbolic link (what a link points to, in a directory that is not
 * checked, could be swapped between two looks without either look seeing it).
 *
 * @returns the identity of the file at `path`; the error of the look when it failed (`ENOENT`:
 *   nothing there); undefined with Windows named pipes (nothing can be checked).
 * @throws {@link SimpleIpcError} `ERR_IPC_UNTRUSTED_OWNER`.
 */
export async function lookBeforeConnect(path: string): Promise<SocketIdentity | Error | undefined> {
  if (USES_NAMED_PIPES) return undefined;
  await checkDirectoryOwner(path);
  let socket: Stats;
  try {
    socket = await lstat(path);
  } catch (err) {
    return err as Error;
  }
  checkOwner(socket, path, '');
  if (socket.isSymbolicLink()) {
    const target = await stat(path).catch(absent);
    if (target !== undefined) checkLinkTarget(target, path);
    throw new SimpleIpcError(
      ErrorCode.UNTRUSTED_OWNER,
      `the socket path '${path}' is a symbolic link: with the owner check, the path must name the socket itself, since what a link points to can change between the check and the connect; it is not used (give the path the link points to)`,
      { path },
    );
  }
  return { dev: socket.dev, ino: socket.ino };
}

// The directory of `path` (a symbolic link: both the link and what it points to).
async function checkDirectoryOwner(path: string): Promise<void> {
  const dir = dirname(path);
  const link = await lstat(dir).catch(absent);
  if (link === undefined) return;
  checkOwner(link, path, `the directory '${dir}' of`);
  if (link.isSymbolicLink()) {
    const target = await stat(dir).catch(absent);
    if (target !== undefined) checkOwner(target, path, `the directory '${dir}' links to, of`);
  }
}

// What the symbolic link at `path` points to must be this user's or root's too.
function checkLinkTarget(target: Stats, path: string): void {
  if (trustedOwner(target.uid)) return;
  throw new SimpleIpcError(
    ErrorCode.UNTRUSTED_OWNER,
    `the socket path '${path}' is a symbolic link to a file of user ${target.uid}, not of you (user ${process.geteuid!()}) or root: another user may be posing as your server, so it is not used (put your socket in a directory of your own: userSocketDirectory(), see docs/security.md)`,
    { path },
  );
}

/**
 * Throws `ERR_IPC_UNTRUSTED_OWNER` when `stats` (the socket at `path`, or what `what` names)
 * is another user's.
 */
export function checkOwner(stats: Stats, path: string, what: string): void {
  if (trustedOwner(stats.uid)) return;
  if (what === '' && !stats.isSocket()) {
    // Not a socket at all: nobody poses as a server there, but the file is not ours to remove.
    const kind = stats.isDirectory() ? 'a directory' : stats.isFile() ? 'a regular file' : 'a file';
    throw new SimpleIpcError(
      ErrorCode.UNTRUSTED_OWNER,
      `'${path}' is ${kind} of user ${stats.uid}, not yours (user ${process.geteuid!()}), and not a socket; it is left alone (it is not yours to remove: choose another path, in a directory of your own: userSocketDirectory(), see docs/security.md)`,
      { path },
    );
  }
  const subject = what === '' ? `the socket '${path}'` : `${what} the socket '${path}'`;
  throw new SimpleIpcError(
    ErrorCode.UNTRUSTED_OWNER,
    `${subject} belongs to user ${stats.uid}, not to you (user ${process.geteuid!()}) or root: another user may be posing as your server, so it is not used (put your socket in a directory of your own: userSocketDirectory(), see docs/security.md)`,
    { path },
  );
}

// A look that failed shows no owner: nothing there yet (ENOENT), or not ours to look at
// (EACCES), which the connect or bind then reports in its own words.
function absent(): undefined {
  return undefined;
}

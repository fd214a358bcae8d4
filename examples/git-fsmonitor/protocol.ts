/**
 * Git's filesystem-monitor protocol, version 2, as spoken over Simple-IPC between `git status`
 * (the client) and `git fsmonitor--daemon` (the server, at `<worktree>/.git/fsmonitor--daemon.ipc`).
 *
 * - The request is the client's token, as text, nothing added. Two more requests are commands:
 *   `quit` (stop the daemon) and `flush` (forget everything: a new token, a trivial answer).
 * - The response is the new token, a NUL, then either `/` NUL, the trivial answer ("anything may
 *   have changed: look at everything"), or each path that changed since the client's token,
 *   relative to the worktree root, each followed by a NUL. No paths means nothing changed.
 *
 * Simple-IPC carries these as opaque bytes; this file is the only place that knows their
 * meaning. Facts from Git's `builtin/fsmonitor--daemon.c` and `fsmonitor-ipc.c`.
 */

/** Where Git's client looks for the daemon, relative to the git directory. */
export const IPC_NAME = 'fsmonitor--daemon.ipc';

/** Asks the daemon to stop (Git's `git fsmonitor--daemon stop` sends it). */
export const QUIT_COMMAND = 'quit';
/** Asks the daemon to start a new token and answer trivially (Git's tests use it). */
export const FLUSH_COMMAND = 'flush';

/** A decoded response. */
export type QueryResult =
  | { readonly token: string; readonly trivial: true }
  | { readonly token: string; readonly trivial: false; readonly paths: readonly string[] };

/** Thrown for bytes that are not a protocol V2 response. */
export class FsmonitorProtocolError extends Error {
  override readonly name = 'FsmonitorProtocolError';
}

/** The request for the paths changed since `token` (or a command). */
export function encodeQuery(token: string): Buffer {
  return Buffer.from(token, 'utf8');
}

/**
 * Decodes a response: the token up to the first NUL, then `/` NUL (trivial) or NUL-ended
 * paths. Throws {@link FsmonitorProtocolError} when the token has no NUL or the last path no
 * NUL, so a cut-off response is never taken for a shorter answer.
 */
export function decodeResponse(response: Buffer): QueryResult {
  const end = response.indexOf(0);
  if (end < 0) throw new FsmonitorProtocolError('the response has no NUL after its token');
  const token = response.toString('utf8', 0, end);
  const rest = response.subarray(end + 1);
  if (rest.length === 2 && rest[0] === 0x2f && rest[1] === 0) return { token, trivial: true };
  if (rest.length > 0 && rest[rest.length - 1] !== 0)
    throw new FsmonitorProtocolError('the last path of the response has no NUL');
  const paths: string[] = [];
  let start = 0;
  for (let nul = rest.indexOf(0); nul >= 0; nul = rest.indexOf(0, start)) {
    paths.push(rest.toString('utf8', start, nul));
    start = nul + 1;
  }
  return { token, trivial: false, paths };
}

/** The trivial response: `token` NUL `/` NUL. */
export function encodeTrivialResponse(token: string): Buffer {
  return Buffer.from(`${token}\0/\0`, 'utf8');
}

/**
 * The response listing `paths`, as pieces of about `pieceSize` bytes (a server replies them one
 * by one, so a long list is never built as one string). The first piece is the token and its
 * NUL.
 */
export function* encodeResponse(
  token: string,
  paths: Iterable<string>,
  pieceSize = 64 * 1024,
): Generator<Buffer> {
  yield Buffer.from(`${token}\0`, 'utf8');
  let pending: string[] = [];
  let size = 0;
  for (const path of paths) {
    pending.push(path);
    size += path.length + 1;
    if (size >= pieceSize) {
      yield Buffer.from(`${pending.join('\0')}\0`, 'utf8');
      pending = [];
      size = 0;
    }
  }
  if (pending.length > 0) yield Buffer.from(`${pending.join('\0')}\0`, 'utf8');
}

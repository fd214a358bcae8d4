/**
 * What a refused connection (`ECONNREFUSED`) means on this platform. On Linux it means nobody
 * listens on the socket: a full listen queue gives `EAGAIN` instead. On macOS and the BSDs a
 * full listen queue gives `ECONNREFUSED` too, so a refusal there may come from a live server
 * that a burst of clients keeps busy (Git treats it as dead everywhere, in
 * `ipc-unix-socket.c`). Where it is ambiguous, start-up confirms a refusal before it replaces
 * a socket, and `connectOrStart()` before it starts a daemon.
 *
 * Internal: a test seam, so that a Linux run can exercise the macOS path.
 *
 * @module
 */

/** Platforms whose full listen queue refuses connections with ECONNREFUSED. */
const REFUSING_WHEN_FULL = new Set(['darwin', 'freebsd', 'openbsd', 'netbsd']);

/** How many more probes confirm that a refusing socket is dead, where refusal is ambiguous. */
export const REFUSAL_CONFIRM_PROBES = 3;
/** The wait before each confirming probe, in ms (Git's connect retry step). */
export const REFUSAL_CONFIRM_INTERVAL_MS = 50;

/**
 * The platform behaviour, mutable for tests only.
 *
 * - `ambiguous`: ECONNREFUSED may come from a live server with a full listen queue (default:
 *   true on macOS, FreeBSD, OpenBSD and NetBSD).
 * - `inject`: when set, asked before each connection attempt; a system error code it returns
 *   (`'ECONNREFUSED'`, ...) fails that attempt as if the kernel had returned it. Undefined
 *   outside tests, so a connect pays one comparison for it.
 */
export const refusal: {
  ambiguous: boolean;
  inject: ((path: string) => string | undefined) | undefined;
} = {
  ambiguous: REFUSING_WHEN_FULL.has(process.platform),
  inject: undefined,
};

/** A system error with `code`, as an injected connection failure. */
export function injectedError(code: string, path: string): Error {
  return Object.assign(new Error(`connect ${code} ${path} (injected)`), { code });
}

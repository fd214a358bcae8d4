/**
 * Errors raised by simple-ipc. Every failure has its own stable `code` so that callers branch
 * on one kind of thing; the system error that caused it, if any, is kept as `cause`.
 *
 * @module
 */

/**
 * Every error code this library raises, with what it means.
 *
 * Codes are stable: they are part of the public API and never change meaning.
 */
export const ErrorCode = {
  /** A pkt-line length field is not four hex digits, or is 1-3 (`0003`, ...). */
  PKT_LINE_LENGTH: 'ERR_PKT_LINE_LENGTH',
  /** A pkt-line length field is above LARGE_PACKET_MAX (65520). */
  PKT_LINE_TOO_LONG: 'ERR_PKT_LINE_TOO_LONG',
  /** A delim (`0001`) or response-end (`0002`) packet inside a Simple-IPC message. */
  PKT_LINE_UNEXPECTED: 'ERR_PKT_LINE_UNEXPECTED',
  /** The peer hung up before the flush packet that ends a message. */
  TRUNCATED: 'ERR_IPC_TRUNCATED',
  /** A request was larger than the server's `maxRequestSize`, or a response than `maxResponseSize`. */
  TOO_LARGE: 'ERR_IPC_TOO_LARGE',
  /** The peer sent nothing for longer than the allowed time. */
  TIMEOUT: 'ERR_IPC_TIMEOUT',
  /** Nothing listens at the path (dead socket, busy server, or deadline reached). */
  NOT_LISTENING: 'ERR_IPC_NOT_LISTENING',
  /** The path does not exist. */
  PATH_NOT_FOUND: 'ERR_IPC_PATH_NOT_FOUND',
  /** The path can never be a socket: it is a regular file, a directory, or unreachable. */
  INVALID_PATH: 'ERR_IPC_INVALID_PATH',
  /** A connection failed for a reason the active-state rules do not name. */
  OTHER: 'ERR_IPC_OTHER',
  /** Another server answers at the path; it is never stolen. */
  IN_USE: 'ERR_IPC_IN_USE',
  /** The start-up lock `<path>.lock` is held by a live process. */
  LOCKED: 'ERR_IPC_LOCKED',
  /** The socket path does not fit in a socket address and no safe way around it is allowed. */
  NAME_TOO_LONG: 'ERR_IPC_NAME_TOO_LONG',
  /** The connection was closed or destroyed before the exchange completed. */
  CONNECTION_CLOSED: 'ERR_IPC_CONNECTION_CLOSED',
  /**
   * The request handler threw or rejected; the client sees this as a truncated response. Also
   * the code of the process warning that reports a handler failure when the server has no
   * `onHandlerError`.
   */
  HANDLER_FAILED: 'ERR_IPC_HANDLER_FAILED',
  /**
   * A callback of the application (a `debug` logger, `onHandlerError`, a policy hook) threw or
   * rejected. Never thrown: the failure is contained and reported once per callback, as a
   * process warning with this code and what it threw as `cause`.
   */
  CALLBACK_FAILED: 'ERR_IPC_CALLBACK_FAILED',
  /**
   * The operation was aborted through its AbortSignal. The error is named `AbortError` and
   * carries the signal's `reason` as `cause`, as Node's own aborts do.
   */
  ABORTED: 'ABORT_ERR',
  /** An argument had the wrong type or value. */
  INVALID_ARGUMENT: 'ERR_IPC_INVALID_ARGUMENT',
  /**
   * A server closed a connection at once, without reading it: its queue was full, or it was
   * stopping. Never thrown (the client sees the connection closed): the error of a rejected
   * request in the `simple-ipc:server:request` and `simple-ipc:server:rejected` channels.
   */
  REJECTED: 'ERR_IPC_REJECTED',
  /** A daemon started on demand exited before it was listening. */
  DAEMON_TERMINATED: 'ERR_IPC_DAEMON_TERMINATED',
  /** A daemon started on demand was not listening before the deadline. */
  DAEMON_NOT_ONLINE: 'ERR_IPC_DAEMON_NOT_ONLINE',
  /** A daemon could not be started (spawn failed, or its socket path is unusable). */
  DAEMON_FAILED: 'ERR_IPC_DAEMON_FAILED',
  /**
   * The server may not create or replace its socket or lock file: the directory is read-only
   * or not ours, or the dead socket there belongs to another user.
   */
  ACCESS_DENIED: 'ERR_IPC_ACCESS_DENIED',
  /**
   * The socket, the directory it is in, or its start-up lock file `<path>.lock` belongs to
   * another user (not this one, not root): that user could be posing as the server. Also a
   * socket path that the check cannot vouch for (a symbolic link, or a socket replaced or gone
   * during the connect), and a daemon's log file of another user's. Raised by `startServer()`,
   * `connectOrStart()`, `startDaemon()`, and by clients that ask for the check (`checkOwner`).
   */
  UNTRUSTED_OWNER: 'ERR_IPC_UNTRUSTED_OWNER',
  /**
   * The per-user socket directory is not safe: another user's, a symbolic link, not a
   * directory, or open to group or others (`userSocketDirectory()`).
   */
  UNSAFE_DIRECTORY: 'ERR_IPC_UNSAFE_DIRECTORY',
} as const;

// Frozen: the library compares and raises these values; an application must not change them.
Object.freeze(ErrorCode);

/** One of the `ErrorCode` values. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

// The brand every SimpleIpcError carries, registered so that two copies of this package (common
// in a dependency tree) share it: an error made by one copy is `instanceof` the other's class.
const kSimpleIpcError = Symbol.for('simple-ipc.error');

/**
 * The one error class of this library. Branch on `code`, never on the message.
 *
 * `instanceof SimpleIpcError` is true for errors made by any copy of this package, not only
 * this one (the class carries a `Symbol.for` brand). An abort (`code` `ABORT_ERR`) is named
 * `AbortError`, as Node names its own, and carries the signal's `reason` as `cause`; every
 * other error is named `SimpleIpcError`.
 *
 * @example
 * ```ts
 * try { await sendCommand(path, 'ping'); }
 * catch (err) { if (err instanceof SimpleIpcError && err.code === 'ERR_IPC_NOT_LISTENING') start(); }
 * ```
 */
export class SimpleIpcError extends Error {
  /** A stable machine-readable code, one of `ErrorCode`. */
  readonly code: ErrorCode;
  /** The socket path involved, when there is one. */
  readonly path: string | undefined;

  /**
   * @param code - the stable code.
   * @param message - what happened and, where useful, what to do about it.
   * @param options - `cause` (the underlying error, kept when given, even if undefined) and
   *   `path`.
   */
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; path?: string } = {}) {
    super(message, 'cause' in options ? { cause: options.cause } : undefined);
    this.name = code === ErrorCode.ABORTED ? 'AbortError' : 'SimpleIpcError';
    this.code = code;
    this.path = options.path;
  }

  /** The brand that {@link SimpleIpcError}'s `instanceof` looks for. */
  get [kSimpleIpcError](): true {
    return true;
  }

  /**
   * True for a {@link SimpleIpcError} made by any copy of this package. A subclass keeps the
   * ordinary prototype check.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== SimpleIpcError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return (
      typeof value === 'object' &&
      value !== null &&
      (value as { [kSimpleIpcError]?: unknown })[kSimpleIpcError] === true
    );
  }
}

// Frozen, prototype included: `instanceof` and the brand must stay what the library relies on.
// A subclass still works (its own prototype is its own).
Object.freeze(SimpleIpcError.prototype);
Object.freeze(SimpleIpcError);

/**
 * True when `err` is a {@link SimpleIpcError} (from any copy of this package) with the given
 * code. In TypeScript, `err.code` is then that code's literal type.
 *
 * @example
 * ```ts
 * if (isSimpleIpcError(err, 'ERR_IPC_TIMEOUT')) retryLater(err.code); // err.code: 'ERR_IPC_TIMEOUT'
 * ```
 */
export function isSimpleIpcError<C extends ErrorCode>(
  err: unknown,
  code: C,
): err is SimpleIpcError & { readonly code: C };
/** True when `err` is a {@link SimpleIpcError} (from any copy of this package), of any code. */
export function isSimpleIpcError(err: unknown): err is SimpleIpcError;
export function isSimpleIpcError(err: unknown, code?: ErrorCode): err is SimpleIpcError {
  return err instanceof SimpleIpcError && (code === undefined || err.code === code);
}

/** The `code` of a Node system error (`ENOENT`, ...), or undefined. */
export function systemCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** An {@link ErrorCode.ABORTED} error for `signal`, carrying its reason as `cause`. */
export function abortError(signal: AbortSignal): SimpleIpcError {
  return new SimpleIpcError(ErrorCode.ABORTED, 'The operation was aborted', {
    cause: signal.reason,
  });
}

/** A file-system failure as a {@link SimpleIpcError} whose code tells the user what to fix. */
export function fileSystemError(err: unknown, path: string, action: string): SimpleIpcError {
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

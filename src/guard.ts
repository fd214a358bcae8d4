/**
 * Calling the application's code on its behalf. Every callback the application gives (a
 * logger, an error report, a policy hook) may throw, reject or never settle: here it is
 * contained, and reported once through `process.emitWarning`, the way Node reports what nobody
 * observed. It never decides what a client receives, whether the process lives, or whether a
 * server's `stop()` completes.
 *
 * Handlers are called by the server itself (src/server.ts), whose outcome they decide; their
 * failures that nobody observes are reported here too ({@link UnobservedFailures}).
 *
 * @module
 */

import { ErrorCode, SimpleIpcError } from './errors.js';

// Callbacks that have failed once: each is reported once, however often it fails (a logger that
// throws on every line must not turn a hostile client's bad requests into a flood of warnings).
const reported = new WeakSet<object>();

/**
 * Calls `observer(...args)`, a callback of the application that only observes, and goes on at
 * once whatever it does. Its first throw or rejection is reported as a process warning: a
 * {@link SimpleIpcError} `ERR_IPC_CALLBACK_FAILED` with what it threw as `cause`, and `name`
 * (the option, such as `options.debug`) in the message. Later failures of the same function
 * are not reported.
 */
export function callObserver<A extends unknown[]>(
  name: string,
  observer: ((...args: A) => unknown) | undefined,
  ...args: A
): void {
  if (observer === undefined) return;
  try {
    const result = observer(...args);
    // A Promise (or any thenable) it returns is only watched for a rejection: never awaited.
    if (result !== null && (typeof result === 'object' || typeof result === 'function')) {
      const then: unknown = (result as { then?: unknown }).then;
      if (typeof then === 'function') {
        Reflect.apply(then, result, [
          undefined,
          (err: unknown) => observerFailed(name, observer, err),
        ]);
      }
    }
  } catch (err) {
    observerFailed(name, observer, err);
  }
}

function observerFailed(name: string, observer: object, thrown: unknown): void {
  if (reported.has(observer)) return;
  reported.add(observer);
  process.emitWarning(
    new SimpleIpcError(
      ErrorCode.CALLBACK_FAILED,
      `${name} failed (${describe(thrown)}); ignored, and further failures of it are not reported`,
      { cause: thrown },
    ),
  );
}

/** Distinct sites reported per {@link UnobservedFailures}; the last report says so. */
export const MAX_REPORTED_SITES = 10;

/**
 * Handler failures of one server that has no `onHandlerError`, reported as process warnings,
 * as Node reports an unhandled rejection: a {@link SimpleIpcError} `ERR_IPC_HANDLER_FAILED`
 * with the handler's error as `cause`. Once per site, never once per request: a site is the
 * error's name and the first frame of its stack (where it was made); errors without a stack
 * count by name and message. At most {@link MAX_REPORTED_SITES} sites are reported.
 */
export class UnobservedFailures {
  readonly #sites = new Set<string>();

  report(error: unknown): void {
    const sites = this.#sites;
    if (sites.size >= MAX_REPORTED_SITES) return;
    const site = siteOf(error);
    if (sites.has(site)) return;
    sites.add(site);
    const last =
      sites.size === MAX_REPORTED_SITES
        ? `; this is the ${MAX_REPORTED_SITES}th kind of failure reported, no more will be`
        : '';
    process.emitWarning(
      new SimpleIpcError(
        ErrorCode.HANDLER_FAILED,
        `a request handler failed (${describe(error)}): its client got no complete response. ` +
          `Failures are reported once per place they come from${last}; pass onHandlerError to see each one`,
        { cause: error },
      ),
    );
  }
}

function siteOf(error: unknown): string {
  try {
    const e = error as Partial<Error>;
    const stack = e.stack;
    if (typeof stack === 'string') {
      const at = stack.indexOf('\n    at ');
      if (at >= 0) {
        const end = stack.indexOf('\n', at + 1);
        return `${String(e.name)}${stack.slice(at, end < 0 ? undefined : end)}`;
      }
    }
    return `${String(e.name)}: ${String(e.message)}`;
  } catch {
    return 'a value that cannot be read';
  }
}

/** `Name: message` of what was thrown, short, never throwing (getters may). */
function describe(thrown: unknown): string {
  let text: string;
  try {
    text =
      thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : `${typeof thrown} thrown`;
  } catch {
    text = 'an unreadable value';
  }
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

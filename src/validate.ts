/**
 * The checks every public function makes on its arguments, at the door: a bad value fails at
 * once with `ERR_IPC_INVALID_ARGUMENT`, naming the option and showing the value, instead of
 * being coerced into something that misbehaves later (`threads: NaN` gave a server that accepts
 * and never answers; `timeout: NaN` a connect that retries forever). Internal.
 *
 * Each check returns the value, typed, or undefined when it was undefined (an option not
 * given), so that callers write `check(options.x, ...) ?? DEFAULT`.
 *
 * @module
 */

import { ErrorCode, SimpleIpcError } from './errors.js';

// Taken, not imported (trust.ts says why).
const { inspect } = process.getBuiltinModule('node:util');

/**
 * The longest delay Node's timers take, in ms (2^31 - 1, about 24.8 days). A longer one is
 * not honoured: Node warns and fires it after 1 ms.
 */
export const MAX_DELAY_MS = 2 ** 31 - 1;

/** The largest count taken where a count is meant (threads, processes, workers, ...). */
export const MAX_COUNT = 2 ** 32 - 1;

/** `value` as a short, readable string for an error message (never throws). */
export function show(value: unknown): string {
  try {
    const text = inspect(value, {
      depth: 1,
      breakLength: Number.POSITIVE_INFINITY,
      maxArrayLength: 4,
      maxStringLength: 60,
    });
    return text.length > 120 ? `${text.slice(0, 117)}...` : text;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** An `ERR_IPC_INVALID_ARGUMENT` error: `name` must be `expected`, and was `value`. */
export function invalidArgument(name: string, value: unknown, expected: string): SimpleIpcError {
  return new SimpleIpcError(
    ErrorCode.INVALID_ARGUMENT,
    `${name} must be ${expected}, not ${show(value)}`,
  );
}

/** An options argument: an object, or undefined (then `{}`). */
export function optionsObject<T extends object>(value: T | undefined, name = 'options'): T {
  if (value === undefined) return {} as T;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidArgument(name, value, 'an object');
  }
  return value;
}

/** A whole number from `min` to `max`, or undefined. */
export function integer(
  value: unknown,
  name: string,
  min: number,
  max: number = MAX_COUNT,
): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidArgument(name, value, `a whole number from ${min} to ${max}`);
  }
  return positiveZero(value);
}

/**
 * A size limit in bytes: a whole number of at least `min`, or `Infinity` for no limit; or
 * undefined.
 */
export function sizeLimit(value: unknown, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (
    typeof value !== 'number' ||
    !(Number.isSafeInteger(value) || value === Number.POSITIVE_INFINITY) ||
    value < min
  ) {
    throw invalidArgument(name, value, `a whole number of bytes of at least ${min}, or Infinity`);
  }
  return positiveZero(value);
}

/** A time in ms: a finite number from `min` to {@link MAX_DELAY_MS}, or undefined. */
export function duration(value: unknown, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > MAX_DELAY_MS) {
    const lowest = min === 0 ? 'from 0' : `above 0`;
    throw invalidArgument(name, value, `a number of ms ${lowest} to ${MAX_DELAY_MS}`);
  }
  return positiveZero(value);
}

// -0 passes every range check, but is no Int32 to V8: `fs.chmod(path, -0)` aborts Node 20 on a
// native assertion. Every number taken is handed on as +0 instead.
function positiveZero(value: number): number {
  return value === 0 ? 0 : value;
}

/** A time in ms above 0 (a timeout that has no "disabled" value), or undefined. */
export function positiveDuration(value: unknown, name: string): number | undefined {
  const ms = duration(value, name, 0);
  if (ms === 0) throw invalidArgument(name, value, `a number of ms above 0 to ${MAX_DELAY_MS}`);
  return ms;
}

/** `true` or `false`, or undefined. */
export function boolean(value: unknown, name: string): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value;
  throw invalidArgument(name, value, 'true or false');
}

/** A function, or undefined. */
export function callback<F extends (...args: never[]) => unknown>(
  value: F | undefined,
  name: string,
): F | undefined {
  if (value === undefined || typeof value === 'function') return value;
  throw invalidArgument(name, value, 'a function');
}

/** An `AbortSignal`, or undefined. */
export function abortSignal(value: unknown, name = 'options.signal'): AbortSignal | undefined {
  if (value === undefined || value instanceof AbortSignal) return value;
  // A signal made by another realm (a vm context) or library: what Node's own checks accept.
  if (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as AbortSignal).aborted === 'boolean' &&
    typeof (value as AbortSignal).addEventListener === 'function' &&
    typeof (value as AbortSignal).removeEventListener === 'function'
  ) {
    return value as AbortSignal;
  }
  throw invalidArgument(name, value, 'an AbortSignal');
}

/** A string (non-empty unless `allowEmpty`), or undefined. */
export function string(value: unknown, name: string, allowEmpty = false): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || (!allowEmpty && value === '')) {
    throw invalidArgument(name, value, allowEmpty ? 'a string' : 'a non-empty string');
  }
  return value;
}

/** A socket path: a non-empty string without NUL bytes (no file name can hold one). */
export function socketPath(value: unknown, name = 'path'): string {
  if (typeof value !== 'string' || value === '' || value.includes('\0')) {
    throw invalidArgument(name, value, 'a non-empty string without NUL bytes');
  }
  return value;
}

/** One of `values`, or undefined. */
export function oneOf<T extends string>(
  value: unknown,
  name: string,
  values: readonly T[],
): T | undefined {
  if (value === undefined || (values as readonly unknown[]).includes(value)) {
    return value as T | undefined;
  }
  throw invalidArgument(name, value, `one of ${values.map((v) => `'${v}'`).join(', ')}`);
}

/** An array of strings, or undefined. */
export function stringArray(value: unknown, name: string): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw invalidArgument(name, value, 'an array of strings');
  }
  return value;
}

/** An object whose values are strings (an environment), or undefined. */
export function stringRecord(
  value: unknown,
  name: string,
): Readonly<Record<string, string | undefined>> | undefined {
  if (value === undefined) return undefined;
  if (
    typeof value !== 'object' ||
    value === null ||
    Array.isArray(value) ||
    !Object.values(value).every((item) => item === undefined || typeof item === 'string')
  ) {
    throw invalidArgument(name, value, 'an object of strings');
  }
  return value as Record<string, string | undefined>;
}

/** A string or bytes, as a request, a reply chunk or a payload. */
export function bytesOrString(value: unknown, name: string): string | Uint8Array {
  if (typeof value === 'string' || value instanceof Uint8Array) return value;
  throw invalidArgument(name, value, 'a string or a Uint8Array');
}

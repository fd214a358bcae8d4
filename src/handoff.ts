/**
 * What crosses to another thread or process with a handler: the module to load, by URL, and
 * errors, as plain data. Shared by `workerHandler` and `startClusteredServer`. Internal.
 *
 * @module
 */

import { pathToFileURL } from 'node:url';
import { invalidArgument } from './validate.js';

/**
 * The `file:` URL of a handler module given as a path (also a Windows one, `C:\...`), a
 * `file:` URL string or a `URL`.
 * @throws {@link SimpleIpcError} `ERR_IPC_INVALID_ARGUMENT` for anything else; `what` names it.
 */
export function moduleHref(module: string | URL, what: string): string {
  const href = module instanceof URL ? module.href : module;
  if (typeof href === 'string' && href !== '') {
    if (!/^[a-z][a-z0-9+.-]*:/i.test(href) || /^[a-z]:[\\/]/i.test(href)) {
      return pathToFileURL(href).href;
    }
    if (href.startsWith('file:')) return href;
  }
  throw invalidArgument(what, module, 'a path or a file: URL');
}

/** An error as plain data, to cross a thread or process boundary. */
export interface ErrorData {
  name: string;
  message: string;
  stack: string | undefined;
  code: unknown;
}

/** Any thrown value as {@link ErrorData}. */
export function errorData(err: unknown): ErrorData {
  if (typeof err === 'object' && err !== null) {
    const e = err as Partial<Error> & { code?: unknown };
    return {
      name: String(e.name ?? 'Error'),
      message: typeof e.message === 'string' ? e.message : String(e.message ?? 'unknown error'),
      stack: typeof e.stack === 'string' ? e.stack : undefined,
      code: typeof e.code === 'string' || typeof e.code === 'number' ? e.code : undefined,
    };
  }
  return { name: 'Error', message: String(err), stack: undefined, code: undefined };
}

/** An `Error` again, with the name, message, stack and code it crossed with. */
export function errorFromData(data: ErrorData): Error {
  const err = new Error(data.message) as Error & { code?: unknown };
  err.name = data.name;
  if (data.stack !== undefined) err.stack = data.stack;
  if (data.code !== undefined) err.code = data.code;
  return err;
}

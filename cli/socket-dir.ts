/**
 * `simple-ipc socket-dir`: this user's own directory for sockets. A module of its own, so that
 * `call` and `status` (people.ts) load the client entry only, while this takes the main one.
 */

import { isSimpleIpcError, userSocketDirectory } from '../src/index.js';
import { EXIT_OK, fail, writeOut } from './io.js';
import { parseCommand, usageError } from './people.js';

/** `simple-ipc socket-dir`: prints this user's own directory for sockets. */
export async function socketDir(args: readonly string[]): Promise<number> {
  const parsed = parseCommand('socket-dir', args, {});
  if (parsed === undefined) return EXIT_OK;
  const [extra] = parsed.positionals;
  if (extra !== undefined) throw usageError('socket-dir', `unexpected argument '${extra}'`);
  let dir: string;
  try {
    dir = userSocketDirectory();
  } catch (err) {
    if (isSimpleIpcError(err)) throw fail(err.message);
    throw err;
  }
  await writeOut(process.stdout, `${dir}\n`);
  return EXIT_OK;
}

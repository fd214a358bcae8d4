/**
 * The commands for people: `status` and `call` here (`socket-dir` in socket-dir.ts, `serve` in
 * serve.ts), and the argument parsing they share. Built on the public API only.
 */

import type { ParseArgsConfig } from 'node:util';
import {
  ActiveState,
  CONNECT_TIMEOUT_MS,
  type Connection,
  connect,
  tryConnect,
  ErrorCode,
  getActiveState,
  isSimpleIpcError,
  type Message,
  sendCommand,
  USES_NAMED_PIPES,
} from '../src/client.js';
import { PEOPLE_HELP, type PeopleCommand } from './help.js';
import { CliExit, EXIT_ERROR, EXIT_OK, EXIT_USAGE, fail, Progress, writeOut } from './io.js';

// Taken, not imported: an import of node:fs or node:util loads some 30 modules that `call` and
// `status` never use (src/trust.ts says why).
const { fstatSync, lstatSync } = process.getBuiltinModule('node:fs');
const { parseArgs } = process.getBuiltinModule('node:util');

/** How long `call --wait` waits for a starting server when no `--timeout` is given, in ms. */
export const DEFAULT_WAIT_MS = 10_000;
/** Exit code when standard output was closed by its reader (as if killed by SIGPIPE). */
export const EXIT_PIPE = 141;
// Uploads smaller than this never show a progress line: it would only flash.
const PROGRESS_AFTER_BYTES = 1 << 20;

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | undefined>;

/**
 * Parses `args` of `command` with `util.parseArgs` (strict; positionals allowed; `-h/--help`
 * added). Prints the help and returns undefined when asked for it.
 *
 * @throws {CliExit} a usage error (exit 129) naming the problem.
 */
export function parseCommand(
  command: PeopleCommand,
  args: readonly string[],
  options: Options,
): { values: Values; positionals: string[] } | undefined {
  let parsed: { values: Values; positionals: string[] };
  try {
    // The options are only known as `Options` here, so parseArgs cannot infer the value types.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    parsed = parseArgs({
      args: [...args],
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    }) as { values: Values; positionals: string[] };
  } catch (err) {
    // Node's message goes on about '--' after its first sentence; the first says it all.
    throw usageError(command, (err as Error).message.split('. To specify')[0]!);
  }
  if (parsed.values.help === true) {
    process.stdout.write(PEOPLE_HELP[command]);
    return undefined;
  }
  return parsed;
}

/** A usage error of `command`: the message, the usage lines, exit code 129. */
export function usageError(command: PeopleCommand, message: string): CliExit {
  const help = PEOPLE_HELP[command];
  const usage = help.slice(0, help.indexOf('\n\n'));
  return new CliExit(
    EXIT_USAGE,
    `error: ${message}\n${usage}\nRun 'simple-ipc ${command} --help' for more.\n`,
  );
}

/**
 * Parses a whole number from `min` to `max` given to `option`, or throws a usage error.
 */
export function integerOption(
  command: PeopleCommand,
  option: string,
  value: string,
  min: number,
  max: number,
): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n < min || n > max) {
    throw usageError(
      command,
      `${option} expects a whole number from ${min} to ${max}, not '${value}'`,
    );
  }
  return n;
}

/** The longest time Node's timers take, in ms: the most any time option can be. */
export const MAX_MS = 2 ** 31 - 1;

/** `simple-ipc status [--json] PATH`. */
export async function status(args: readonly string[]): Promise<number> {
  const parsed = parseCommand('status', args, { json: { type: 'boolean' } });
  if (parsed === undefined) return EXIT_OK;
  const [path, ...extra] = parsed.positionals;
  if (path === undefined) throw usageError('status', 'PATH is required');
  if (extra.length > 0) throw usageError('status', `unexpected argument '${extra[0]}'`);
  const state = await getActiveState(path);
  const line = parsed.values.json === true ? JSON.stringify({ path, state }) : state;
  await writeOut(process.stdout, `${line}\n`);
  return state === ActiveState.LISTENING ? EXIT_OK : EXIT_ERROR;
}

/** How long `stop` waits for the server to be gone when no `--timeout` is given, in ms. */
export const DEFAULT_STOP_MS = 10_000;

/** `simple-ipc stop [--timeout=MS] PATH`: sends 'quit' and waits until nothing listens. */
export async function stop(args: readonly string[]): Promise<number> {
  const parsed = parseCommand('stop', args, { timeout: { type: 'string' } });
  if (parsed === undefined) return EXIT_OK;
  const [path, ...extra] = parsed.positionals;
  if (path === undefined) throw usageError('stop', 'PATH is required');
  if (extra.length > 0) throw usageError('stop', `unexpected argument '${extra[0]}'`);
  const timeout =
    typeof parsed.values.timeout === 'string'
      ? integerOption('stop', '--timeout', parsed.values.timeout, 1, MAX_MS)
      : DEFAULT_STOP_MS;
  const deadline = performance.now() + timeout;
  if (notASocket(path)) throw fail(notASocketMessage(path));
  try {
    await sendCommand(path, 'quit', { timeout });
  } catch (err) {
    if (
      isSimpleIpcError(err, 'ERR_IPC_PATH_NOT_FOUND') ||
      isSimpleIpcError(err, 'ERR_IPC_NOT_LISTENING')
    ) {
      throw fail(`no server listening at '${path}': nothing to stop`);
    }
    throw fail(connectFailure(path, err, timeout));
  }
  // As Git's stop-daemon: done once nothing listens there any more.
  while ((await getActiveState(path)) === ActiveState.LISTENING) {
    if (performance.now() >= deadline) {
      throw fail(
        `the server at '${path}' was asked to stop but still listens after ${timeout} ms (it may still be finishing its requests; a server that does not answer 'quit' is stopped with SIGTERM)`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return EXIT_OK;
}

/** `simple-ipc call [--wait] [--timeout=MS] PATH [MESSAGE | -]`. */
export async function call(args: readonly string[]): Promise<number> {
  const parsed = parseCommand('call', args, {
    wait: { type: 'boolean' },
    timeout: { type: 'string' },
  });
  if (parsed === undefined) return EXIT_OK;
  const { values, positionals } = parsed;
  const [path, message, ...extra] = positionals;
  if (path === undefined) throw usageError('call', 'PATH is required');
  if (extra.length > 0) {
    throw usageError('call', `unexpected argument '${extra[0]}' (quote a MESSAGE with spaces)`);
  }
  const timeout =
    typeof values.timeout === 'string'
      ? integerOption('call', '--timeout', values.timeout, 1, MAX_MS)
      : undefined;
  const wait = values.wait === true;
  const signal = timeout === undefined ? undefined : AbortSignal.timeout(timeout);

  // Waiting could never help a regular file or a directory: say so at once.
  if (notASocket(path)) throw fail(notASocketMessage(path));
  let connection: Connection;
  try {
    connection = await connectForCall(path, wait, timeout, signal);
  } catch (err) {
    throw fail(connectFailure(path, err, timeout));
  }

  const fromStdin = message === undefined || message === '-';
  if (fromStdin && process.stdin.isTTY === true) {
    process.stderr.write(
      'simple-ipc: reading the request from standard input (end it with Ctrl-D)\n',
    );
  }
  // A progress line only for a person watching a terminal while the output goes elsewhere.
  const progress = new Progress(
    'sending',
    process.stderr.isTTY === true && process.stdout.isTTY !== true,
  );
  const request: Message = fromStdin ? stdinRequest(progress) : message;
  let pipeClosed = false;
  const onStdoutError = (err: Error): void => {
    pipeClosed = (err as NodeJS.ErrnoException).code === 'EPIPE';
    connection.destroy();
  };
  process.stdout.on('error', onStdoutError);
  // On a terminal, a response that does not end a line gets a newline, so that the prompt
  // starts on a line of its own; pipes and files get the bytes as they are.
  let last = -1;
  try {
    for await (const piece of connection.stream(request, { signal })) {
      if (piece.length > 0) last = piece[piece.length - 1]!;
      await writeOut(process.stdout, piece);
    }
  } catch (err) {
    if (pipeClosed) return EXIT_PIPE;
    throw fail(exchangeFailure(path, err, timeout));
  } finally {
    if (process.stdout.isTTY === true && last !== -1 && last !== 0x0a && !pipeClosed) {
      process.stdout.write('\n');
    }
    progress.done();
    process.stdout.off('error', onStdoutError);
    // The response may end before the request was read to its end: stop reading.
    if (fromStdin) process.stdin.destroy();
  }
  return EXIT_OK;
}

/**
 * Connects for `call`. With `--wait`, a first attempt that finds no server is followed by a
 * line on a terminal's stderr saying what is waited for, and how long, before waiting.
 */
async function connectForCall(
  path: string,
  wait: boolean,
  timeout: number | undefined,
  signal: AbortSignal | undefined,
): Promise<Connection> {
  if (!wait) {
    return connect(path, { waitIfBusy: true, timeout: CONNECT_TIMEOUT_MS, signal });
  }
  const ms = timeout ?? DEFAULT_WAIT_MS;
  if (process.stderr.isTTY === true) {
    const first = await tryConnect(path, { signal });
    if (first.state === ActiveState.LISTENING) return first.connection;
    process.stderr.write(
      `simple-ipc: waiting up to ${ms} ms for a server at '${path}' (${first.state}; --timeout=MS to change)\n`,
    );
  }
  return connect(path, { waitIfBusy: true, waitIfNotFound: true, timeout: ms, signal });
}

// Standard input as the request, counted for the progress line.
async function* stdinRequest(progress: Progress): AsyncGenerator<Buffer> {
  let total: number | undefined;
  try {
    const stats = fstatSync(0);
    if (stats.isFile()) total = stats.size;
  } catch {
    total = undefined;
  }
  let sent = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    yield chunk;
    sent += chunk.length;
    if (sent >= PROGRESS_AFTER_BYTES) progress.update(sent, total);
  }
  progress.done();
}

function connectFailure(path: string, err: unknown, timeout: number | undefined): string {
  if (!isSimpleIpcError(err)) return String(err);
  switch (err.code) {
    case ErrorCode.ABORTED:
      return `no server answered at '${path}' within ${timeout} ms`;
    case ErrorCode.PATH_NOT_FOUND:
      return `no server at '${path}': no such socket (use --wait for a server that is starting)`;
    case ErrorCode.INVALID_PATH:
      return notASocketMessage(path);
    case ErrorCode.NOT_LISTENING:
      if (notASocket(path)) return notASocketMessage(path);
      return `no server listening at '${path}'`;
    default:
      return err.message;
  }
}

function exchangeFailure(path: string, err: unknown, timeout: number | undefined): string {
  if (!isSimpleIpcError(err)) return err instanceof Error ? err.message : String(err);
  switch (err.code) {
    case ErrorCode.ABORTED:
      return `no complete response from '${path}' within ${timeout} ms`;
    case ErrorCode.TRUNCATED:
      return `the response from '${path}' ended early: the server's handler failed, or the server stopped`;
    case ErrorCode.PKT_LINE_LENGTH:
    case ErrorCode.PKT_LINE_TOO_LONG:
    case ErrorCode.PKT_LINE_UNEXPECTED:
      return `the server at '${path}' sent a malformed response: ${err.message}`;
    default:
      return err.message;
  }
}

/** Says what is at `path` instead of a socket, and what to do. */
function notASocketMessage(path: string): string {
  let what = 'not a socket';
  try {
    const stats = lstatSync(path);
    if (stats.isDirectory()) what = 'a directory, not a socket';
    else if (stats.isFile()) what = 'a regular file, not a socket';
    else if (stats.isSymbolicLink()) what = 'a symbolic link, not a socket';
  } catch {
    // Gone meanwhile: the plain words do.
  }
  return `'${path}' is ${what}: no server can listen there (check the path; 'simple-ipc status' tells what is at one)`;
}

function notASocket(path: string): boolean {
  if (USES_NAMED_PIPES) return false; // the path only names the pipe
  try {
    return !lstatSync(path).isSocket();
  } catch {
    return false;
  }
}

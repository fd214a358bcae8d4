/**
 * `simple-ipc serve PATH --exec COMMAND`: a daemon in one line. Each request runs COMMAND through
 * the shell with the request on its standard input; its standard output streams back as the
 * response. Built on the public API only.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import {
  ActiveState,
  getActiveState,
  isSimpleIpcError,
  QUIT,
  type Reply,
  type Server,
  type StreamingRequestHandler,
  startDaemon,
  startServer,
  stopOnSignals,
  stopWhenIdle,
} from '../src/index.js';
import { EXIT_OK, fail } from './io.js';
import { integerOption, MAX_MS, parseCommand, usageError } from './people.js';

const WINDOWS = process.platform === 'win32';
/** How long `serve --detach` waits for the server to listen, in ms. */
const DETACH_WAIT_MS = 15_000;

/** `simple-ipc serve PATH --exec=COMMAND [...]`. */
export async function serve(args: readonly string[]): Promise<number> {
  const parsed = parseCommand('serve', args, {
    exec: { type: 'string' },
    threads: { type: 'string' },
    'idle-timeout': { type: 'string' },
    mode: { type: 'string' },
    detach: { type: 'boolean' },
    log: { type: 'string' },
    quiet: { type: 'boolean' },
  });
  if (parsed === undefined) return EXIT_OK;
  const { values, positionals } = parsed;
  const [path, ...extra] = positionals;
  if (path === undefined) throw usageError('serve', 'PATH is required');
  if (extra.length > 0) {
    throw usageError('serve', `unexpected argument '${extra[0]}' (quote the --exec COMMAND)`);
  }
  const command = values.exec;
  if (typeof command !== 'string' || command.trim() === '') {
    throw usageError('serve', '--exec=COMMAND is required');
  }
  const threads =
    typeof values.threads === 'string'
      ? integerOption('serve', '--threads', values.threads, 1, 2 ** 32 - 1)
      : undefined;
  const idle = typeof values['idle-timeout'] === 'string' ? seconds(values['idle-timeout']) : 0;
  const mode = typeof values.mode === 'string' ? octalMode(values.mode) : undefined;
  const quiet = values.quiet === true;
  if (values.log !== undefined && values.detach !== true) {
    throw usageError('serve', '--log=FILE goes with --detach (otherwise redirect the output)');
  }

  const say = quiet ? noop : (line: string) => process.stderr.write(`simple-ipc serve: ${line}\n`);
  if (values.detach === true) {
    const forward = [`--exec=${command}`];
    if (threads !== undefined) forward.push(`--threads=${threads}`);
    if (idle > 0) forward.push(`--idle-timeout=${values['idle-timeout']}`);
    if (mode !== undefined) forward.push(`--mode=${mode.toString(8).padStart(3, '0')}`);
    if (quiet) forward.push('--quiet');
    return detach(path, forward, typeof values.log === 'string' ? values.log : undefined, say);
  }

  // A signal that comes while the server starts is kept, and acted on once it has started.
  const early: NodeJS.Signals[] = [];
  const onEarlySignal = (signal: NodeJS.Signals): void => void early.push(signal);
  process.on('SIGINT', onEarlySignal);
  process.on('SIGTERM', onEarlySignal);
  let server: Server;
  try {
    server = await startServer(
      path,
      execHandler(command, () => say("'quit' received: stopping")),
      {
        threads,
        mode,
        onHandlerError: (err) =>
          process.stderr.write(
            `simple-ipc serve: ${err instanceof Error ? err.message : String(err)}\n`,
          ),
      },
    );
  } catch (err) {
    if (isSimpleIpcError(err, 'ERR_IPC_IN_USE')) {
      throw fail(`socket/pipe already in use: '${path}'`);
    }
    throw fail(`cannot serve at '${path}': ${(err as Error).message}`);
  } finally {
    process.off('SIGINT', onEarlySignal);
    process.off('SIGTERM', onEarlySignal);
  }
  stopOnSignals(server, {
    onSignal: (signal, forced) =>
      say(forced ? `${signal}: cutting running requests off` : `${signal}: stopping`),
  });
  for (const signal of early) process.emit(signal, signal);
  if (idle > 0) {
    stopWhenIdle(server, idle * 1000, {
      onIdle: () => say(`no connection for ${values['idle-timeout']} s: stopping`),
    });
  }
  say(
    `listening at '${path}' (pid ${process.pid}); stop with Ctrl-C, SIGTERM or 'simple-ipc stop ${shellQuote(path)}'`,
  );
  await server.closed;
  const stats = server.stats();
  const reason = server.stopReason;
  // The 'quit' that stopped it is no request of COMMAND's.
  const quit = reason?.kind === 'quit' ? 1 : 0;
  say(
    `stopped: ${plural(stats.requests - quit, 'request')}, ${stats.responses - quit} answered, ${stats.handlerErrors} failed`,
  );
  if (reason?.kind === 'stolen') {
    const how = {
      removed: 'removed',
      replaced: 'replaced',
      'not-a-socket': 'replaced by a non-socket',
    };
    throw fail(`the socket '${path}' was ${how[reason.why]} by someone else; stopped`);
  }
  if (reason?.kind === 'error') throw fail(`server failed: ${String(reason.error)}`);
  return EXIT_OK;
}

// `serve --detach`: run this same command again, detached, and wait until it listens.
async function detach(
  path: string,
  forward: string[],
  logFile: string | undefined,
  say: (line: string) => void,
): Promise<number> {
  if ((await getActiveState(path)) === ActiveState.LISTENING) {
    throw fail(`socket/pipe already in use: '${path}'`);
  }
  const program = fileURLToPath(new URL('../../bin/simple-ipc.js', import.meta.url));
  try {
    const { pid } = await startDaemon(path, {
      command: process.execPath,
      args: [program, 'serve', path, ...forward],
      logFile,
      timeout: DETACH_WAIT_MS,
    });
    say(`started in the background (pid ${pid}), listening at '${path}'`);
  } catch (err) {
    throw fail((err as Error).message);
  }
  return EXIT_OK;
}

/**
 * The handler of `serve --exec`: runs `command` for each request, the request streamed to its
 * standard input, its standard output streamed back as the response. A non-zero exit fails the
 * handler, so the server closes the connection without the flush. The request `quit` alone is
 * not passed on: `onQuit` is called and the server stops.
 */
export function execHandler(
  command: string,
  onQuit: () => void = noop,
): { readonly stream: StreamingRequestHandler } {
  return {
    stream: async (request, reply, context) => {
      // The request 'quit' stops the server, as Git's test daemon answers it (and as `simple-ipc
      // stop` sends it); any other request, one that only starts with 'quit' too, goes to COMMAND.
      const iterator = request[Symbol.asyncIterator]();
      const head: Buffer[] = [];
      let size = 0;
      let ended = false;
      while (size <= QUIT_REQUEST.length) {
        const next = await iterator.next();
        if (next.done === true) {
          ended = true;
          break;
        }
        head.push(next.value);
        size += next.value.length;
      }
      if (ended && size === QUIT_REQUEST.length && Buffer.concat(head).equals(QUIT_REQUEST)) {
        onQuit();
        return QUIT;
      }
      return runCommand(command, replay(head, iterator), reply, context.signal);
    },
  };
}

/** The request that stops a `serve` daemon. */
export const QUIT_REQUEST = Buffer.from('quit');

// The pieces already read, then the rest of the request.
async function* replay(head: Buffer[], rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  yield* head;
  for (let next = await rest.next(); next.done !== true; next = await rest.next()) {
    yield next.value;
  }
}

async function runCommand(
  command: string,
  request: AsyncIterable<Buffer>,
  reply: Reply,
  signal: AbortSignal,
): Promise<void> {
  const child = spawn(command, {
    shell: true,
    stdio: ['pipe', 'pipe', 'inherit'],
    // A process group of its own: a Ctrl-C at the terminal stops the server gracefully
    // instead of killing the commands it is running, and the group can be killed as one.
    detached: !WINDOWS,
    windowsHide: true,
  });
  const exited = new Promise<string | undefined>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, sig) =>
      resolve(
        code === 0 ? undefined : sig !== null ? `was killed by ${sig}` : `exited with code ${code}`,
      ),
    );
  });
  const kill = (): void => killGroup(child);
  signal.addEventListener('abort', kill, { once: true });
  try {
    const output = (async () => {
      for await (const chunk of child.stdout as AsyncIterable<Buffer>) await reply(chunk);
    })();
    const [failure] = await Promise.all([exited, output, feed(request, child.stdin)]);
    if (failure !== undefined) throw new Error(`'${command}' ${failure}`);
  } catch (err) {
    kill();
    throw err;
  } finally {
    signal.removeEventListener('abort', kill);
  }
}

// Writes the request to the command's standard input with backpressure. A command that does not
// read its input (EPIPE) is fine: the rest of the request is read and dropped, so that the
// client can finish sending and get its response.
async function feed(request: AsyncIterable<Buffer>, stdin: Writable): Promise<void> {
  let open = true;
  const closed = (): void => {
    open = false;
  };
  stdin.on('error', closed);
  stdin.on('close', closed);
  for await (const piece of request) {
    if (!open || piece.length === 0) continue;
    if (!stdin.write(piece)) await drainOrClose(stdin);
  }
  if (open) stdin.end();
}

function drainOrClose(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

function killGroup(child: ChildProcess): void {
  const pid = child.pid;
  // Once the shell has exited its group may be gone, and the number reused.
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    // The command may have started others (a pipeline): stop them all.
    if (WINDOWS) child.kill();
    else process.kill(-pid, 'SIGTERM');
  } catch {
    // Already gone.
  }
}

function seconds(value: string): number {
  const n = Number(value);
  if (!/^[0-9]*\.?[0-9]+$/.test(value) || !(n > 0) || n * 1000 > MAX_MS) {
    throw usageError(
      'serve',
      `--idle-timeout expects a number of seconds above 0, at most ${Math.floor(MAX_MS / 1000)}, not '${value}'`,
    );
  }
  return n;
}

function octalMode(value: string): number {
  const match = /^(?:0o?)?([0-7]{3})$/i.exec(value);
  if (match === null) {
    throw usageError(
      'serve',
      `--mode expects octal permissions such as 600 or 0660, not '${value}'`,
    );
  }
  return Number.parseInt(match[1]!, 8);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function noop(): void {}

/** `path` as one shell word, quoted only when it needs to be. */
export function shellQuote(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}

/**
 * The drop-in for Git's `test-tool simple-ipc` (`t/helper/test-simple-ipc.c`): the same
 * subcommands, options, defaults, messages and exit codes, built on the library's public
 * exports only. The client subcommands load the client's modules only; the daemon ones load
 * the rest when they run.
 */

import { fileURLToPath } from 'node:url';
import { ActiveState, getActiveState, isSimpleIpcError, sendCommand } from '../src/client.js';
import type { ServerOptions } from '../src/index.js';
import { CliExit, EXIT_FATAL, EXIT_OK, EXIT_USAGE, fail, Progress, writeOut } from './io.js';
import { sendbytesOnce } from './sendbytes.js';

/** The subcommands of Git's test tool. */
export const TEST_TOOL_COMMANDS = [
  'is-active',
  'run-daemon',
  'start-daemon',
  'stop-daemon',
  'send',
  'sendbytes',
  'multiple',
] as const;

/** Options of the test tool, after Git's defaults and clamping. */
export interface TestToolOptions {
  name: string;
  threads: number;
  maxWait: number;
  bytecount: number;
  batchsize: number;
  byte: number;
  token: string | undefined;
  /** Processes of `run-daemon` (an extension: Git's daemon is one process with threads). */
  processes: number;
}

const USAGE = `usage: simple-ipc is-active [<name>] [<options>]
   or: simple-ipc run-daemon [<name>] [<threads>]
   or: simple-ipc start-daemon [<name>] [<threads>] [<max-wait>]
   or: simple-ipc stop-daemon [<name>] [<max-wait>]
   or: simple-ipc send [<name>] [<token>]
   or: simple-ipc sendbytes [<name>] [<bytecount>] [<byte>]
   or: simple-ipc multiple [<name>] [<threads>] [<bytecount>] [<batchsize>]

    --name <name>         name or pathname of unix domain socket
    --threads <n>         number of threads in server thread pool
    --max-wait <max-wait>
                          seconds to wait for daemon to start or stop
    --bytecount <bytecount>
                          number of bytes
    --batchsize <batchsize>
                          number of requests per thread
    --byte <byte>         ballast character
    --token <token>       command token to send to the server
    --processes <n>       processes sharing the server socket (not in Git's tool; default 1)
`;

const INTEGER_OPTIONS = new Set(['threads', 'max-wait', 'bytecount', 'batchsize', 'processes']);
const STRING_OPTIONS = new Set(['name', 'byte', 'token']);
const INT_MAX = 2 ** 31 - 1;

/**
 * Parses options as Git's parse-options does for this tool: `--opt=value` or `--opt value`,
 * integers checked, positional words ignored, unknown options a usage error (exit 129).
 */
export function parseTestToolOptions(args: readonly string[]): TestToolOptions {
  const raw = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') break;
    // Git's parse-options: -h / --help print the usage on stdout and exit 0.
    if (arg === '-h' || arg === '--help') throw new CliExit(EXIT_OK, USAGE, true);
    if (!arg.startsWith('--')) {
      if (arg.startsWith('-') && arg.length > 1) {
        throw new CliExit(EXIT_USAGE, `error: unknown switch \`${arg[1]}'\n${USAGE}`);
      }
      continue; // Git's usage shows [<name>] etc., but only the options count
    }
    const eq = arg.indexOf('=');
    const key = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    if (!INTEGER_OPTIONS.has(key) && !STRING_OPTIONS.has(key)) {
      throw new CliExit(EXIT_USAGE, `error: unknown option \`${key}'\n${USAGE}`);
    }
    let value: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (value === undefined) {
      value = args[++i];
      if (value === undefined) {
        throw new CliExit(EXIT_USAGE, `error: option \`${key}' requires a value\n${USAGE}`);
      }
    }
    // Git's git_parse_int() also refuses what does not fit in an int.
    if (
      INTEGER_OPTIONS.has(key) &&
      (!/^[+-]?[0-9]+$/.test(value) || Math.abs(Number(value)) > INT_MAX)
    ) {
      throw new CliExit(EXIT_USAGE, `error: option \`${key}' expects a numerical value\n${USAGE}`);
    }
    raw.set(key, value);
  }
  const int = (key: string, fallback: number): number => {
    const value = raw.get(key);
    return value === undefined ? fallback : Number.parseInt(value, 10);
  };
  const byte = raw.get('byte');
  return {
    name: raw.get('name') ?? 'ipc-test',
    threads: Math.max(1, int('threads', 5)),
    maxWait: Math.max(0, int('max-wait', 60)),
    bytecount: Math.max(1, int('bytecount', 1024)),
    batchsize: Math.max(1, int('batchsize', 10)),
    byte: byte !== undefined && byte.length > 0 ? Buffer.from(byte, 'utf8')[0]! : 0x78,
    token: raw.get('token'),
    processes: Math.max(1, int('processes', 1)),
  };
}

/** Runs one test-tool subcommand; resolves with the exit code or throws {@link CliExit}. */
export async function runTestTool(command: string, args: readonly string[]): Promise<number> {
  // As Git's cmd__simple_ipc(): a lone -h or SUPPORTS_SIMPLE_IPC is answered first; then the
  // options are parsed, whatever the subcommand (so `frobnicate --help` prints the usage and
  // `frobnicate --bogus` is a usage error), and only then is an unknown subcommand fatal.
  if (args.length === 0) {
    if (command === '-h') throw new CliExit(EXIT_OK, USAGE, true);
    if (command === 'SUPPORTS_SIMPLE_IPC') return EXIT_OK;
  }
  const options = parseTestToolOptions(args);
  if (!(TEST_TOOL_COMMANDS as readonly string[]).includes(command)) {
    throw new CliExit(EXIT_FATAL, `fatal: Unhandled subcommand: '${command}'\n`);
  }
  switch (command) {
    case 'is-active':
      await probe(options.name);
      return EXIT_OK;
    case 'run-daemon':
      return runDaemon(options);
    case 'start-daemon':
      return startDaemonCommand(options);
    case 'stop-daemon':
      return stopDaemon(options);
    case 'send':
      return send(options);
    case 'sendbytes':
      return sendbytes(options);
    default:
      await probe(options.name);
      return (await import('./multiple.js')).multiple(options);
  }
}

// Git's client__probe_server(): every client subcommand looks before it talks.
async function probe(path: string): Promise<void> {
  switch (await getActiveState(path)) {
    case ActiveState.LISTENING:
      return;
    case ActiveState.NOT_LISTENING:
      throw fail(`no server listening at '${path}'`);
    case ActiveState.PATH_NOT_FOUND:
      throw fail(`path not found '${path}'`);
    case ActiveState.INVALID_PATH:
      throw fail(`invalid pipe/socket name '${path}'`);
    default:
      throw fail(`other error for '${path}'`);
  }
}

const TEST_DAEMON_MODULE = new URL('./test-daemon.js', import.meta.url);

const DEBUG = process.env.SIMPLE_IPC_DEBUG !== undefined && process.env.SIMPLE_IPC_DEBUG !== '0';

function debugLine(message: string): void {
  process.stderr.write(`simple-ipc: ${message}\n`);
}

async function runDaemon(options: TestToolOptions): Promise<number> {
  const { describeTheft, startClusteredServer, startServer } = await import('../src/index.js');
  const { testDaemon } = await import('./test-daemon.js');
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    const serverOptions: ServerOptions = {
      threads: options.threads,
      // The test daemon streams sendbytes; other requests are small.
      maxRequestSize: Number.MAX_SAFE_INTEGER,
      // Quiet by default, whatever clients do (without an onHandlerError a failing handler
      // would be a process warning on stderr); SIMPLE_IPC_DEBUG=1 tells about each one.
      onHandlerError: DEBUG ? (err) => debugLine(`handler failed: ${String(err)}`) : ignore,
      debug: DEBUG ? debugLine : undefined,
    };
    server =
      options.processes > 1
        ? await startClusteredServer(options.name, TEST_DAEMON_MODULE, {
            ...serverOptions,
            processes: options.processes,
          })
        : await startServer(options.name, testDaemon, serverOptions);
  } catch (err) {
    if (isSimpleIpcError(err, 'ERR_IPC_IN_USE')) {
      throw fail(`socket/pipe already in use: '${options.name}'`);
    }
    throw fail(`could not start server on: '${options.name}': ${(err as Error).message}`);
  }
  // Unlike Git's, this daemon stops gracefully on SIGINT/SIGTERM and removes its socket.
  const stop = (): void => void server.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await server.closed;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  // Git's daemon ends silently when its socket is taken; say why when asked to.
  const reason = server.stopReason;
  if (DEBUG && reason?.kind === 'stolen') debugLine(describeTheft(options.name, reason.why));
  return EXIT_OK;
}

async function startDaemonCommand(options: TestToolOptions): Promise<number> {
  const { startDaemon } = await import('../src/index.js');
  const program = fileURLToPath(new URL('../../bin/simple-ipc.js', import.meta.url));
  try {
    await startDaemon(options.name, {
      command: process.execPath,
      args: [
        program,
        'run-daemon',
        `--name=${options.name}`,
        `--threads=${options.threads}`,
        `--processes=${options.processes}`,
      ],
      timeout: options.maxWait * 1000,
    });
  } catch (err) {
    if (isSimpleIpcError(err, 'ERR_IPC_DAEMON_NOT_ONLINE')) throw fail('daemon not online yet');
    if (isSimpleIpcError(err, 'ERR_IPC_DAEMON_TERMINATED')) throw fail('daemon terminated');
    throw fail('daemon failed to start');
  }
  return EXIT_OK;
}

async function stopDaemon(options: TestToolOptions): Promise<number> {
  const path = options.name;
  await probe(path);
  try {
    await sendCommand(path, 'quit', { waitIfBusy: true });
  } catch {
    throw fail(`failed to send 'quit' to '${path}'`);
  }
  const limit = performance.now() + options.maxWait * 1000;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    if ((await getActiveState(path)) !== ActiveState.LISTENING) return EXIT_OK;
    if (performance.now() > limit) throw fail('daemon has not shutdown yet');
  }
}

async function send(options: TestToolOptions): Promise<number> {
  const path = options.name;
  await probe(path);
  const command =
    options.token !== undefined && options.token !== '' ? options.token : '(no-command)';
  let answer: Buffer;
  try {
    answer = await sendCommand(path, command, { waitIfBusy: true });
  } catch {
    throw fail(`failed to send '${command}' to '${path}'`);
  }
  if (answer.length > 0) await writeOut(process.stdout, Buffer.concat([answer, NEWLINE]));
  return EXIT_OK;
}

const NEWLINE = Buffer.from('\n');

async function sendbytes(options: TestToolOptions): Promise<number> {
  const path = options.name;
  await probe(path);
  const line = await sendbytesOnce(
    path,
    options.byte,
    options.bytecount,
    { waitIfBusy: true },
    new Progress('sendbytes'),
  );
  await writeOut(process.stdout, Buffer.from(line, 'latin1'));
  return EXIT_OK;
}

function ignore(): void {}

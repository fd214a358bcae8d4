/**
 * The `simple-ipc` command: Git's `test-tool simple-ipc` subcommands, exactly, plus commands
 * for people (`status`, `call`, `serve`). Uses only the public API.
 */

import { helpFor, PROGRAM_HELP } from './help.js';
import { CliExit, EXIT_OK, EXIT_USAGE } from './io.js';

// Taken, not imported: an import of node:fs loads some 30 modules (src/trust.ts says why).
const { readFileSync } = process.getBuiltinModule('node:fs');

type Command = (args: readonly string[]) => Promise<number>;

// Each command's module is loaded only when it runs: a client command starts without loading
// the server, the daemon starter or the worker pool (docs/benchmarks.md has the start-up times).
const PEOPLE_COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  status: async () => (await import('./people.js')).status,
  call: async () => (await import('./people.js')).call,
  serve: async () => (await import('./serve.js')).serve,
  'socket-dir': async () => (await import('./people.js')).socketDir,
};

/** The version of this package. */
export function version(): string {
  const url = new URL('../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
}

/** Runs the command line `argv` (without node and the script); resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) {
    // As Git's test tool: no command is a usage error.
    throw new CliExit(EXIT_USAGE, PROGRAM_HELP);
  }
  if (command === '--help') {
    process.stdout.write(PROGRAM_HELP);
    return EXIT_OK;
  }
  if (command === 'help') return help(rest);
  if (command === '--version' || command === '-V') {
    process.stdout.write(`${version()}\n`);
    return EXIT_OK;
  }
  const people = Object.hasOwn(PEOPLE_COMMANDS, command) ? PEOPLE_COMMANDS[command] : undefined;
  if (people !== undefined) return (await people())(rest);
  return (await import('./test-tool.js')).runTestTool(command, rest);
}

function help(args: readonly string[]): number {
  const [topic, ...extra] = args;
  if (topic === undefined) {
    process.stdout.write(PROGRAM_HELP);
    return EXIT_OK;
  }
  // `help -h` and `help --help` are the help command's help, as `COMMAND --help` is for others.
  const text =
    extra.length !== 0 ? undefined : helpFor(topic === '-h' || topic === '--help' ? 'help' : topic);
  if (text === undefined) {
    throw new CliExit(
      EXIT_USAGE,
      `error: no help for '${args.join(' ')}'; run 'simple-ipc --help' for the commands\n`,
    );
  }
  process.stdout.write(text);
  return EXIT_OK;
}

/** Runs `argv` as the program, printing errors and setting `process.exitCode`. */
export async function runCli(argv: readonly string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (err) {
    if (err instanceof CliExit) {
      if (err.message !== '') (err.toStdout ? process.stdout : process.stderr).write(err.message);
      process.exitCode = err.exitCode;
    } else {
      process.stderr.write(`fatal: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 128;
    }
  }
}

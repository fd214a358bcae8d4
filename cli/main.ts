/**
 * The `simple-ipc` command: Git's `test-tool simple-ipc` subcommands, exactly, plus commands
 * for people (`status`, `call`, `serve`). Uses only the public API.
 */

import { helpFor, PROGRAM_HELP, TEST_TOOL_HELP } from './help.js';
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
  'socket-dir': async () => (await import('./socket-dir.js')).socketDir,
  stop: async () => (await import('./people.js')).stop,
};

/** Every command name, for suggestions. */
const COMMANDS: readonly string[] = [
  ...Object.keys(PEOPLE_COMMANDS),
  ...Object.keys(TEST_TOOL_HELP),
  'help',
];

/**
 * The command `typed` was probably meant to be: the one nearest by edit distance (adjacent
 * swaps count as one edit, as in Git's help.c), if it is close: at most 1 edit for a word of up
 * to 4 letters, 2 for longer ones. Undefined when none is that close, or two are.
 */
export function suggestCommand(typed: string): string | undefined {
  const limit = typed.length <= 4 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = Infinity;
  let tie = false;
  for (const command of COMMANDS) {
    const d = editDistance(typed.toLowerCase(), command.toLowerCase());
    if (d < bestDistance) {
      best = command;
      bestDistance = d;
      tie = false;
    } else if (d === bestDistance) tie = true;
  }
  return bestDistance <= limit && !tie ? best : undefined;
}

// Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps.
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const above = rows[i - 1]!;
      let d = Math.min(
        above[j]! + 1,
        row[j - 1]! + 1,
        above[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      }
      row.push(d);
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}

/** The usage error for a command that is not one of ours (exit 129, as for any usage error). */
function unknownCommand(command: string): CliExit {
  const guess = suggestCommand(command);
  return new CliExit(
    EXIT_USAGE,
    `error: '${command}' is not a simple-ipc command${guess === undefined ? '' : `; did you mean '${guess}'?`}\n` +
      `Run 'simple-ipc --help' for the commands.\n`,
  );
}

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
  // Anything else that is no command of ours is a typo, whatever follows it. Words starting
  // with '-' are left to the test tool, which answers them as Git's does.
  if (!command.startsWith('-') && !Object.hasOwn(TEST_TOOL_HELP, command)) {
    throw unknownCommand(command);
  }
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
    const guess = extra.length === 0 ? suggestCommand(topic) : undefined;
    throw new CliExit(
      EXIT_USAGE,
      `error: no help for '${args.join(' ')}'${guess === undefined ? '' : `; did you mean '${guess}'?`}; run 'simple-ipc --help' for the commands\n`,
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

/**
 * The `simple-ipc` command: Git's `test-tool simple-ipc` subcommands, exactly, plus commands
 * for people. Uses only the public API.
 */

import { readFileSync } from 'node:fs';
import { CliExit, EXIT_ERROR, EXIT_OK } from './io.js';
import { runTestTool } from './test-tool.js';

const HELP = `simple-ipc: Git's Simple-IPC for Node.js

Usage: simple-ipc <command> [options]

Git test-tool commands (drop-in for 'test-tool simple-ipc'):
  is-active     --name=PATH                      exit 0 if a server listens
  run-daemon    --name=PATH [--threads=N]        serve the test daemon in the foreground
  start-daemon  --name=PATH [--threads=N] [--max-wait=S]
  stop-daemon   --name=PATH [--max-wait=S]
  send          --name=PATH [--token=WORD]       send WORD, print the answer
  sendbytes     --name=PATH [--bytecount=N] [--byte=C]
  multiple      --name=PATH [--threads=N] [--bytecount=N] [--batchsize=N]
  SUPPORTS_SIMPLE_IPC                            exit 0

Options:
  -h, --help     show this help
  --version      show the version
`;

function version(): string {
  const url = new URL('../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
}

/** Runs the command line `argv` (without node and the script); resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === 'help') {
    process.stdout.write(HELP);
    return command === undefined ? EXIT_ERROR : EXIT_OK;
  }
  if (command === '--version' || command === '-V') {
    process.stdout.write(`${version()}\n`);
    return EXIT_OK;
  }
  return runTestTool(command, rest);
}

/** Runs `argv` as the program, printing errors and setting `process.exitCode`. */
export async function runCli(argv: readonly string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (err) {
    if (err instanceof CliExit) {
      if (err.message !== '') process.stderr.write(err.message);
      process.exitCode = err.exitCode;
    } else {
      process.stderr.write(`fatal: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 128;
    }
  }
}

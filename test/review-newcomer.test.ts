/**
 * Review findings from a newcomer's angle: someone who has only the installed package (its
 * README, its shipped files, its types and its `simple-ipc` bin) and follows the README from the
 * top. Each test states what the README, the CLI's help or the TSDoc promises, and fails where
 * the installed package does otherwise.
 */

import assert from 'node:assert/strict';
import { runCli, test } from './helpers.js';

test("test-tool commands answer -h and --help as Git 2.55's test-tool does: usage on stdout, exit 0", async () => {
  // The README: `simple-ipc` "takes the subcommands, options, defaults, messages and exit codes
  // of Git's test-tool simple-ipc", Git 2.55 being the contract. Git 2.55's
  // `test-tool simple-ipc send --help` (and `-h`, and `SUPPORTS_SIMPLE_IPC --help`, and
  // `frobnicate --help`) print the usage on stdout and exit 0 (checked against a Git 2.55
  // build); an unknown option after an unknown subcommand is parse-options' usage error, 129.
  const cases: [args: string[], code: number, stream: 'stdout' | 'stderr', text: RegExp][] = [
    [['send', '--help'], 0, 'stdout', /^usage: simple-ipc is-active/],
    [['send', '-h'], 0, 'stdout', /^usage: simple-ipc is-active/],
    [['-h'], 0, 'stdout', /^usage: simple-ipc is-active/],
    [['SUPPORTS_SIMPLE_IPC', '--help'], 0, 'stdout', /^usage: simple-ipc is-active/],
    [['frobnicate', '--help'], 0, 'stdout', /^usage: simple-ipc is-active/],
    [['frobnicate', '--bogus'], 129, 'stderr', /^error: unknown option `bogus'/],
  ];
  const wrong: string[] = [];
  for (const [args, code, stream, text] of cases) {
    const r = await runCli(args);
    const out = stream === 'stdout' ? r.stdout.toString() : r.stderr;
    if (r.code !== code || !text.test(out)) {
      wrong.push(
        `simple-ipc ${args.join(' ')}: exit ${r.code} (Git: ${code}), stdout ${JSON.stringify(r.stdout.toString().split('\n')[0])}, stderr ${JSON.stringify(r.stderr.split('\n')[0])}`,
      );
    }
  }
  assert.deepEqual(wrong, []);
});

test("'simple-ipc help help' shows the help of the help command it lists", async () => {
  // `simple-ipc --help` lists `help [COMMAND]  show the help of a command` among the commands
  // and ends "Run 'simple-ipc help COMMAND' for the options and examples of a command".
  const r = await runCli(['help', 'help']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.toString(), /help/);
});

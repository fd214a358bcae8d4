/**
 * Review findings from a newcomer's angle: someone who has only the installed package (its
 * README, its shipped files, its types and its `simple-ipc` bin) and follows the README from the
 * top. Each test states what the README, the CLI's help or the TSDoc promises, and fails where
 * the installed package does otherwise.
 */

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { isSimpleIpcError, userSocketDirectory } from '../src/index.js';
import { runCli, tempDir, test, unixOnly } from './helpers.js';

test(
  'userSocketDirectory(): a missing XDG_RUNTIME_DIR is refused with a message that names it and says what to do',
  { skip: unixOnly('XDG_RUNTIME_DIR') },
  async (t) => {
    // A stale XDG_RUNTIME_DIR (after `su`, `sudo -E`, in a container, after logout) is common.
    // docs/security.md and the TSDoc promise a message "that says why ... and what to do", as
    // the other XDG_RUNTIME_DIR refusals give ("unset XDG_RUNTIME_DIR, or set it to ...").
    const missing = join(tempDir(t), 'run-user-1000');
    let error: unknown;
    try {
      userSocketDirectory({ env: { XDG_RUNTIME_DIR: missing } });
    } catch (err) {
      error = err;
    }
    assert.ok(isSimpleIpcError(error), `a SimpleIpcError, not ${String(error)}`);
    assert.match(error.message, /XDG_RUNTIME_DIR/, 'the message names the variable');
    assert.match(error.message, /unset XDG_RUNTIME_DIR/, 'the message says what to do');
    assert.doesNotMatch(
      error.message,
      /its directory does not exist/,
      'the directory itself is missing, not its parent',
    );

    // The CLI's help: "1 when it is not safe (the message says why and what to do)".
    const cli = await runCli(['socket-dir'], { env: { ...process.env, XDG_RUNTIME_DIR: missing } });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /XDG_RUNTIME_DIR/, cli.stderr);
  },
);

test(
  'socket-dir never prints a relative directory for a relative XDG_RUNTIME_DIR',
  { skip: unixOnly('XDG_RUNTIME_DIR') },
  async (t) => {
    // The XDG Base Directory specification: "All paths set in these environment variables
    // must be absolute. If an implementation encounters a relative path in any of these
    // variables it should consider the path invalid and ignore it." A relative socket
    // directory names a different socket from every working directory: `serve` started in one
    // folder and `call` run in another never meet.
    const cwd = tempDir(t);
    mkdirSync(join(cwd, 'runtime'), { mode: 0o700 });
    const r = await runCli(['socket-dir'], {
      cwd,
      env: { ...process.env, XDG_RUNTIME_DIR: 'runtime' },
    });
    if (r.code === 0) {
      const dir = r.stdout.toString().trim();
      assert.ok(isAbsolute(dir), `socket-dir printed the relative path '${dir}'`);
    } else {
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /XDG_RUNTIME_DIR/);
    }
  },
);

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

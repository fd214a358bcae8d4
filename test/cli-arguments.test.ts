import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runCli, tempDir, testWithDeadline } from './helpers.js';

// Each test runs the CLI.
const test = testWithDeadline(60_000);

// Flags out of the range the library takes are usage errors (exit 129, with the usage), as
// Git's parse-options makes them, never a failure after the command has started.
test('numeric flags out of range exit 129 with a usage line', async (t) => {
  const path = join(tempDir(t), 's');
  const lines: [string[], RegExp][] = [
    [
      ['call', `--timeout=${2 ** 31}`, path, 'x'],
      /--timeout expects a whole number from 1 to 2147483647/,
    ],
    [
      ['serve', path, '--exec=cat', `--threads=${2 ** 32}`],
      /--threads expects a whole number from 1 to 4294967295/,
    ],
    [
      ['serve', path, '--exec=cat', '--idle-timeout=2147484'],
      /--idle-timeout expects a number of seconds above 0, at most 2147483/,
    ],
    [
      ['is-active', `--name=${path}`, `--threads=${2 ** 31}`],
      /^error: option `threads' expects a numerical value\n/,
    ],
    [
      ['sendbytes', `--name=${path}`, '--bytecount=-99999999999'],
      /^error: option `bytecount' expects a numerical value\n/,
    ],
  ];
  const results = await Promise.all(lines.map(([args]) => runCli(args)));
  results.forEach((r, i) => {
    const [args, pattern] = lines[i]!;
    assert.equal(r.code, 129, args.join(' '));
    assert.match(r.stderr, pattern, args.join(' '));
    assert.match(r.stderr, /usage: simple-ipc /, args.join(' '));
  });
});

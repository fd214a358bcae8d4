import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { dealSenders, MIN_REQUESTS_FOR_THREADS } from '../cli/multiple.js';
import { TEST_TOOL, TEST_TOOL_SKIP } from './git-build.js';
import {
  netAddress,
  recording,
  runCli,
  runProcess,
  type RunResult,
  socketGone,
  tempDir,
  testWithDeadline,
  unixOnly,
} from './helpers.js';

// Each test runs the CLI.
const test = testWithDeadline(60_000);

test('SUPPORTS_SIMPLE_IPC, unknown subcommands and bad options exit as Git does', async () => {
  const supports = await runCli(['SUPPORTS_SIMPLE_IPC']);
  assert.equal(supports.code, 0);
  assert.equal(supports.stdout.length, 0);
  // A deliberate difference: Git's tool dies (128, "Unhandled subcommand") on a word that is no
  // command, after parsing the options; ours takes it for a typo, a usage error (129) with a
  // suggestion when one is close, whatever follows. Git's scripts never name an unknown one.
  const unknown = await runCli(['frobnicate', '--name=x']);
  assert.equal(unknown.code, 129);
  assert.equal(
    unknown.stderr,
    "error: 'frobnicate' is not a simple-ipc command\nRun 'simple-ipc --help' for the commands.\n",
  );
  for (const args of [
    ['frobnicate', '--help'],
    ['frobnicate', '--bogus'],
    ['frobnicate', '-x'],
  ]) {
    const r = await runCli(args);
    assert.equal(r.code, 129, args.join(' '));
    assert.match(r.stderr, /^error: 'frobnicate' is not a simple-ipc command\n/);
  }
  const badOption = await runCli(['is-active', '--bogus']);
  assert.equal(badOption.code, 129);
  assert.match(badOption.stderr, /^error: unknown option `bogus'\n/);
  const badNumber = await runCli(['is-active', '--threads=abc']);
  assert.equal(badNumber.code, 129);
  assert.match(badNumber.stderr, /^error: option `threads' expects a numerical value\n/);
});

// `simple-ipc ARGS` as `test-tool simple-ipc ARGS` answers it: exit code, the stream written to,
// what that stream starts with. Each row checked against Git 2.55's t/helper/test-tool (and
// again below when it is at hand). A lone -h is answered first; otherwise the options are parsed
// before the subcommand is looked at, so -h and --help are answered (and bad options refused)
// whatever the subcommand, and an unknown one is fatal only after that. (A word that is no
// command at all is a usage error here at once: see the test above.) The first bad option or
// help request decides.
const USAGE = /^usage: simple-ipc is-active/;
const HELP_ROWS: [args: string[], code: number, stream: 'stdout' | 'stderr', text: RegExp][] = [
  [['send', '--help'], 0, 'stdout', USAGE],
  [['send', '-h'], 0, 'stdout', USAGE],
  [['-h'], 0, 'stdout', USAGE],
  [['-h', '-h'], 0, 'stdout', USAGE],
  [['SUPPORTS_SIMPLE_IPC', '--help'], 0, 'stdout', USAGE],
  [['send', '-h', '--bogus'], 0, 'stdout', USAGE],
  [['SUPPORTS_SIMPLE_IPC', '--bogus'], 129, 'stderr', /^error: unknown option `bogus'\n/],
  [['send', '--bogus', '-h'], 129, 'stderr', /^error: unknown option `bogus'\n/],
  [['-h', 'send'], 128, 'stderr', /^fatal: Unhandled subcommand: '-h'\n$/],
  [['SUPPORTS_SIMPLE_IPC', 'extra'], 128, 'stderr', /^fatal: Unhandled subcommand: /],
];

/** Exit code, the stream written to and its first line (Git's program name left out). */
function answer(r: RunResult): string {
  const stdout = r.stdout.toString();
  const stream = stdout !== '' ? 'stdout' : 'stderr';
  const first = (stdout !== '' ? stdout : r.stderr).split('\n')[0]!;
  return `exit ${r.code}, ${stream}: ${first.replace('test-helper ', '').replace(/ +/g, ' ')}`;
}

test("-h and --help answer as Git 2.55's test-tool does: usage on stdout, exit 0", async () => {
  const results = await Promise.all(HELP_ROWS.map(([args]) => runCli(args)));
  const wrong: string[] = [];
  for (const [i, [args, code, stream, text]] of HELP_ROWS.entries()) {
    const r = results[i]!;
    const out = { stdout: r.stdout.toString(), stderr: r.stderr };
    const other = stream === 'stdout' ? 'stderr' : 'stdout';
    if (r.code !== code || !text.test(out[stream]) || out[other] !== '') {
      wrong.push(`simple-ipc ${args.join(' ')}: ${answer(r)} (Git: exit ${code}, ${stream})`);
    }
  }
  assert.deepEqual(wrong, []);
  // The usage is the same text wherever it is asked for.
  for (const [i, [, code]] of HELP_ROWS.entries()) {
    if (code === 0) assert.deepEqual(results[i]!.stdout, results[0]!.stdout);
  }
});

test(
  "-h and --help: the same answers as Git's test-tool at hand",
  { skip: TEST_TOOL_SKIP },
  async () => {
    const [ours, git] = await Promise.all([
      Promise.all(HELP_ROWS.map(([args]) => runCli(args))),
      Promise.all(HELP_ROWS.map(([args]) => runProcess(TEST_TOOL!, ['simple-ipc', ...args], {}))),
    ]);
    assert.deepEqual(
      HELP_ROWS.map(([args], i) => `${args.join(' ')}: ${answer(ours[i]!)}`),
      HELP_ROWS.map(([args], i) => `${args.join(' ')}: ${answer(git[i]!)}`),
    );
  },
);

test('multiple deals its senders over threads only with more than one core and enough requests', () => {
  const many = MIN_REQUESTS_FOR_THREADS;
  assert.deepEqual(dealSenders(8, many, 1), [[0, 1, 2, 3, 4, 5, 6, 7]]);
  assert.deepEqual(dealSenders(8, many - 1, 4), [[0, 1, 2, 3, 4, 5, 6, 7]]);
  assert.deepEqual(dealSenders(8, many, 2), [
    [0, 2, 4, 6],
    [1, 3, 5, 7],
  ]);
  assert.deepEqual(dealSenders(5, many, 3), [[0, 3], [1, 4], [2]]);
  // Never more threads than senders.
  assert.deepEqual(dealSenders(2, many, 16), [[0], [1]]);
  assert.deepEqual(dealSenders(1, many, 16), [[0]]);
});

test('client commands probe first and report the state of the path', async (t) => {
  const dir = tempDir(t);
  const missing = join(dir, 'missing');
  // Git's rules: no socket file is not-listening; no pipe is path-not-found (ipc-win32.c).
  const message =
    process.platform === 'win32'
      ? `error: path not found '${missing}'\n`
      : `error: no server listening at '${missing}'\n`;
  for (const command of ['is-active', 'send', 'sendbytes', 'multiple', 'stop-daemon']) {
    const r = await runCli([command, `--name=${missing}`]);
    assert.equal(r.code, 1, command);
    assert.equal(r.stderr, message, command);
    assert.equal(r.stdout.length, 0, command);
  }
  // A file at the path stands in no pipe's way: the rest is about socket files.
  if (process.platform === 'win32') return;
  const file = join(dir, 'file');
  writeFileSync(file, 'precious');
  const invalid = await runCli(['send', `--name=${file}`, '--token=ping']);
  assert.equal(invalid.code, 1);
  assert.equal(invalid.stderr, `error: invalid pipe/socket name '${file}'\n`);
  const runOnFile = await runCli(['run-daemon', `--name=${file}`]);
  assert.equal(runOnFile.code, 1);
  assert.match(runOnFile.stderr, /^error: could not start server on: '.*'/);
});

test('start-daemon, send, sendbytes, multiple, run-daemon in use, stop-daemon', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'ipc');
  const name = `--name=${path}`;
  t.after(async () => {
    if (!(await socketGone(path))) await runCli(['stop-daemon', name, '--max-wait=5']);
  });
  const start = await runCli(['start-daemon', name, '--threads=4', '--max-wait=20']);
  assert.equal(start.stderr, '');
  assert.equal(start.code, 0);
  assert.equal((await runCli(['is-active', name])).code, 0);

  const ping = await runCli(['send', name, '--token=ping']);
  assert.equal(ping.stdout.toString(), 'pong\n');
  const none = await runCli(['send', name]);
  assert.equal(none.stdout.toString(), 'unhandled command: (no-command)\n');
  const bytes = await runCli(['sendbytes', name]);
  assert.equal(bytes.stdout.toString(), 'sent:x00001024 rcvd:x00001024\n');
  const clamped = await runCli(['sendbytes', name, '--bytecount=0', '--byte=Zed']);
  assert.equal(clamped.stdout.toString(), 'sent:Z00000001 rcvd:Z00000001\n');

  const multiple = await runCli([
    'multiple',
    name,
    '--threads=28',
    '--batchsize=2',
    '--bytecount=5',
  ]);
  assert.equal(multiple.code, 0);
  const lines = multiple.stdout.toString().trimEnd().split('\n');
  assert.equal(lines.pop(), 'client (good 56) (join 0), (errors 0)');
  const expected: string[] = [];
  for (let k = 0; k < 28; k++) {
    const letter = String.fromCharCode(65 + (k % 26));
    for (let j = 0; j < 2; j++) {
      const n = String(5 + 2 * Math.floor(k / 26) + j).padStart(8, '0');
      expected.push(`sent:${letter}${n} rcvd:${letter}${n}`);
    }
  }
  assert.deepEqual([...lines].sort(), [...expected].sort());
  // Each sender's lines appear in its own order (senders 0 and 26 both use 'A').
  const at = (n: number): number =>
    lines.indexOf(`sent:A${String(n).padStart(8, '0')} rcvd:A${String(n).padStart(8, '0')}`);
  assert.ok(at(5) < at(6), 'sender 0 in order');
  assert.ok(at(7) < at(8), 'sender 26 in order');

  // Over 64 KiB of output: written in gathered pieces, every line there once, in sender order.
  const many = await runCli(['multiple', name, '--threads=3', '--batchsize=1000', '--bytecount=1']);
  assert.equal(many.code, 0);
  assert.ok(many.stdout.length > 1 << 16);
  const manyLines = many.stdout.toString().trimEnd().split('\n');
  assert.equal(manyLines.pop(), 'client (good 3000) (join 0), (errors 0)');
  assert.equal(manyLines.length, 3000);
  for (const letter of ['A', 'B', 'C']) {
    const counts = manyLines
      .filter((line) => line.startsWith(`sent:${letter}`))
      .map((line) => Number(line.slice(6, 14)));
    assert.deepEqual(
      counts,
      Array.from({ length: 1000 }, (_, j) => 1 + j),
      `sender ${letter}`,
    );
  }

  const second = await runCli(['run-daemon', name]);
  assert.equal(second.code, 1);
  assert.equal(second.stderr, `error: socket/pipe already in use: '${path}'\n`);
  assert.equal((await runCli(['send', name, '--token=ping'])).stdout.toString(), 'pong\n');

  const stop = await runCli(['stop-daemon', name]);
  assert.equal(stop.code, 0);
  assert.equal(stop.stdout.length + stop.stderr.length, 0);
  assert.ok(await socketGone(path), 'the socket is gone');
  assert.equal((await runCli(['is-active', name])).code, 1);
});

test(
  'start-daemon reports a daemon that cannot start',
  {
    skip: unixOnly('a socket in a missing directory (a pipe name needs no directory)'),
  },
  async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'no-such-dir', 'ipc');
    const r = await runCli(['start-daemon', `--name=${path}`, '--max-wait=20']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'error: daemon terminated\n');
  },
);

test('sendbytes writes the very bytes Git’s client writes', async (t) => {
  const path = join(tempDir(t), 'tap');
  const want = recording('sendbytes-100000-A.request');
  const requests: Buffer[] = [];
  const tap = createServer((socket) => {
    const chunks: Buffer[] = [];
    socket.on('error', () => {});
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      const all = Buffer.concat(chunks);
      if (all.length >= want.length) {
        requests.push(all);
        socket.end(recording('sendbytes-100000-A.response'));
      }
    });
  });
  await new Promise<void>((resolve) => tap.listen(netAddress(path), resolve));
  t.after(() => tap.close());
  const r = await runCli(['sendbytes', `--name=${path}`, '--bytecount=100000', '--byte=A']);
  assert.equal(r.stdout.toString(), recording('stdout.sendbytes.txt').toString());
  assert.equal(requests.length, 1);
  assert.ok(requests[0]!.equals(want), 'request bytes identical to the recording');
});

// Runs the built test files (dist/test/*.test.js) with node:test, several files at a time:
// most tests wait on sockets, timers and child processes, not on the CPU, and the runner's own
// default on a 2-core machine is one file at a time. The slowest files start first, so that
// the run is not left waiting on one of them at its end: node:test's run() keeps the order it
// is given, where `node --test FILE...` sorts the files by name.
//
//   node scripts/run-tests.mjs [--concurrency=N] [FILE ...]
//
// The Node that runs this script runs the tests (scripts/test-runtimes.sh runs it on each Node
// line), with the reporter `node --test` would use: spec on a terminal, TAP elsewhere (spec
// everywhere from Node 23). Other arguments that start with `--` are passed to `node --test`
// instead, which then runs the files in its own order.
// SIMPLE_IPC_TEST_CONCURRENCY also sets N (default 4).
/* global AbortController */
import { spawn } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import process from 'node:process';
import { run } from 'node:test';
import { spec, tap } from 'node:test/reporters';

// Longest first (seconds, Node 20, one file at a time, quiet 2-core machine: about 4 to 14;
// package first, as the one that also takes the most CPU).
const SLOWEST = [
  'package',
  'cli-people',
  'git-interop',
  'conformance',
  'server',
  'client',
  'arguments.property',
  'lifecycle-cli',
  'cluster',
  'workers',
  'lifecycle',
  'hardening',
];

const args = process.argv.slice(2);
const option = args.find((a) => a.startsWith('--concurrency='));
const concurrency = Number(
  option?.slice('--concurrency='.length) ?? process.env.SIMPLE_IPC_TEST_CONCURRENCY ?? 4,
);
if (!Number.isInteger(concurrency) || concurrency < 1) {
  process.stderr.write(
    `run-tests: the concurrency must be a whole number from 1, not ${concurrency}\n`,
  );
  process.exit(2);
}
const passed = args.filter((a) => a.startsWith('--') && !a.startsWith('--concurrency='));
let files = args.filter((a) => !a.startsWith('--'));
if (files.length === 0) {
  const dir = join('dist', 'test');
  files = readdirSync(dir)
    .filter((name) => name.endsWith('.test.js'))
    .map((name) => join(dir, name));
}
const rank = (file) => {
  const index = SLOWEST.findIndex((name) => file.endsWith(`${name}.test.js`));
  return index === -1 ? SLOWEST.length : index;
};
files.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));

// Node 20 reads and parses the whole certificate file that NODE_EXTRA_CA_CERTS names at every
// start (about 0.05 CPU-seconds with a system bundle: more than the rest of a CLI process's
// start), and the suite starts some 400 Node processes. No test makes a TLS connection (every
// one talks to sockets on this machine), so the tests run without it. Node 22 and later read
// the file only on a first TLS connection.
delete process.env.NODE_EXTRA_CA_CERTS;
if (passed.length > 0) {
  const child = spawn(
    process.execPath,
    ['--test', `--test-concurrency=${concurrency}`, ...passed, ...files],
    { stdio: 'inherit' },
  );
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 1 : 128 + 9)));
} else {
  // As `node --test` does: a signal cancels the run (its files' processes are killed), and any
  // failure but a todo test's fails it.
  const controller = new AbortController();
  // run() listens on the signal once per file: more than the default 10 is no leak.
  setMaxListeners(files.length + 10, controller.signal);
  for (const [signal, number] of [
    ['SIGINT', 2],
    ['SIGTERM', 15],
  ]) {
    process.once(signal, () => {
      process.exitCode = 128 + number;
      controller.abort();
    });
  }
  const stream = run({
    files: files.map((file) => resolve(file)),
    concurrency,
    signal: controller.signal,
  });
  stream.on('test:fail', (data) => {
    if (data.todo === undefined || data.todo === false) process.exitCode ||= 1;
  });
  const major = Number(process.versions.node.split('.')[0]);
  stream.compose(process.stdout.isTTY || major >= 23 ? spec : tap).pipe(process.stdout);
}

// npm test: the build, then the lint checks and the test files side by side. The tests spend
// most of their time waiting on sockets, timers and child processes, so the checks' CPU work
// (prettier, eslint, the import-cycle check, the API reports) fits in beside them instead of
// before them; the checks that need no build (lint:format, lint:code) start beside the build,
// whose tsc keeps one core busy and leaves the other idle. The checks' output is held and
// printed once the tests end; the run fails if either fails. Arguments go to
// scripts/run-tests.mjs (e.g. --concurrency=N).
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { constants, setPriority } from 'node:os';
import process from 'node:process';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
// Node 20 parses the file NODE_EXTRA_CA_CERTS names at every start; nothing here makes a TLS
// connection (see scripts/run-tests.mjs).
delete process.env.NODE_EXTRA_CA_CERTS;

/**
 * Runs a command; resolves with its exit code and, unless `inherit`, its output. A command
 * whose output is held (the lint checks) runs at a lower priority, and so do the processes it
 * starts (npm starts them after its own start-up, and they inherit it): the build and the
 * tests are what the run waits on, and the checks take the CPU time they leave.
 */
function run(command, args, inherit) {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: inherit ? 'inherit' : ['ignore', 'pipe', 'pipe'],
      shell: process.platform === 'win32' && command === npm,
    });
    if (!inherit && child.pid !== undefined) {
      try {
        setPriority(child.pid, constants.priority.PRIORITY_BELOW_NORMAL);
      } catch {
        // Not allowed here: the checks run at the same priority, only slower to finish.
      }
    }
    const chunks = [];
    child.stdout?.on('data', (chunk) => chunks.push(chunk));
    child.stderr?.on('data', (chunk) => chunks.push(chunk));
    child.on('error', (err) => resolve({ code: 1, output: `${command}: ${err.message}\n` }));
    child.on('close', (code, signal) =>
      resolve({
        code: code ?? (signal === null ? 1 : 128),
        output: Buffer.concat(chunks).toString(),
      }),
    );
  });
}

/** Prints the lint checks' held output, in the order of `lint:checks`, and their verdict. */
function report(results) {
  const failed = results.find((r) => r.code !== 0);
  process.stdout.write(
    `\n=== lint (prettier, eslint, import cycles, API reports)\n${results.map((r) => r.output).join('')}`,
  );
  process.stdout.write(`=== lint ${failed ? `FAILED (exit ${failed.code})` : 'passed'}\n`);
  return failed?.code ?? 0;
}

// The checks run side by side, each when it can: prettier, and eslint with the import-cycle
// check, read the sources only and start at once, on the CPU time tsc (mostly single-threaded)
// leaves; the API reports are made from the build's .d.ts files, after it. Side by side, what
// is left of them when the tests end has both cores.
const lint = (script) => run(npm, ['run', script, '--silent'], false);
const sources = [lint('lint:format'), lint('lint:code')];
const build = await run(npm, ['run', 'build', '--silent'], true);
if (build.code !== 0) {
  report(await Promise.all(sources));
  process.exit(build.code);
}
const [checks, tests] = await Promise.all([
  Promise.all([...sources, lint('lint:api')]),
  run(process.execPath, ['scripts/run-tests.mjs', ...process.argv.slice(2)], true),
]);
const failed = report(checks);
process.exit(failed !== 0 ? failed : tests.code);

// npm test: the build, then the lint checks and the test files side by side. The tests spend
// most of their time waiting on sockets, timers and child processes, so the checks' CPU work
// (prettier, eslint, the import-cycle check, the API reports) fits in beside them instead of
// before them. The checks' output is held and printed once the tests end; the run fails if
// either fails. Arguments go to scripts/run-tests.mjs (e.g. --concurrency=N).
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import process from 'node:process';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
// Node 20 parses the file NODE_EXTRA_CA_CERTS names at every start; nothing here makes a TLS
// connection (see scripts/run-tests.mjs).
delete process.env.NODE_EXTRA_CA_CERTS;

/** Runs a command; resolves with its exit code and, unless `inherit`, its output. */
function run(command, args, inherit) {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: inherit ? 'inherit' : ['ignore', 'pipe', 'pipe'],
      shell: process.platform === 'win32' && command === npm,
    });
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

const build = await run(npm, ['run', 'build', '--silent'], true);
if (build.code !== 0) process.exit(build.code);
const [checks, tests] = await Promise.all([
  run(npm, ['run', 'lint:checks', '--silent'], false),
  run(process.execPath, ['scripts/run-tests.mjs', ...process.argv.slice(2)], true),
]);
process.stdout.write(`\n=== lint (prettier, eslint, import cycles, API reports)\n${checks.output}`);
process.stdout.write(`=== lint ${checks.code === 0 ? 'passed' : `FAILED (exit ${checks.code})`}\n`);
process.exit(checks.code !== 0 ? checks.code : tests.code);

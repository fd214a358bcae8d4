/**
 * `npm run bench:peers`: simple-ipc against other ways for two Node processes on one machine to
 * talk, all over Unix sockets, in one run. See docs/benchmarks.md ("Peers").
 *
 *   node bench/peers/run.mjs [--smoke] [--runs=N] [--only=sequential,concurrent,upload,download,fresh]
 *                            [--contenders=net-per-request,simple-ipc,...] [--out=FILE]
 *
 * Every contender's server is its own process, started once for the whole run. Every measured
 * repetition is a fresh client process (client.mjs; once.mjs for the fresh-process scenario).
 * The contenders take turns within each round, in an order that rotates and flips from round to
 * round, so that all meet the same background load; figures are medians over the rounds and
 * ratios are medians of the per-round ratios against plain node:net of the same round.
 * `--smoke` checks that every contender still works: one short repetition of each scenario with
 * small sizes, no warm-up; any failure exits 1.
 *
 * The contenders' packages live in bench/peers/package.json and its lockfile, apart from the
 * project's own install; they are installed here with `npm ci --prefix bench/peers` when missing.
 */

import { fork, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { clearTimeout, setTimeout } from 'node:timers';
import { fileURLToPath, URL } from 'node:url';
import { CONTENDERS } from './contenders.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MiB = 1024 * 1024;
/** A contender whose repetition takes longer than this is not repeated in that scenario. */
const SLOW_MS = 10_000;

// --- options -------------------------------------------------------------------------------

const SCENARIOS = ['sequential', 'concurrent', 'upload', 'download', 'fresh'];
const options = { smoke: false, runs: 5, only: SCENARIOS, contenders: CONTENDERS, out: undefined };
for (const arg of process.argv.slice(2)) {
  const [key, value = ''] = arg.split(/=(.*)/s);
  if (key === '--smoke') options.smoke = true;
  else if (key === '--runs') options.runs = Math.max(1, Number(value) || 1);
  else if (key === '--only') options.only = value.split(',').filter((s) => SCENARIOS.includes(s));
  else if (key === '--contenders') {
    const names = value.split(',');
    const unknown = names.filter((n) => !CONTENDERS.some((c) => c.name === n));
    if (unknown.length > 0) usage(`unknown contender ${unknown.join(', ')}`);
    options.contenders = CONTENDERS.filter((c) => names.includes(c.name));
  } else if (key === '--out') options.out = value;
  else usage(`unknown option ${arg}`);
}
if (options.smoke) options.runs = 1;

function usage(message) {
  process.stderr.write(
    `bench:peers: ${message}\nusage: npm run bench:peers -- [--smoke] [--runs=N] ` +
      `[--only=${SCENARIOS.join(',')}] [--contenders=${CONTENDERS.map((c) => c.name).join(',')}] ` +
      '[--out=FILE]\n',
  );
  process.exit(2);
}

// --- set-up checks -------------------------------------------------------------------------

/** Installs bench/peers' pinned packages from its lockfile unless they are there already. */
function ensureInstalled() {
  const wanted = JSON.parse(readFileSync(join(HERE, 'package.json'), 'utf8')).dependencies;
  const missing = Object.entries(wanted).filter(([name, version]) => {
    const file = join(HERE, 'node_modules', name, 'package.json');
    return !existsSync(file) || JSON.parse(readFileSync(file, 'utf8')).version !== version;
  });
  if (missing.length === 0) return;
  process.stderr.write(
    `bench:peers: installing ${missing.map(([n, v]) => `${n}@${v}`).join(', ')} ` +
      'with npm ci --prefix bench/peers\n',
  );
  // --ignore-scripts: nothing is built or downloaded at install (zeromq's addon is prebuilt in
  // its npm package, for linux/darwin/win32 on x64 and arm64).
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = spawnSync(
    npm,
    ['ci', '--prefix', HERE, '--ignore-scripts', '--no-audit', '--no-fund'],
    { stdio: ['ignore', 'inherit', 'inherit'], shell: process.platform === 'win32' },
  );
  if (result.status !== 0) {
    process.stderr.write(
      'bench:peers: the install failed; run `npm ci --prefix bench/peers --ignore-scripts` ' +
        'from the project root (it needs the npm registry), then try again\n',
    );
    process.exit(1);
  }
}

/**
 * Refuses node-ipc's sabotaged releases: the destructive code was in 10.1.1 to 10.1.3 and the
 * `peacenotwar` dependency in 9.2.2 and later 9.x and in 11.x; 9.2.1 is the last clean 9.x.
 */
function checkNodeIpc() {
  const lock = JSON.parse(readFileSync(join(HERE, 'package-lock.json'), 'utf8'));
  for (const [path, entry] of Object.entries(lock.packages ?? {})) {
    if (path.endsWith('node_modules/peacenotwar')) fail(`the lockfile has ${path}`);
    if (path.endsWith('node_modules/node-ipc') && entry.version !== '9.2.1') {
      fail(`the lockfile has node-ipc ${entry.version}, not 9.2.1`);
    }
  }
  if (existsSync(join(HERE, 'node_modules', 'peacenotwar'))) {
    fail('bench/peers/node_modules has peacenotwar');
  }
  function fail(message) {
    process.stderr.write(`bench:peers: ${message}: refusing to run a sabotaged node-ipc\n`);
    process.exit(1);
  }
}

ensureInstalled();
checkNodeIpc();
if (!existsSync(join(ROOT, 'dist', 'src', 'index.js'))) {
  process.stderr.write('bench:peers: dist/src/index.js is missing: run `npm run build` first\n');
  process.exit(1);
}

// --- scenarios -----------------------------------------------------------------------------

const big = options.smoke ? MiB : 64 * MiB;
const sizeText = options.smoke ? '1 MiB' : '64 MiB';
/**
 * Each scenario: the client job (and a smaller warm-up job), the figure of one repetition, and
 * whether a higher figure is better.
 */
const scenarios = {
  sequential: {
    title: `Sequential latency: one client, ${options.smoke ? 20 : 1000} \`ping\` -> \`pong\`, one at a time`,
    job: { scenario: 'sequential', requests: options.smoke ? 20 : 1000, clients: 1 },
    warm: { scenario: 'sequential', requests: 200, clients: 1 },
    unit: 'µs per request',
    figure: (r) => (r.ms * 1000) / r.requests,
    higher: false,
  },
  concurrent: {
    title: `Throughput: 8 concurrent clients in one process, ${options.smoke ? 80 : 4000} \`ping\`s in all`,
    job: { scenario: 'concurrent', requests: options.smoke ? 80 : 4000, clients: 8 },
    warm: { scenario: 'concurrent', requests: 800, clients: 8 },
    unit: 'requests/s',
    figure: (r) => (r.requests * 1000) / r.ms,
    higher: true,
  },
  upload: {
    title: `One ${sizeText} request, answered \`ok <length>\``,
    job: { scenario: 'upload', requests: 1, clients: 1, size: big },
    warm: { scenario: 'upload', requests: 1, clients: 1, size: MiB },
    unit: 'MB/s',
    figure: (r) => big / (r.ms * 1000),
    higher: true,
  },
  download: {
    title: `\`send <n>\` -> one ${sizeText} response`,
    job: { scenario: 'download', requests: 1, clients: 1, size: big },
    warm: { scenario: 'download', requests: 1, clients: 1, size: MiB },
    unit: 'MB/s',
    figure: (r) => r.bytes / (r.ms * 1000),
    higher: true,
  },
  fresh: {
    title: 'A fresh process that sends one `ping` and exits (spawn to exit)',
    job: undefined,
    warm: undefined,
    unit: 'ms',
    figure: (r) => r.ms,
    higher: false,
  },
};

// --- servers -------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'simple-ipc-peers-'));
const socketOf = (name) => join(dir, `${name}.sock`);
const servers = new Map();
let failed = false;

async function startServer(name) {
  const child = fork(join(HERE, 'server.mjs'), [name, socketOf(name)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  servers.set(name, child);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the ${name} server did not start in 30 s`)),
      30_000,
    );
    child.once('message', () => {
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the ${name} server exited (${code ?? signal})`));
    });
  });
}

async function stopServers() {
  await Promise.all(
    [...servers.values()].map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      try {
        child.send('exit');
      } catch {
        child.kill('SIGKILL');
      }
      await exited;
      clearTimeout(timer);
    }),
  );
}

// --- one repetition ------------------------------------------------------------------------

const timeoutMs = options.smoke ? 30_000 : 180_000;

/** Runs one repetition of `scenario` for `name` in a fresh process: `{ ms, requests, bytes }`. */
function repetition(scenario, name, job) {
  if (scenario === 'fresh') {
    const argv =
      name === 'node -e 0' ? ['-e', '0'] : [join(HERE, 'once.mjs'), name, socketOf(name)];
    const start = performance.now();
    const result = spawnSync(process.execPath, argv, {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: timeoutMs,
    });
    const ms = performance.now() - start;
    if (result.status !== 0) throw new Error(exitText(result));
    return { ms, requests: 1, bytes: 4 };
  }
  const result = spawnSync(
    process.execPath,
    [join(HERE, 'client.mjs'), name, socketOf(name), JSON.stringify(job)],
    { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, encoding: 'utf8' },
  );
  if (result.status !== 0) throw new Error(exitText(result));
  return JSON.parse(result.stdout.trim().split('\n').pop());
}

function exitText(result) {
  const why =
    result.error?.code === 'ETIMEDOUT'
      ? `no exit in ${timeoutMs / 1000} s`
      : `exit ${result.status ?? result.signal}`;
  // The error's own line (not the stack under it), else the last line written.
  const lines = String(result.stderr ?? '')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const error = lines.find((line) => /^\w*Error\b/.test(line)) ?? lines.at(-1) ?? '';
  return `${why}: ${error}`;
}

// --- figures -------------------------------------------------------------------------------

function median(values) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >>> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Median over the rounds both ran of (this / base), turned so that above 1 is faster. */
function pairedRatio(mine, base, higher) {
  const ratios = [];
  mine.forEach((value, round) => {
    const other = base[round];
    if (value !== undefined && other !== undefined)
      ratios.push(higher ? value / other : other / value);
  });
  return median(ratios);
}

function format(value) {
  if (!Number.isFinite(value)) return '';
  if (value >= 100) return Math.round(value).toLocaleString('en-US');
  if (value >= 10) return value.toFixed(1);
  return value >= 0.1 ? value.toFixed(2) : value.toPrecision(2);
}

// --- the run -------------------------------------------------------------------------------

const started = performance.now();
const machine = `Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${process.platform}`;
const loadBefore = loadavg()[0];
const lines = [];
const out = (line = '') => {
  lines.push(line);
  process.stdout.write(`${line}\n`);
};

try {
  for (const { name } of options.contenders) await startServer(name);
  out(`${machine}; load average ${loadBefore.toFixed(1)} at the start`);
  out(
    `${options.runs} round${options.runs === 1 ? '' : 's'}${options.smoke ? ' (smoke run)' : ''}; above 1 is faster than plain node:net`,
  );

  for (const key of options.only) {
    const scenario = scenarios[key];
    const names = options.contenders.map((c) => c.name);
    if (key === 'fresh') names.unshift('node -e 0');
    /** Per contender, the figure of each round (undefined where it did not run). */
    const figures = new Map(names.map((n) => [n, []]));
    const errors = new Map();
    const once = new Set();

    if (!options.smoke) {
      for (const name of names) {
        try {
          repetition(key, name, scenario.warm);
        } catch (err) {
          errors.set(name, `warm-up: ${err.message}`);
        }
      }
    }
    for (let round = 0; round < options.runs; round++) {
      const order = names.map((_, i) => names[(i + round) % names.length]);
      if (round % 2 === 1) order.reverse();
      for (const name of order) {
        if (errors.has(name) || (once.has(name) && round > 0)) continue;
        try {
          const result = repetition(key, name, scenario.job);
          figures.get(name)[round] = scenario.figure(result);
          if (result.ms > SLOW_MS) once.add(name);
        } catch (err) {
          errors.set(name, err.message);
        }
      }
    }

    out();
    out(`### ${scenario.title}`);
    out();
    out(
      `| contender | ${scenario.unit} | vs node:net per request | vs node:net persistent | runs |`,
    );
    out('|---|--:|--:|--:|--:|');
    for (const name of names) {
      const mine = figures.get(name);
      const title = CONTENDERS.find((c) => c.name === name)?.title ?? name;
      if (errors.has(name)) {
        failed = true;
        out(`| ${title} | failed: ${errors.get(name).replaceAll('|', '/')} | | | |`);
        continue;
      }
      const base = (n) =>
        name === n ? '1' : format(pairedRatio(mine, figures.get(n) ?? [], scenario.higher));
      const count = mine.filter((v) => v !== undefined).length;
      out(
        `| ${title} | ${format(median(mine.filter((v) => v !== undefined)))} | ${base('net-per-request')} | ${base('net-persistent')} | ${count} |`,
      );
    }
  }
  out();
  out(
    `${((performance.now() - started) / 1000).toFixed(0)} s; load average ${loadavg()[0].toFixed(1)} at the end`,
  );
} catch (err) {
  failed = true;
  process.stderr.write(`bench:peers: ${err.stack ?? err}\n`);
} finally {
  await stopServers();
  rmSync(dir, { recursive: true, force: true });
}
if (options.out !== undefined) writeFileSync(options.out, `${lines.join('\n')}\n`);
if (failed) {
  process.stderr.write('bench:peers: a contender failed (see the table)\n');
  process.exitCode = 1;
}

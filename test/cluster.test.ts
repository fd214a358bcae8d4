import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import {
  ActiveState,
  getActiveState,
  isSimpleIpcError,
  sendCommand,
  startClusteredServer,
} from '../src/index.js';
import {
  delay,
  HAS_PROC,
  LIBRARY,
  runCli,
  runProcess,
  tempDir,
  test,
  until,
  writeModule,
} from './helpers.js';

// Each test has a deadline: a process that never answers must fail the test, not stall the run.

const CLI = new URL('../../bin/simple-ipc.js', import.meta.url).pathname;

// Answers `pid` with its process id and stops the whole server on `quit`. The others take a
// directory and leave a marker file in it (`<what>-<pid>-<n>`) as they start, so the test can
// see which process runs what, and wait for that instead of guessing with sleeps:
// - `barrier <dir>` blocks its process (which accepts nothing meanwhile) until two handlers are
//   in, so the second connection can only be taken by another process;
// - `until-stopped <dir>` runs until its own process has been told to stop;
// - `hang <dir>` runs until its client is cut off; `fail <dir>` throws;
// - `block <dir>` blocks its process until a file named `release` is in the directory.
const PID_HANDLER = `
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QUIT } from '${LIBRARY}';
const nap = new Int32Array(new SharedArrayBuffer(4));
let made = 0;
const mark = (dir, what) => writeFileSync(join(dir, what + '-' + process.pid + '-' + made++), '');
export default async (request, reply, context) => {
  const [text, dir] = request.toString().split(' ');
  if (text === 'quit') return QUIT;
  if (text === 'barrier') {
    mark(dir, 'in');
    const end = Date.now() + 20000;
    while (readdirSync(dir).length < 2) {
      if (Date.now() > end) return reply('alone');
      Atomics.wait(nap, 0, 0, 5);
    }
  } else if (text === 'until-stopped') {
    mark(dir, 'running');
    const end = Date.now() + 20000;
    while (!context.server.stopping) {
      if (Date.now() > end) return reply('never told to stop');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } else if (text === 'hang') {
    mark(dir, 'hanging');
    await new Promise((resolve) => context.signal.addEventListener('abort', resolve));
    return;
  } else if (text === 'fail') {
    mark(dir, 'failing');
    throw new Error('failed in ' + process.pid);
  } else if (text === 'block') {
    mark(dir, 'blocking');
    const end = Date.now() + 20000;
    while (!existsSync(join(dir, 'release')) && Date.now() < end) Atomics.wait(nap, 0, 0, 5);
  }
  await reply(String(process.pid));
};
`;

// A client process: sends each request once the directory named with it holds `after` files
// (a handler has started), without waiting for earlier answers; prints every answer (or error
// code) as JSON. Out of this process, so that it goes on while this one is blocked.
const CLIENTS = `
const { sendCommand } = await import(process.argv[1]);
const { readdirSync } = await import('node:fs');
const path = process.argv[2];
const steps = JSON.parse(process.argv[3]);
const answers = [];
for (const { request, dir, after } of steps) {
  const end = Date.now() + 20000;
  while (after && readdirSync(dir).length < after) {
    if (Date.now() > end) throw new Error('no handler started for ' + request);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  answers.push(
    sendCommand(path, request, { waitIfBusy: true, timeout: 20000 }).then(String, (err) => err.code),
  );
}
console.log(JSON.stringify(await Promise.all(answers)));
`;

interface Step {
  request: string;
  dir?: string;
  after?: number;
}

function clients(path: string, steps: Step[]): Promise<string[]> {
  return runProcess(
    process.execPath,
    ['--input-type=module', '-e', CLIENTS, LIBRARY, path, JSON.stringify(steps)],
    { timeoutMs: 40_000 },
  ).then((r) => {
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.toString()) as string[];
  });
}

// Blocks this process (it accepts and serves nothing meanwhile) until `check` holds.
function blockUntil(what: string, check: () => boolean, ms = 20_000): void {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    Atomics.wait(nap, 0, 0, 5);
  }
}

// A fresh directory for the marker files of one kind of request.
function markers(t: TestContext, name: string): string {
  const dir = join(tempDir(t), name);
  mkdirSync(dir);
  return dir;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// The children of `pid`: from /proc where there is one (Linux), else from ps (macOS, the BSDs).
function childrenOf(pid: number): number[] {
  if (!HAS_PROC) {
    // Without the ps itself, a child of this process while it ran.
    return execFileSync('ps', ['-A', '-o', 'pid=,ppid=,comm='], { encoding: 'latin1' })
      .trim()
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter(([, parent, command]) => Number(parent) === pid && command !== 'ps')
      .map(([child]) => Number(child));
  }
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      // Fields after the command name, which is in parentheses and may hold spaces.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

// Windows: a named pipe is served from one process only (Node passes no pipe server between
// processes there); the last test checks that more is refused clearly.
const onWindows =
  process.platform === 'win32' &&
  'Windows: a named pipe is served from one process only (Node cannot pass a pipe server to another process); see the test of that refusal';

// A clustered server of PID_HANDLER in 2 processes, destroyed after the test.
async function pidCluster(t: TestContext, threads: number) {
  const dir = tempDir(t);
  const module = writeModule(dir, 'pid.mjs', PID_HANDLER);
  const path = join(dir, 's');
  const server = await startClusteredServer(path, module, { processes: 2, threads });
  t.after(() => server.destroy());
  return { path, server };
}

// Many clients at once overflow the listen backlog: they wait while busy, for as long as a
// loaded machine needs (Git's 1 s default is not the point of these tests).
const pidOf = async (path: string, request: string, timeout = 30_000): Promise<number> =>
  Number((await sendCommand(path, request, { waitIfBusy: true, timeout })).toString());

test(
  'two processes serve one socket; QUIT from either stops both and removes it',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const { path, server } = await pidCluster(t, 2);
    // The first barrier request blocks the process that took it; the second is sent only then,
    // so another process must take it, and only then can both answer.
    const dir = markers(t, 'barrier');
    const answered = clients(path, [
      { request: `barrier ${dir}` },
      { request: `barrier ${dir}`, dir, after: 1 },
    ]);
    const pids = (await answered).map(Number);
    assert.notEqual(pids[0], pids[1], `answers: ${pids.join(', ')}`);
    assert.ok(pids.includes(process.pid), 'this process serves too');
    const child = pids.find((pid) => pid !== process.pid)!;
    assert.ok(childrenOf(process.pid).includes(child));

    // Many concurrent clients, every one answered by one of the two.
    const answers = await Promise.all(Array.from({ length: 200 }, () => pidOf(path, 'ping')));
    for (const pid of answers) assert.ok(pids.includes(pid));

    await sendCommand(path, 'quit', { waitIfBusy: true, timeout: 30_000 });
    await server.closed;
    assert.equal(server.stopReason?.kind, 'quit');
    assert.equal(existsSync(path), false);
    await until('the other process exits', () => !alive(child));
  },
);

test(
  'stop() lets a running request in another process finish, then all exit',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const { path, server } = await pidCluster(t, 4);
    // Three requests, sent while this process is blocked: the other process takes them all.
    // Each runs until its process has been told to stop.
    const dir = markers(t, 'running');
    const answered = clients(
      path,
      [1, 2, 3].map(() => ({ request: `until-stopped ${dir}` })),
    );
    blockUntil('three handlers running in the other process', () => readdirSync(dir).length === 3);
    const child = Number(readdirSync(dir)[0]!.split('-')[1]);
    assert.notEqual(child, process.pid);
    await server.stop();
    // Each saw its process told to stop, and still finished its response.
    assert.deepEqual(await answered, [String(child), String(child), String(child)]);
    assert.equal(existsSync(path), false);
    await until('the other process exits', () => !alive(child));
    assert.equal(await getActiveState(path), ActiveState.NOT_LISTENING);
  },
);

test(
  'stop() removes the socket once the other processes have exited, one slow to stop too',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const { path, server } = await pidCluster(t, 2);
    // Sent while this process is blocked: the other process takes it, and is blocked by it, so
    // it still listens on the socket after this process has closed its own listener.
    const dir = markers(t, 'blocking');
    const answered = clients(path, [{ request: `block ${dir}` }]);
    blockUntil('the other process to block', () => readdirSync(dir).length === 1);
    const child = Number(readdirSync(dir)[0]!.split('-')[1]);
    const stopped = server.stop();
    // Gives this process the chance to look at the socket while the other still listens: a
    // look then finds it answering and leaves it.
    await delay(300);
    writeFileSync(join(dir, 'release'), '');
    await stopped;
    assert.deepEqual(await answered, [String(child)]);
    assert.equal(existsSync(path), false, 'the socket is removed');
  },
);

test(
  "another process's handler errors reach onHandlerError; destroy() cuts its conversations",
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const dir = tempDir(t);
    const module = writeModule(dir, 'pid.mjs', PID_HANDLER);
    const path = join(dir, 's');
    const errors: unknown[] = [];
    const server = await startClusteredServer(path, module, {
      processes: 2,
      onHandlerError: (err) => errors.push(err),
    });
    t.after(() => server.destroy());
    const failing = markers(t, 'failing');
    const failed = clients(path, [{ request: `fail ${failing}` }]);
    blockUntil('the other process to take the request', () => readdirSync(failing).length === 1);
    const child = Number(readdirSync(failing)[0]!.split('-')[1]);
    assert.notEqual(child, process.pid);
    assert.deepEqual(await failed, ['ERR_IPC_TRUNCATED']);
    await until('the error to arrive', () => errors.length === 1);
    assert.match((errors[0] as Error).message, new RegExp(`failed in ${child}`));

    // destroy(): conversations running in the other process are cut at once (a stop() would
    // wait for these handlers forever).
    const hanging = markers(t, 'hanging');
    const cut = clients(
      path,
      [1, 2].map(() => ({ request: `hang ${hanging}` })),
    );
    blockUntil('two handlers hanging', () => readdirSync(hanging).length === 2);
    await server.destroy();
    for (const answer of await cut) assert.match(answer, /^ERR_IPC_(TRUNCATED|CONNECTION_CLOSED)$/);
    assert.equal(existsSync(path), false);
    await until('the other process exits', () => !alive(child));
  },
);

test(
  'the signal option stops every process of a clustered server',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const dir = tempDir(t);
    const module = writeModule(dir, 'pid.mjs', PID_HANDLER);
    const path = join(dir, 's');
    const controller = new AbortController();
    const server = await startClusteredServer(path, module, {
      processes: 2,
      signal: controller.signal,
    });
    t.after(() => server.destroy());
    const children = childrenOf(process.pid).filter((pid) => alive(pid));
    assert.equal(children.length, 1);
    assert.ok((await pidOf(path, 'ping')) > 0);
    controller.abort();
    await server.closed;
    assert.deepEqual(server.stopReason, { kind: 'requested' });
    assert.equal(existsSync(path), false);
    await until('the other process exits', () => !alive(children[0]!));
  },
);

test(
  'a process that dies is replaced; the server goes on answering',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const dir = tempDir(t);
    const module = writeModule(dir, 'pid.mjs', PID_HANDLER);
    const path = join(dir, 's');
    const lines: string[] = [];
    const server = await startClusteredServer(path, module, {
      processes: 2,
      debug: (line) => lines.push(line),
    });
    t.after(() => server.destroy());
    const [child] = childrenOf(process.pid).filter((pid) => alive(pid));
    assert.ok(child !== undefined);
    process.kill(child, 'SIGKILL');
    await until('a new process', () => {
      const now = childrenOf(process.pid).filter((pid) => pid !== child && alive(pid));
      return now.length === 1 && lines.some((line) => /a server process exited/.test(line));
    });
    for (let i = 0; i < 20; i++) assert.ok((await pidOf(path, 'ping')) > 0);
    await server.stop();
    await until('all children gone', () => childrenOf(process.pid).every((pid) => !alive(pid)));
  },
);

test(
  'clients that connect while the other processes load are all answered',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const dir = tempDir(t);
    // Slow to load in the other processes only: this one serves while they load.
    const module = writeModule(
      dir,
      'slow-load.mjs',
      `if (process.send) await new Promise((resolve) => setTimeout(resolve, 600));
     export default async (request, reply) => { await reply(String(process.pid)); };`,
    );
    const path = join(dir, 's');
    const starting = startClusteredServer(path, module, { processes: 2 });
    t.after(async () => (await starting).destroy());
    await until('the socket', () => existsSync(path));
    // Requests during the load and after it, until the server is up and 300 ms more. A process
    // that accepted a connection before it could serve it would leave that client waiting.
    let up = false;
    const ready = starting.then(() => delay(300)).then(() => (up = true));
    const answers: Promise<number>[] = [];
    while (!up) {
      answers.push(pidOf(path, 'ping', 5000));
      await delay(5);
    }
    await ready;
    const pids = await Promise.all(answers);
    assert.ok(pids.length > 50, `${pids.length} requests`);
    for (const pid of pids) assert.ok(pid > 0);
  },
);

test(
  'a handler module that cannot load: ERR_IPC_HANDLER_FAILED, nothing left behind',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 's');
    for (const [name, source] of [
      ['throws.mjs', 'throw new Error("broken module");'],
      ['nodefault.mjs', 'export const handler = () => "x";'],
    ] as const) {
      const module = writeModule(dir, name, source);
      await assert.rejects(startClusteredServer(path, module, { processes: 2 }), (err) =>
        isSimpleIpcError(err, 'ERR_IPC_HANDLER_FAILED'),
      );
      assert.equal(existsSync(path), false, name);
    }
    // A module that loads in this process but not in the others (it reads which one it is in).
    const module = writeModule(
      dir,
      'child-fails.mjs',
      `if (process.send) throw new Error('not in a child');
     export default () => 'x';`,
    );
    await assert.rejects(
      startClusteredServer(path, module, { processes: 3 }),
      (err) =>
        isSimpleIpcError(err, 'ERR_IPC_HANDLER_FAILED') && /not in a child/.test(err.message),
    );
    assert.equal(existsSync(path), false);
    await until('no children', () => childrenOf(process.pid).every((pid) => !alive(pid)));
    await assert.rejects(startClusteredServer(path, module, { processes: 0 }), (err) =>
      isSimpleIpcError(err, 'ERR_IPC_INVALID_ARGUMENT'),
    );
    await assert.rejects(
      startClusteredServer(path, 'https://example.com/handler.mjs', { processes: 2 }),
      (err) => isSimpleIpcError(err, 'ERR_IPC_INVALID_ARGUMENT'),
    );
    assert.equal(existsSync(path), false);
  },
);

// `signal` "stops the server"; startServer with an aborted signal resolves with a stopping
// server. A clustered server aborted while it starts must not report a handler module that
// loaded fine as ERR_IPC_HANDLER_FAILED, nor crash its other processes.
test(
  'startClusteredServer whose signal is aborted: no ERR_IPC_HANDLER_FAILED, no crashed process',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const dir = tempDir(t);
    const handler = join(dir, 'handler.mjs');
    writeFileSync(handler, `export default async (request, reply) => { await reply('ok'); };\n`);
    const script = join(dir, 'main.mjs');
    writeFileSync(
      script,
      `
import { startClusteredServer } from ${JSON.stringify(LIBRARY)};
import { join } from 'node:path';
const path = join(${JSON.stringify(dir)}, 's.sock');
let outcome;
try {
  const server = await startClusteredServer(path, ${JSON.stringify(handler)}, {
    processes: 3,
    signal: AbortSignal.abort(),
  });
  const late = setTimeout(() => { console.log('closed never resolved'); process.exit(3); }, 10000);
  await server.closed;
  clearTimeout(late);
  outcome = 'resolved';
} catch (err) {
  outcome = 'rejected ' + err.code + ': ' + err.message;
}
console.log('outcome: ' + outcome);
`,
    );
    const result = await runProcess(process.execPath, [script], { timeoutMs: 30_000 });
    const out = result.stdout.toString();
    assert.equal(result.code, 0, `${out}\n${result.stderr}`);
    assert.match(out, /outcome: (resolved|rejected ABORT_ERR)/, `got: ${out}`);
    // The other processes are ours too: none may die of an uncaught exception.
    assert.doesNotMatch(result.stderr, /TypeError|Uncaught|at #attach/, result.stderr);
  },
);

test(
  'a signal aborted while the other processes load: resolves stopping, every process exits',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const dir = tempDir(t);
    const loading = markers(t, 'loading');
    const gate = join(dir, 'gate');
    // Loads at once in this process; in the others it marks that it is loading, then waits for
    // a gate the test never opens (for 20 s at most, so that a broken stop cannot hang).
    const module = writeModule(
      dir,
      'slow.mjs',
      `import { existsSync, writeFileSync } from 'node:fs';
       import { join } from 'node:path';
       if (process.argv[1]?.endsWith('cluster-child.js')) {
         writeFileSync(join(${JSON.stringify(loading)}, String(process.pid)), '');
         const end = Date.now() + 20000;
         while (!existsSync(${JSON.stringify(gate)}) && Date.now() < end) {
           await new Promise((resolve) => setTimeout(resolve, 10));
         }
       }
       export default async (request, reply) => { await reply('ok'); };`,
    );
    const path = join(dir, 's');
    const controller = new AbortController();
    const starting = startClusteredServer(path, module, {
      processes: 3,
      signal: controller.signal,
    });
    await until('both other processes loading', () => readdirSync(loading).length === 2);
    const pids = readdirSync(loading).map(Number);
    controller.abort();
    const server = await starting;
    t.after(() => server.destroy());
    assert.equal(server.stopping, true);
    assert.equal(server.stopReason?.kind, 'requested');
    await server.closed;
    for (const pid of pids) assert.equal(alive(pid), false, `process ${pid} still runs`);
    assert.equal(existsSync(path), false);
    assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
  },
);

test(
  'CLI run-daemon --processes=2: Git-style clients, and the others leave when the first is killed',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'ipc');
    const daemon = spawn(process.execPath, [CLI, 'run-daemon', `--name=${path}`, '--processes=2'], {
      stdio: 'ignore',
    });
    let children: number[] = [];
    t.after(() => {
      daemon.kill('SIGKILL');
      for (const pid of children) if (alive(pid)) process.kill(pid, 'SIGKILL');
    });
    await until('the daemon listens', () => existsSync(path), 20_000);
    await until('its second process', () => childrenOf(daemon.pid!).length === 1, 20_000);
    children = childrenOf(daemon.pid!);
    const multiple = await runCli(['multiple', `--name=${path}`, '--threads=8', '--batchsize=50']);
    assert.equal(multiple.code, 0);
    assert.match(multiple.stdout.toString(), /client \(good 400\) \(join 0\), \(errors 0\)\n$/);
    const ping = await runCli(['send', `--name=${path}`, '--token=ping']);
    assert.equal(ping.stdout.toString(), 'pong\n');

    // The first process dies without a word: the others must not linger as orphans.
    daemon.kill('SIGKILL');
    await until('the second process exits', () => children.every((pid) => !alive(pid)));
  },
);

test(
  'Windows: one process by default, more refused before anything is created',
  { timeout: 60_000, skip: process.platform !== 'win32' && 'Windows only: named pipes' },
  async (t) => {
    const dir = tempDir(t);
    const module = writeModule(dir, 'pid.mjs', PID_HANDLER);
    const path = join(dir, 's');
    await assert.rejects(
      startClusteredServer(path, module, { processes: 2 }),
      (err) =>
        isSimpleIpcError(err, 'ERR_IPC_INVALID_ARGUMENT') &&
        err.message.startsWith('options.processes must be 1 on Windows, not 2'),
    );
    assert.equal(await getActiveState(path), 'path-not-found');
    const server = await startClusteredServer(path, module);
    t.after(() => server.destroy());
    assert.equal(await pidOf(path, 'ping'), process.pid);
    await sendCommand(path, 'quit');
    await server.closed;
    assert.equal(await getActiveState(path), 'path-not-found');
  },
);

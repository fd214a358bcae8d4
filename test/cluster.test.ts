import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import {
  ActiveState,
  getActiveState,
  isSimpleIpcError,
  sendCommand,
  startClusteredServer,
} from '../src/index.js';
import { delay, runCli, tempDir, test } from './helpers.js';

// Each test has a deadline: a process that never answers must fail the test, not stall the run.

// Handler modules are written to a temp dir; they reach the library by absolute URL, as an
// application's module would by package name.
const LIBRARY = new URL('../src/index.js', import.meta.url).href;
const CLI = new URL('../../bin/simple-ipc.js', import.meta.url).pathname;

// Answers `pid`, blocks its process for a while on `block` (so that the next connection must
// go to another process), and stops the whole server on `quit`.
const PID_HANDLER = `
import { QUIT } from '${LIBRARY}';
export default async (request, reply) => {
  const text = request.toString();
  if (text === 'quit') return QUIT;
  if (text === 'block') {
    const until = Date.now() + 400;
    while (Date.now() < until) {}
  }
  if (text === 'slow') await new Promise((resolve) => setTimeout(resolve, 500));
  await reply(String(process.pid));
};
`;

function writeModule(dir: string, name: string, source: string): string {
  const file = join(dir, name);
  writeFileSync(file, source);
  return file;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) assert.fail(`timed out waiting for: ${what}`);
    await delay(20);
  }
}

// The children of `pid`, from /proc (Linux).
function childrenOf(pid: number): number[] {
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

const pidOf = async (path: string, request: string, timeout?: number): Promise<number> =>
  Number((await sendCommand(path, request, { waitIfBusy: true, timeout })).toString());

test(
  'two processes serve one socket; QUIT from either stops both and removes it',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const { path, server } = await pidCluster(t, 2);
    // While one process is stuck in a handler, the other one takes the next connection.
    const first = pidOf(path, 'block');
    await delay(100);
    const second = await pidOf(path, 'ping');
    const blocked = await first;
    assert.notEqual(blocked, second);
    const pids = [blocked, second];
    assert.ok(pids.includes(process.pid), 'this process serves too');
    const child = pids.find((pid) => pid !== process.pid)!;
    assert.ok(childrenOf(process.pid).includes(child));

    // Many concurrent clients, every one answered by one of the two.
    const answers = await Promise.all(Array.from({ length: 200 }, () => pidOf(path, 'ping')));
    for (const pid of answers) assert.ok(pids.includes(pid));

    await sendCommand(path, 'quit', { waitIfBusy: true });
    await server.closed;
    assert.equal(server.stopReason?.kind, 'quit');
    assert.equal(existsSync(path), false);
    await waitUntil('the other process exits', () => !alive(child));
  },
);

test(
  'stop() lets a running request in another process finish, then all exit',
  { timeout: 60_000, skip: onWindows },
  async (t) => {
    const { path, server } = await pidCluster(t, 4);
    // Connect three clients, and keep this process busy meanwhile: the other one accepts them.
    const slow = [pidOf(path, 'slow'), pidOf(path, 'slow'), pidOf(path, 'slow')];
    const until = Date.now() + 300;
    while (Date.now() < until) {
      // busy: this process cannot accept
    }
    await delay(150);
    await server.stop();
    const served = await Promise.all(slow);
    const child = served[0]!;
    assert.notEqual(child, process.pid);
    assert.deepEqual(served, [child, child, child]);
    assert.equal(existsSync(path), false);
    await waitUntil('the other process exits', () => !alive(child));
    assert.equal(await getActiveState(path), ActiveState.NOT_LISTENING);
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
    await waitUntil('a new process', () => {
      const now = childrenOf(process.pid).filter((pid) => pid !== child && alive(pid));
      return now.length === 1 && lines.some((line) => /a server process exited/.test(line));
    });
    for (let i = 0; i < 20; i++) assert.ok((await pidOf(path, 'ping')) > 0);
    await server.stop();
    await waitUntil('all children gone', () => childrenOf(process.pid).every((pid) => !alive(pid)));
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
    await waitUntil('the socket', () => existsSync(path));
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
    await waitUntil('no children', () => childrenOf(process.pid).every((pid) => !alive(pid)));
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
    await waitUntil('the daemon listens', () => existsSync(path), 20_000);
    await waitUntil('its second process', () => childrenOf(daemon.pid!).length === 1, 20_000);
    children = childrenOf(daemon.pid!);
    const multiple = await runCli(['multiple', `--name=${path}`, '--threads=8', '--batchsize=50']);
    assert.equal(multiple.code, 0);
    assert.match(multiple.stdout.toString(), /client \(good 400\) \(join 0\), \(errors 0\)\n$/);
    const ping = await runCli(['send', `--name=${path}`, '--token=ping']);
    assert.equal(ping.stdout.toString(), 'pong\n');

    // The first process dies without a word: the others must not linger as orphans.
    daemon.kill('SIGKILL');
    await waitUntil('the second process exits', () => children.every((pid) => !alive(pid)));
  },
);

test(
  'Windows: one process by default, more refused before anything is created',
  { timeout: 60_000, skip: process.platform !== 'win32' && 'Windows only: named pipes' },
  async (t) => {
    const dir = tempDir(t);
    const module = writeModule(dir, 'pid.mjs', PID_HANDLER);
    const path = join(dir, 's');
    await assert.rejects(startClusteredServer(path, module, { processes: 2 }), (err) =>
      isSimpleIpcError(err, 'ERR_IPC_INVALID_ARGUMENT'),
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

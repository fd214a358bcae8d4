/**
 * Daemons on demand (src/daemon.ts): real processes started detached, racing starters, the coded
 * errors, the log file.
 */

import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { pathToFileURL } from 'node:url';
import {
  connectOrStart,
  getActiveState,
  isSimpleIpcError,
  type SimpleIpcError,
  sendCommand,
  startDaemon,
  startServer,
} from '../src/index.js';
import {
  delay,
  needsProc,
  ROOT,
  runProcess,
  socketGone,
  START_RACE_UNDER_WINE,
  tempDir,
  test,
  unixOnly,
  until,
} from './helpers.js';

const LIBRARY = pathToFileURL(join(ROOT, 'dist', 'src', 'index.js')).href;

// A daemon as an application writes one: it records what happens to it in $SIPC_EVENTS, answers
// `pid` with its pid and `cwd` with its working directory, stops on `quit` or SIGTERM, and exits
// when it loses the start-up race.
const DAEMON = `
import { appendFileSync } from 'node:fs';
import { QUIT, startServer, stopOnSignals } from ${JSON.stringify(LIBRARY)};
const note = (what) => appendFileSync(process.env.SIPC_EVENTS, what + ' ' + process.pid + '\\n');
note('start');
console.log('daemon ' + process.pid + ' here');
let server;
try {
  server = await startServer(process.env.SIPC_PATH, async (request, reply) => {
    const text = request.toString();
    if (text === 'quit') return QUIT;
    await reply(text === 'pid' ? String(process.pid) : text === 'cwd' ? process.cwd() : 'pong');
  });
} catch (err) {
  note('lost-' + err.code);
  process.exit(1);
}
stopOnSignals(server);
note('listening');
await server.closed;
note('stopped');
`;

// A client process: connect (starting the daemon if needed) and print the daemon's pid.
const CLIENT = `
import { connectOrStart } from ${JSON.stringify(LIBRARY)};
const path = process.env.SIPC_PATH;
const conn = await connectOrStart(path, {
  command: process.execPath,
  args: ['--input-type=module', '-e', process.env.SIPC_DAEMON],
  logFile: path + '.log',
  timeout: 20000,
});
process.stdout.write(await conn.send('pid'));
`;

interface Fixture {
  path: string;
  events: string;
  env: NodeJS.ProcessEnv;
}

function fixture(t: TestContext): Fixture {
  // Registered before tempDir's clean-up so that it runs first: whatever happens in the test,
  // no daemon outlives it.
  let events = '';
  t.after(() => {
    for (const line of readEvents(events)) if (line.what === 'start') kill(line.pid);
  });
  const dir = tempDir(t);
  const path = join(dir, 'd.sock');
  events = join(dir, 'events');
  writeFileSync(events, '');
  const env = { ...process.env, SIPC_PATH: path, SIPC_EVENTS: events, SIPC_DAEMON: DAEMON };
  return { path, events, env };
}

function daemonOptions(f: Fixture, extra: { timeout?: number; logFile?: string } = {}) {
  return {
    command: process.execPath,
    args: ['--input-type=module', '-e', DAEMON],
    env: f.env,
    timeout: 20_000,
    ...extra,
  };
}

function readEvents(file: string): { what: string; pid: number }[] {
  if (file === '' || !existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [what, pid] = line.split(' ');
      return { what: what!, pid: Number(pid) };
    });
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

test(
  '10 concurrent client processes start one server and all get answers',
  {
    skip: START_RACE_UNDER_WINE,
  },
  async (t) => {
    const f = fixture(t);
    const clients = Array.from({ length: 10 }, () =>
      runProcess(process.execPath, ['--input-type=module', '-e', CLIENT], {
        env: { ...f.env, SIPC_DAEMON: DAEMON },
      }),
    );
    const results = await Promise.all(clients);
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const answers = new Set(results.map((r) => r.stdout.toString()));
    assert.equal(answers.size, 1, `one server answered everyone: ${[...answers].join(', ')}`);
    const winner = Number([...answers][0]);

    const events = (): { what: string; pid: number }[] => readEvents(f.events);
    assert.deepEqual(
      events()
        .filter((e) => e.what === 'listening')
        .map((e) => e.pid),
      [winner],
    );
    // Every other daemon that was spawned lost the race and exited.
    const started = events().filter((e) => e.what === 'start');
    t.diagnostic(`${started.length} daemon process(es) spawned for 10 clients`);
    await until('the losers to exit', () => {
      const ended = new Set(
        events()
          .filter((e) => e.what.startsWith('lost'))
          .map((e) => e.pid),
      );
      return started.every((e) => e.pid === winner || ended.has(e.pid));
    });
    for (const e of events()) {
      if (e.what.startsWith('lost')) assert.match(e.what, /ERR_IPC_IN_USE|ERR_IPC_LOCKED/);
    }
    // The one survivor still serves.
    assert.equal((await sendCommand(f.path, 'pid')).toString(), String(winner));
    // Stop it. A daemon spawned late (its client was answered before it even booted) may still
    // start and, once the winner is gone, rightly become the server: stop whichever serves until
    // every daemon has ended and the socket is gone.
    // On time-out: what each daemon did, what is left at the path, and what they printed.
    const situation = (): string => {
      const log = existsSync(`${f.path}.log`) ? readFileSync(`${f.path}.log`, 'utf8') : 'none';
      const left = readdirSync(dirname(f.path)).join(', ');
      return `events: ${JSON.stringify(events())}; in the directory: ${left}; log: ${log}`;
    };
    await until(
      () => `every daemon to end (${situation()})`,
      async () => {
        if ((await getActiveState(f.path)) === 'listening') {
          await sendCommand(f.path, 'quit').catch(() => undefined);
        }
        const all = events();
        const ended = new Set(
          all.filter((e) => e.what.startsWith('lost') || e.what === 'stopped').map((e) => e.pid),
        );
        return (
          all.filter((e) => e.what === 'start').every((e) => ended.has(e.pid)) &&
          (await socketGone(f.path))
        );
      },
    );
  },
);

test('concurrent callers in one process share one start', async (t) => {
  const f = fixture(t);
  const connections = await Promise.all(
    Array.from({ length: 5 }, () => connectOrStart(f.path, daemonOptions(f))),
  );
  const answers = await Promise.all(connections.map((c) => c.send('ping')));
  assert.deepEqual(
    answers.map((a) => a.toString()),
    Array(5).fill('pong'),
  );
  assert.equal(readEvents(f.events).filter((e) => e.what === 'start').length, 1);
  // A caller finding the server up spawns nothing.
  const again = await connectOrStart(f.path, daemonOptions(f));
  assert.equal((await again.send('ping')).toString(), 'pong');
  assert.equal(readEvents(f.events).filter((e) => e.what === 'start').length, 1);
  await sendCommand(f.path, 'quit');
  await until('the socket to go', () => socketGone(f.path));
});

test('startDaemon: what the daemon prints goes to the log file; it stops on SIGTERM', async (t) => {
  const f = fixture(t);
  const logFile = `${f.path}.log`;
  const { pid } = await startDaemon(f.path, daemonOptions(f, { logFile }));
  assert.equal((await sendCommand(f.path, 'pid')).toString(), String(pid));
  await until('the log line', () => readFileSync(logFile, 'utf8').includes(`daemon ${pid} here`));
  // The server answers as soon as it listens, which can be before the daemon's next line has set
  // its signal handlers: wait for the daemon to say it has, or SIGTERM would kill it outright.
  await until('the signal handlers', () =>
    readEvents(f.events).some((e) => e.what === 'listening'),
  );
  // SIGTERM on Unix (the daemon stops gracefully); on Windows a signal ends a process at once.
  if (process.platform === 'win32') await sendCommand(f.path, 'quit');
  else process.kill(pid, 'SIGTERM');
  await until('the daemon to stop', () => readEvents(f.events).some((e) => e.what === 'stopped'));
  await until('the socket to go', () => socketGone(f.path));
});

// pid, process group and session of a process, from /proc (Linux).
function procIds(pid: number): { ppid: number; pgrp: number; session: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[1]), pgrp: Number(fields[2]), session: Number(fields[3]) };
}

test('startDaemon: the daemon has a session of its own, runs in cwd, and outlives its starter', async (t) => {
  const f = fixture(t);
  const work = join(f.path, '..', 'work');
  mkdirSync(work);
  // A starter process that starts the daemon in `work` and exits at once.
  const starter = `
      import { startDaemon } from ${JSON.stringify(LIBRARY)};
      const { pid } = await startDaemon(process.env.SIPC_PATH, {
        command: process.execPath,
        args: ['--input-type=module', '-e', process.env.SIPC_DAEMON],
        cwd: process.argv[1],
        timeout: 20000,
      });
      console.log(pid);`;
  const r = await runProcess(process.execPath, ['--input-type=module', '-e', starter, work], {
    env: f.env,
  });
  assert.equal(r.code, 0, r.stderr);
  const pid = Number(r.stdout.toString());
  assert.ok(pid > 0);
  // The starter is gone; the daemon still serves.
  assert.equal((await sendCommand(f.path, 'pid')).toString(), String(pid));
  assert.equal(realpathSync((await sendCommand(f.path, 'cwd')).toString()), realpathSync(work));
  await t.test(
    'a session and a process group of its own',
    {
      skip:
        unixOnly('sessions and process groups') ||
        needsProc('the process group and session of another process'),
    },
    () => {
      const ids = procIds(pid);
      const ours = procIds(process.pid);
      // setsid(): leader of a new session and process group, so a Ctrl-C or a hang-up meant
      // for the starter's terminal job never reaches it.
      assert.equal(ids.session, pid, 'a session of its own');
      assert.equal(ids.pgrp, pid, 'a process group of its own');
      assert.notEqual(ids.pgrp, ours.pgrp);
      assert.notEqual(ids.ppid, process.pid);
    },
  );
  await sendCommand(f.path, 'quit');
  await until('the daemon to stop', () => readEvents(f.events).some((e) => e.what === 'stopped'));
});

test('startDaemon: a daemon that exits before listening is ERR_IPC_DAEMON_TERMINATED', async (t) => {
  const dir = tempDir(t);
  const logFile = join(dir, 'log');
  await assert.rejects(
    startDaemon(join(dir, 's'), {
      command: process.execPath,
      args: ['-e', 'console.error("cannot start"); process.exit(3)'],
      logFile,
    }),
    (err: SimpleIpcError) => {
      assert.equal(err.code, 'ERR_IPC_DAEMON_TERMINATED');
      assert.match(err.message, /exited with code 3/);
      assert.ok(err.message.includes(logFile), 'the message points at the log');
      return true;
    },
  );
  assert.match(readFileSync(logFile, 'utf8'), /cannot start/);
});

test('startDaemon: a daemon that does not listen in time is ERR_IPC_DAEMON_NOT_ONLINE', async (t) => {
  const dir = tempDir(t);
  const pidFile = join(dir, 'pid');
  // It records its pid and would stop by itself after 20 s; the test kills it first.
  const script = `require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setTimeout(() => {}, 20000);`;
  t.after(() => {
    if (existsSync(pidFile)) kill(Number(readFileSync(pidFile, 'utf8')));
  });
  await assert.rejects(
    startDaemon(join(dir, 's'), { command: process.execPath, args: ['-e', script], timeout: 300 }),
    (err: SimpleIpcError) =>
      err.code === 'ERR_IPC_DAEMON_NOT_ONLINE' && /left running/.test(err.message),
  );
  // The same wait, aborted instead: ABORT_ERR.
  const controller = new AbortController();
  const waiting = startDaemon(join(dir, 's2'), {
    command: process.execPath,
    args: ['-e', 'setTimeout(() => {}, 2000)'],
    signal: controller.signal,
  });
  // An abort in the middle of the wait (the timer is the scenario).
  setTimeout(() => controller.abort(), 100);
  await assert.rejects(waiting, (err: SimpleIpcError) => err.code === 'ABORT_ERR');
});

// An abort while startDaemon first looks at the path: the caller has given up, so no daemon may
// be spawned (the look used to report "not listening" as if nothing had happened).
test('startDaemon aborted before it spawns: ABORT_ERR, and no process is spawned', async (t) => {
  const dir = tempDir(t);
  const logFile = join(dir, 'log');
  const controller = new AbortController();
  const starting = startDaemon(join(dir, 's'), {
    command: process.execPath,
    args: ['-e', 'setTimeout(() => {}, 2000)'],
    logFile,
    signal: controller.signal,
  });
  controller.abort();
  await assert.rejects(starting, { code: 'ABORT_ERR' });
  // The log file is opened just before the spawn.
  assert.equal(existsSync(logFile), false, 'a daemon was spawned after the abort');
});

test('startDaemon: ERR_IPC_DAEMON_FAILED for a missing program or an unusable path', async (t) => {
  const dir = tempDir(t);
  await assert.rejects(
    startDaemon(join(dir, 's'), { command: join(dir, 'no-such-program') }),
    (err: SimpleIpcError) => err.code === 'ERR_IPC_DAEMON_FAILED' && /cannot run/.test(err.message),
  );
  await assert.rejects(
    startDaemon(join(dir, 's'), { command: process.execPath, logFile: join(dir, 'nope', 'log') }),
    (err: SimpleIpcError) => err.code === 'ERR_IPC_DAEMON_FAILED' && /log file/.test(err.message),
  );
  // A regular file at the path: refused before anything is spawned (a pipe name ignores files).
  if (process.platform === 'win32') return;
  const file = join(dir, 'file');
  writeFileSync(file, 'precious');
  const marker = join(dir, 'spawned');
  const options = {
    command: process.execPath,
    args: ['-e', `require('fs').writeFileSync(${JSON.stringify(marker)}, '')`],
  };
  await assert.rejects(startDaemon(file, options), (err: unknown) =>
    isSimpleIpcError(err, 'ERR_IPC_DAEMON_FAILED'),
  );
  // connectOrStart finds out at its first connect: the path is invalid, no daemon would help.
  await assert.rejects(connectOrStart(file, options), (err: unknown) =>
    isSimpleIpcError(err, 'ERR_IPC_INVALID_PATH'),
  );
  // Nothing may happen: a process spawned despite the refusal would write the marker within
  // this time. A fixed wait is the only way to see an absence.
  await delay(200);
  assert.equal(existsSync(marker), false, 'nothing was spawned');
  assert.equal(readFileSync(file, 'utf8'), 'precious');
});

test('connectOrStart connects to a running server without starting anything', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's');
  const server = await startServer(path, (_request, reply) => reply('here'));
  t.after(() => server.destroy());
  const connection = await connectOrStart(path, { command: join(dir, 'no-such-program') });
  assert.equal((await connection.send('x')).toString(), 'here');
});

/**
 * Abuse of a real `run-daemon --threads=8` process: garbage, stalled and vanishing clients,
 * load, descriptor exhaustion, huge requests. Each test ends by checking that the daemon is
 * healthy, answers a ping promptly, and kept its stderr quiet. Where a test counts what the
 * server saw, it serves the daemon's handler in this process, to read the server's stats.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testDaemon } from '../cli/test-daemon.js';
import { connect, sendCommand, startServer } from '../src/index.js';
import {
  CLI,
  CLOSED_UNANSWERED,
  delay,
  FULL_BACKLOG_ERROR,
  killAndWait,
  listeningBy,
  needsProc,
  PROCESS_SLOWNESS,
  rawConnect,
  rawExchange,
  tempDir,
  test,
  unixOnly,
  until,
} from './helpers.js';

// The daemon's peak memory and CPU time are read from /proc.
const withProc = needsProc("another process's peak memory");

interface Daemon {
  path: string;
  child: ChildProcess;
  stderr(): string;
  /** Peak resident set size of the daemon so far, in bytes (Linux). */
  peakRss(): number;
  /** User + system CPU time of the daemon so far, in ms (Linux). */
  cpuMs(): number;
}

async function startDaemon(
  t: import('node:test').TestContext,
  options: { threads?: number; fdLimit?: number; debug?: boolean } = {},
): Promise<Daemon> {
  // Not tempDir(): the daemon must be gone before its directory is removed.
  const dir = mkdtempSync(join(tmpdir(), 'sipc-'));
  const path = join(dir, 'ipc');
  const args = [CLI, 'run-daemon', `--name=${path}`, `--threads=${options.threads ?? 8}`];
  // SIMPLE_IPC_DEBUG=1: the daemon tells on stderr about each bad client and failed accept.
  const env = { ...process.env, SIMPLE_IPC_DEBUG: options.debug === true ? '1' : '0' };
  const child =
    options.fdLimit === undefined
      ? spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env })
      : spawn(
          'sh',
          ['-c', `ulimit -n ${options.fdLimit} && exec "$0" "$@"`, process.execPath, ...args],
          { stdio: ['ignore', 'ignore', 'pipe'], env },
        );
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  t.after(async () => {
    try {
      await killAndWait(child);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  await listeningBy(path, child, () => stderr);
  const status = (): string => readFileSync(`/proc/${child.pid}/status`, 'utf8');
  return {
    path,
    child,
    stderr: () => stderr,
    peakRss: () => Number(/VmHWM:\s+(\d+) kB/.exec(status())![1]) * 1024,
    cpuMs: () => {
      const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks at 100 Hz
    },
  };
}

/**
 * The daemon is alive, answers ping within `ms`, and said nothing on stderr (but for the lines
 * `expected` matches, when it runs with debug lines on).
 */
async function assertHealthy(daemon: Daemon, ms = 250, expected?: RegExp): Promise<void> {
  assert.equal(daemon.child.exitCode, null, 'daemon still running');
  // After a burst of connections the listen queue may still be full (the daemon has not accepted
  // them all yet), and a connect then fails with EAGAIN unless it waits as Git's blocking connect
  // would: one ping that waits, so that the timed ones below start once the burst is accepted.
  assert.equal((await sendCommand(daemon.path, 'ping', { waitIfBusy: true })).toString(), 'pong');
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    assert.equal((await sendCommand(daemon.path, 'ping')).toString(), 'pong');
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  assert.ok(times[2]! < ms, `ping median ${times[2]!.toFixed(1)} ms`);
  const unexpected = daemon
    .stderr()
    .split('\n')
    .filter((line) => line !== '' && !(expected?.test(line) ?? false));
  assert.deepEqual(unexpected, [], 'stderr stays quiet');
}

// A small deterministic generator for random bytes.
function randomBytes(seed: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

test('bad framing and garbage: closed without an answer, nothing on stderr', async (t) => {
  const daemon = await startDaemon(t);
  const bad = [
    'zzzz',
    '+008ping0000',
    '-008ping0000',
    ' 008ping0000',
    '0x08ping0000',
    '0001',
    '0002',
    '0003',
    'fff1',
    'ffff',
    '0008ping00010000',
    '0008ping00020000',
    '00',
    '0008pi',
    '0008ping',
  ].map((s): Buffer => Buffer.from(s));
  for (let seed = 1; seed <= 40; seed++) bad.push(randomBytes(seed, 1 + ((seed * 37) % 300)));
  for (const bytes of bad) {
    const { response } = await rawExchange(daemon.path, bytes, { end: true });
    assert.equal(response.length, 0, `no answer to ${JSON.stringify(bytes.toString('latin1'))}`);
  }
  await assertHealthy(daemon);
});

test('hundreds of stalled clients do not delay a well-behaved one', async (t) => {
  const daemon = await startDaemon(t);
  const stalled = [];
  for (let i = 0; i < 300; i++) {
    const socket = await rawConnect(daemon.path);
    socket.on('error', () => {});
    if (i % 3 === 1) socket.write('0010half');
    if (i % 3 === 2) socket.write(`0100${'x'.repeat(100)}`);
    stalled.push(socket);
  }
  await assertHealthy(daemon, 50);
  for (const socket of stalled) socket.destroy();
  await assertHealthy(daemon);
});

test('vanishing clients: each counted, no handler left running, the server still answers', async (t) => {
  // The test daemon's own handler, served in this process so that its stats can be read.
  const path = join(tempDir(t), 's');
  let handlersFailed = 0;
  let handlersFinished = 0;
  const server = await startServer(
    path,
    {
      async stream(request, reply, context) {
        try {
          const result = await testDaemon.stream(request, reply, context);
          handlersFinished++;
          return result;
        } catch (err) {
          handlersFailed++;
          throw err;
        }
      },
    },
    { threads: 8 },
  );
  t.after(() => server.destroy());
  const gone: Promise<unknown>[] = [];
  const requestBytes = { big: 11, cut: 18, slow: 12 };
  for (let i = 0; i < 30; i++) {
    // Asks for a large answer (810,000 bytes, more than the socket buffers) and hangs up
    // without reading it.
    gone.push(
      rawConnect(path).then((s) => {
        s.on('error', () => {});
        s.write('0007big0000', () => s.destroy());
      }),
    );
    // Hangs up in the middle of its request (a packet of 0x1000 bytes, 14 of them sent).
    gone.push(
      rawConnect(path).then((s) => {
        s.on('error', () => {});
        s.write('1000sendbytes xxxx', () => s.destroy());
      }),
    );
    // Reads a little of a slow answer (1000 rows, 10 ms apart), then hangs up.
    gone.push(
      rawConnect(path).then(async (s) => {
        s.on('error', () => {});
        s.write('0008slow0000');
        await once(s, 'data');
        s.destroy();
      }),
    );
  }
  await Promise.all(gone);
  await until(
    'every vanished client to be done with',
    () => {
      const stats = server.stats();
      return stats.connections === 90 && stats.queued === 0 && stats.running === 0;
    },
    15_000 * PROCESS_SLOWNESS,
  );
  const stats = server.stats();
  // The 60 whole requests: each reached the handler and ended in a failed reply (none
  // finished: a `slow` handler left running would take 10 s), or was dropped unanswered when
  // its client left while it waited for a free handler (which of the two, for a `big` client,
  // is timing; named pipes report the hang-up sooner). The 30 `slow` clients hang up only
  // once they have an answer: theirs all ran. The 30 cut ones never reached the handler.
  assert.equal(stats.requests + stats.dropped, 60, 'every whole request ran or was dropped');
  assert.ok(stats.requests >= 30, `${stats.requests} requests ran`);
  assert.deepEqual(
    {
      clientGone: stats.clientGone,
      badRequests: stats.badRequests,
      responses: stats.responses,
      handlerErrors: stats.handlerErrors,
      rejected: stats.rejected,
      timeouts: stats.timeouts,
      bytesIn: stats.bytesIn,
      handlersFailed,
      handlersFinished,
    },
    {
      clientGone: stats.requests,
      badRequests: 30,
      responses: 0,
      handlerErrors: 0,
      rejected: 0,
      timeouts: 0,
      bytesIn: 30 * (requestBytes.big + requestBytes.cut + requestBytes.slow),
      handlersFailed: stats.requests,
      handlersFinished: 0,
    },
  );

  assert.equal((await sendCommand(path, 'ping')).toString(), 'pong');
  assert.equal(server.stats().responses, 1);
  assert.equal(handlersFinished, 1);
});

test('a 1 GiB streamed request costs the daemon little memory', { skip: withProc }, async (t) => {
  const daemon = await startDaemon(t);
  await sendCommand(daemon.path, 'sendbytes warm-up');
  const before = daemon.peakRss();
  const block = Buffer.alloc(1 << 20, 0x51);
  const size = 1 << 30;
  function* request() {
    yield Buffer.from('sendbytes ');
    for (let sent = 0; sent < size; sent += block.length) yield block;
  }
  const answer = await sendCommand(daemon.path, request());
  assert.equal(answer.toString(), `rcvd:Q${size}\n`);
  const grew = daemon.peakRss() - before;
  assert.ok(grew < 100 * 1024 * 1024, `peak RSS grew by ${(grew / 1048576).toFixed(1)} MiB`);
  await assertHealthy(daemon);
});

test('the test daemon accepts a 100 MB request of any kind', async (t) => {
  const daemon = await startDaemon(t);
  const ballast = Buffer.alloc(100_000_000, 0x7a);
  const answer = await sendCommand(
    daemon.path,
    Buffer.concat([Buffer.from('sendbytes '), ballast]),
  );
  assert.equal(answer.toString(), 'rcvd:z100000000\n');
  const echo = await sendCommand(daemon.path, ballast as Buffer);
  assert.equal(echo.length, 'unhandled command: '.length + ballast.length);
  await assertHealthy(daemon);
});

test('1,000 concurrent clients within the queue limits are all answered', async (t) => {
  const daemon = await startDaemon(t, { threads: 10 });
  const answers = await Promise.all(
    Array.from({ length: 1000 }, (_, i) =>
      sendCommand(daemon.path, `sendbytes ${'ab'[i % 2]!.repeat(1 + (i % 50))}`, {
        waitIfBusy: true,
        timeout: 20_000,
      }),
    ),
  );
  answers.forEach((answer, i) => {
    assert.equal(
      answer.toString(),
      `rcvd:${'ab'[i % 2]}${String(1 + (i % 50)).padStart(8, '0')}\n`,
    );
  });
  await assertHealthy(daemon);
});

test(
  'running out of file descriptors is survived without a busy loop',
  { skip: unixOnly('descriptor limits (ulimit -n)') || needsProc('CPU time and open descriptors') },
  async (t) => {
    // 64 descriptors, some taken by Node itself: well below the 120 clients that connect.
    const limit = 64;
    const daemon = await startDaemon(t, { fdLimit: limit, debug: true });
    const openDescriptors = (): number => readdirSync(`/proc/${daemon.child.pid}/fd`).length;
    const held: Socket[] = [];
    t.after(() => held.forEach((socket) => socket.destroy()));
    let refused = 0;
    let cut = 0;
    for (let i = 0; i < 120; i++) {
      // One attempt each: a connect either lands (accepted, or queued in the listen backlog) or
      // is refused once the backlog is full (EAGAIN on Linux, ECONNREFUSED on macOS and the
      // BSDs). Any other error fails the test.
      const socket = netConnect({ path: daemon.path });
      held.push(socket);
      socket.on('close', () => cut++);
      const outcome = await new Promise<string>((resolve) => {
        socket.once('connect', () => resolve('connected'));
        socket.once('error', (err: Error & { code?: string }) => resolve(err.code ?? err.message));
      });
      if (outcome === FULL_BACKLOG_ERROR) refused++;
      else assert.equal(outcome, 'connected');
    }
    // The daemon really ran out: every descriptor it may have is open. (Out of descriptors,
    // libuv accepts and closes waiting connections with a spare one it keeps, so the clients
    // past the limit are hung up on without a word, and no accept error need reach the server.)
    await until('the daemon to hold all its descriptors', () => openDescriptors() >= limit - 1);
    await until('a client past the limit to be hung up on', () => cut > 0);
    t.diagnostic(
      `${openDescriptors()} of ${limit} descriptors open; ${refused} of 120 connects refused, ${cut} cut`,
    );
    // Out of descriptors, it does not spin.
    const cpuBefore = daemon.cpuMs();
    await delay(1000);
    const spent = daemon.cpuMs() - cpuBefore;
    assert.ok(spent < 500, `daemon used ${spent} ms of CPU in 1 s while out of descriptors`);
    for (const socket of held) socket.destroy();
    // Once the clients leave it serves again, and said nothing but failed accepts, if any.
    await assertHealthy(daemon, 250, /^simple-ipc: accept failed: .*EMFILE/);
    await until('the descriptors to be given back', () => openDescriptors() < limit - 10);
  },
);

test('a whole-request server refuses an oversized request early, a streamed response costs little', async (t) => {
  const path = join(tempDir(t), 's');
  const block = Buffer.alloc(1 << 20, 9);
  const server = await startServer(
    path,
    async (request, reply) => {
      if (request.toString() !== 'stream') return;
      for (let i = 0; i < 512; i++) await reply(block);
    },
    { maxRequestSize: 1 << 20 },
  );
  t.after(() => server.destroy());
  function* huge() {
    for (let i = 0; i < 1024; i++) yield block;
  }
  await assert.rejects(sendCommand(path, huge()), CLOSED_UNANSWERED);
  assert.ok(server.stats().bytesIn < 64 << 20, 'the server stopped reading early');

  const rssBefore = process.memoryUsage().rss;
  const connection = await connect(path);
  let total = 0;
  for await (const piece of connection.stream('stream')) total += piece.length;
  assert.equal(total, 512 << 20);
  const grew = process.memoryUsage().rss - rssBefore;
  assert.ok(grew < 100 * 1024 * 1024, `RSS grew by ${(grew / 1048576).toFixed(1)} MiB`);
});

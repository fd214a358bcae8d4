/**
 * A smoke run for runtimes other than Node's test runner can drive (Bun, Deno), and for Node
 * itself: the library's main paths and the CLI, end to end, on real sockets in a temp dir.
 *
 *   node dist/test/smoke/runtimes.js
 *   bun dist/test/smoke/runtimes.js
 *   deno run -A dist/test/smoke/runtimes.js
 *
 * It imports the built library the way a user's code would (the package's entry file), prints a
 * line per check and closes with `N passed, N failed`; the exit code is 1 if any check failed.
 * Every check has a deadline, and every server and process it starts is stopped.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { AsyncLocalStorage } from 'node:async_hooks';
import diagnosticsChannel from 'node:diagnostics_channel';
import {
  ActiveState,
  DiagnosticsChannel,
  getActiveState,
  QUIT,
  sendCommand,
  startServer,
} from '../../src/index.js';

const CLI = fileURLToPath(new URL('../../../bin/simple-ipc.js', import.meta.url));
const DEADLINE_MS = 20_000;

/** The runtime's name and version, as it reports itself. */
function runtime(): string {
  const versions = process.versions as Record<string, string | undefined>;
  if (versions.bun !== undefined) return `Bun ${versions.bun}`;
  if (versions.deno !== undefined) return `Deno ${versions.deno}`;
  return `Node ${process.version}`;
}

/** How to start the CLI with this same runtime. */
function cliCommand(args: readonly string[]): [string, string[]] {
  const deno = (process.versions as Record<string, string | undefined>).deno !== undefined;
  return [process.execPath, deno ? ['run', '-A', CLI, ...args] : [CLI, ...args]];
}

/** Runs the CLI to its end and gives its exit code and output. */
function runCli(args: readonly string[]): Promise<{ code: number | null; stdout: string }> {
  const [command, argv] = cliCommand(args);
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout }));
  });
}

/** Polls `probe` until it is true, or fails after `ms`. */
async function until(what: string, probe: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const dir = mkdtempSync(join(tmpdir(), 'sipc-smoke-'));
const cleanups: (() => unknown)[] = [];
let passed = 0;
let failed = 0;

/** Runs one check with a deadline and reports it; its clean-ups run whatever happens. */
async function check(name: string, body: () => Promise<void>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no result in ${DEADLINE_MS} ms`)), DEADLINE_MS);
  });
  try {
    await Promise.race([body(), deadline]);
    passed++;
    console.log(`ok - ${name}`);
  } catch (error) {
    failed++;
    console.log(`not ok - ${name}\n  ${String((error as Error)?.stack ?? error)}`);
  } finally {
    clearTimeout(timer);
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch {
        // Clean-up is best effort; the check's own result has been reported.
      }
    }
  }
}

console.log(`simple-ipc smoke run on ${runtime()} (${process.platform}-${process.arch})`);

await check('a round trip: server, client, stop', async () => {
  const path = join(dir, 'round-trip');
  const server = await startServer(path, async (request, reply) => {
    await reply(`echo: ${request.toString()}`);
  });
  cleanups.push(() => server.destroy());
  assert.equal((await sendCommand(path, 'hello')).toString(), 'echo: hello');
  await server.stop();
  await server.closed;
  assert.equal(existsSync(path), false, 'the socket is removed');
});

await check('a reply in 2,000 chunks arrives whole and in order', async () => {
  const path = join(dir, 'chunks');
  const server = await startServer(path, async (_request, reply) => {
    for (let i = 0; i < 2000; i++) await reply(`${i},`);
  });
  cleanups.push(() => server.destroy());
  const expected = Array.from({ length: 2000 }, (_unused, i) => `${i},`).join('');
  assert.equal((await sendCommand(path, 'go')).toString(), expected);
});

await check(
  'a streamed request of 8 MiB reaches a streaming handler in bounded pieces',
  async () => {
    const path = join(dir, 'stream');
    let largest = 0;
    const server = await startServer(path, {
      async stream(request, reply) {
        let bytes = 0;
        for await (const piece of request) {
          bytes += piece.length;
          largest = Math.max(largest, piece.length);
        }
        await reply(`received ${bytes}`);
      },
    });
    cleanups.push(() => server.destroy());
    const piece = Buffer.alloc(64 * 1024, 0x61);
    async function* pieces(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 128; i++) {
        await new Promise((resolve) => setImmediate(resolve)); // a producer that takes its time
        yield piece;
      }
    }
    assert.equal((await sendCommand(path, pieces())).toString(), `received ${8 * 1024 * 1024}`);
    assert.ok(largest <= 65516, `pieces are at most one packet (largest ${largest})`);
  },
);

await check('the active-state probe: nothing there, listening, then gone', async () => {
  const path = join(dir, 'probe');
  // Git's rule: a missing socket file is not-listening; a missing Windows pipe, path-not-found.
  const absent =
    process.platform === 'win32' ? ActiveState.PATH_NOT_FOUND : ActiveState.NOT_LISTENING;
  assert.equal(await getActiveState(path), absent);
  const server = await startServer(path, async (_request, reply) => reply('x'));
  cleanups.push(() => server.destroy());
  assert.equal(await getActiveState(path), ActiveState.LISTENING);
  await server.stop();
  await server.closed;
  assert.equal(await getActiveState(path), absent);
});

await check('QUIT: the client gets its answer, then the server stops', async () => {
  const path = join(dir, 'quit');
  const server = await startServer(path, async (request, reply) => {
    await reply('bye');
    return request.toString() === 'quit' ? QUIT : undefined;
  });
  cleanups.push(() => server.destroy());
  assert.equal((await sendCommand(path, 'quit')).toString(), 'bye');
  await server.closed;
  assert.deepEqual(server.stopReason, { kind: 'quit' });
  assert.equal(existsSync(path), false);
});

await check(
  'the diagnostics channels fire, and a store bound to start reaches the handler',
  async () => {
    const path = join(dir, 'diagnostics');
    const events: string[] = [];
    const on = (name: string) => (message: unknown) => {
      if ((message as { path?: string }).path === path) events.push(name);
    };
    const tracing = (name: string) => ({
      start: on(`${name} start`),
      end: on(`${name} end`),
      asyncStart: on(`${name} asyncStart`),
      asyncEnd: on(`${name} asyncEnd`),
      error: on(`${name} error`),
    });
    const server = diagnosticsChannel.tracingChannel(DiagnosticsChannel.SERVER_REQUEST);
    const client = diagnosticsChannel.tracingChannel(DiagnosticsChannel.CLIENT_REQUEST);
    const serverHandlers = tracing('server');
    const clientHandlers = tracing('client');
    const onListening = on('listening');
    const onClosed = on('closed');
    const store = new AsyncLocalStorage<string>();
    server.subscribe(serverHandlers);
    client.subscribe(clientHandlers);
    server.start.bindStore(store, () => 'request');
    diagnosticsChannel.subscribe(DiagnosticsChannel.SERVER_LISTENING, onListening);
    diagnosticsChannel.subscribe(DiagnosticsChannel.SERVER_CLOSED, onClosed);
    cleanups.push(() => {
      server.unsubscribe(serverHandlers);
      client.unsubscribe(clientHandlers);
      server.start.unbindStore(store);
      diagnosticsChannel.unsubscribe(DiagnosticsChannel.SERVER_LISTENING, onListening);
      diagnosticsChannel.unsubscribe(DiagnosticsChannel.SERVER_CLOSED, onClosed);
    });
    let seen: string | undefined;
    const running = await startServer(path, async (_request, reply) => {
      seen = store.getStore();
      await reply('ok');
    });
    cleanups.push(() => running.destroy());
    assert.equal((await sendCommand(path, 'x')).toString(), 'ok');
    await running.stop();
    assert.equal(seen, 'request');
    const sequence = (side: string): string[] =>
      events
        .filter((event) => event.startsWith(`${side} `))
        .map((event) => event.slice(side.length + 1));
    assert.deepEqual(sequence('client'), ['start', 'end', 'asyncStart', 'asyncEnd']);
    assert.deepEqual(sequence('server'), ['start', 'end', 'asyncStart', 'asyncEnd']);
    assert.equal(events[0], 'listening');
    assert.equal(events.at(-1), 'closed');
  },
);

await check('the CLI: run-daemon, send, sendbytes, stop-daemon', async () => {
  const path = join(dir, 'cli');
  const [command, argv] = cliCommand(['run-daemon', `--name=${path}`, '--threads=4']);
  const daemon: ChildProcess = spawn(command, argv, { stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => daemon.on('close', resolve));
  cleanups.push(() => daemon.kill('SIGKILL'));
  await until('the daemon to listen', async () => (await getActiveState(path)) === 'listening');
  assert.deepEqual(await runCli(['send', `--name=${path}`, '--token=ping']), {
    code: 0,
    stdout: 'pong\n',
  });
  const bytes = await runCli(['sendbytes', `--name=${path}`, '--bytecount=300000', '--byte=z']);
  assert.equal(bytes.code, 0);
  assert.equal(bytes.stdout, 'sent:z00300000 rcvd:z00300000\n');
  assert.equal((await runCli(['stop-daemon', `--name=${path}`])).code, 0);
  assert.equal(await exited, 0);
});

rmSync(dir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;

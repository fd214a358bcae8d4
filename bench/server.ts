/**
 * A benchmark server, run as a child process of `run.ts`:
 * `node server.js <project|baseline> <mode> <socket path> [response sizes...]`.
 *
 * The project side is an ordinary application of the library; the baseline side is a plain
 * `node:net` server that reads until the end of the pkt-line request, writes the bytes the
 * project would write, and closes.
 */

import { createServer, type Socket } from 'node:net';
import type { Handler, RequestHandler } from '../src/index.js';
import ping from './ping-handler.js';
import {
  childrenCpuTime,
  type Command,
  cpuTime,
  type Impl,
  loadLibrary,
  peakRss,
  type ServerMode,
  uploadAnswer,
} from './protocol.js';
import { MessageEnd, wireOf, wireOfRun } from './wire.js';

const PING = Buffer.from('ping', 'latin1');
const PONG = Buffer.from('pong', 'latin1');
const PING_HANDLER = new URL('./ping-handler.js', import.meta.url);
const UNKNOWN = Buffer.from('?', 'latin1');
const RESPONSE_BYTE = 0x79; // 'y'
const CHUNK_ROWS = 10_000;

const [impl, mode, path, ...sizeArgs] = process.argv.slice(2) as [Impl, ServerMode, string];
const { lib, daemon } = await loadLibrary();
const { bigRow } = daemon;
const sizes = sizeArgs.map(Number);

function sizeOf(request: Buffer): number {
  const size = Number(request.toString('latin1').slice('send '.length));
  if (!sizes.includes(size)) throw new Error(`bench server: no response of ${size} bytes`);
  return size;
}

// --- the project ---------------------------------------------------------------------------

function projectHandler(): Handler {
  switch (mode) {
    case 'ping':
    case 'ping-2p':
      return ping;
    case 'recv-whole':
      return (async (request, reply) => {
        await reply(uploadAnswer(request.length));
      }) satisfies RequestHandler;
    case 'recv-stream':
      return {
        async stream(request, reply) {
          let size = 0;
          for await (const piece of request) size += piece.length;
          await reply(uploadAnswer(size));
        },
      };
    case 'send-big': {
      const payload = Buffer.alloc(Math.max(...sizes), RESPONSE_BYTE);
      return async (request, reply) => {
        await reply(payload.subarray(0, sizeOf(request)));
      };
    }
    case 'chunk':
      return daemon.testDaemon;
  }
}

async function startProject(): Promise<() => Promise<void>> {
  const options = {
    maxRequestSize: 2 ** 31,
    onHandlerError: (err: unknown) => process.stderr.write(`bench server: ${String(err)}\n`),
  };
  const server =
    mode === 'ping-2p'
      ? await lib.startClusteredServer(path, PING_HANDLER, { ...options, processes: 2 })
      : await lib.startServer(path, projectHandler(), options);
  return () => server.stop();
}

// --- the baseline --------------------------------------------------------------------------

const PONG_WIRE = wireOf(PONG);
const UNKNOWN_WIRE = wireOf(UNKNOWN);
const prebuilt = new Map<number, Buffer>();
if (impl === 'baseline' && mode === 'send-big') {
  for (const size of sizes) prebuilt.set(size, wireOfRun(size, RESPONSE_BYTE));
}

const SENDBYTES = Buffer.from('sendbytes ', 'latin1');

function isSendbytes(payload: Buffer): boolean {
  return (
    payload.length >= SENDBYTES.length && payload.subarray(0, SENDBYTES.length).equals(SENDBYTES)
  );
}

/**
 * The test daemon's answer to `sendbytes <ballast>` (`rcvd:%c%08d\n`, or `errs:%d\n`), so that
 * Git's `test-tool simple-ipc multiple` can be pointed at the baseline (`git-compare.ts`).
 */
function sendbytesAnswer(payload: Buffer): Buffer {
  const ballast = payload.subarray(SENDBYTES.length);
  const first = ballast[0] ?? 0;
  let errors = 0;
  for (let i = 1; i < ballast.length; i++) if (ballast[i] !== first) errors++;
  if (errors > 0) return Buffer.from(`errs:${errors}\n`, 'latin1');
  const answer = Buffer.from(`rcvd:x${String(ballast.length).padStart(8, '0')}\n`, 'latin1');
  answer[5] = first;
  return answer;
}

function respond(socket: Socket, request: MessageEnd): void {
  switch (mode) {
    case 'ping':
    case 'ping-2p': {
      const payload = request.payload();
      if (payload.equals(PING)) socket.end(PONG_WIRE);
      else if (isSendbytes(payload)) socket.end(wireOf(sendbytesAnswer(payload)));
      else socket.end(UNKNOWN_WIRE);
      return;
    }
    case 'recv-whole':
      socket.end(wireOf(Buffer.from(uploadAnswer(request.payload().length), 'latin1')));
      return;
    case 'recv-stream':
      socket.end(wireOf(Buffer.from(uploadAnswer(request.payloadBytes), 'latin1')));
      return;
    case 'send-big':
      socket.end(prebuilt.get(sizeOf(request.payload()))!);
      return;
    case 'chunk':
      // One packet and one write per row, as Git's server does.
      if (request.payload().toString('latin1') !== 'chunk') throw new Error('not chunk');
      for (let i = 0; i < CHUNK_ROWS; i++) socket.write(`0055${bigRow(i)}`, 'latin1');
      socket.end('0000', 'latin1');
      return;
  }
}

function onBaselineConnection(socket: Socket): void {
  // The streaming form keeps no payload; every other mode needs the request's bytes.
  const request = new MessageEnd(mode !== 'recv-stream');
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    if (request.scan(chunk) < 0) return;
    socket.removeAllListeners('data');
    socket.resume();
    respond(socket, request);
  });
}

async function startBaseline(): Promise<() => Promise<void>> {
  const server = createServer(onBaselineConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path, backlog: 50 }, resolve);
  });
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}

// --- process life --------------------------------------------------------------------------

const stop = impl === 'project' ? await startProject() : await startBaseline();
// A clean exit, so that `--cpu-prof` writes its profile.
const exit = (): void => void stop().finally(() => process.exit(0));
process.on('message', (message: Command) => {
  if (message.cmd === 'rss') process.send?.({ rss: peakRss() });
  // A clustered server's other processes count too.
  else if (message.cmd === 'cpu') process.send?.({ cpuUs: cpuTime() + childrenCpuTime() });
  else if (message.cmd === 'exit') exit();
});
process.once('SIGTERM', exit);
process.once('SIGINT', exit);
process.on('disconnect', () => process.exit(0));
// Without an IPC channel (git-compare.ts runs it as a plain process) it serves until killed.
process.send?.({ ready: true });

/**
 * How far a pure JavaScript client can go receiving one large pkt-line message, against plain
 * `node:net`: one warm process reads a `--size` response (default 64 MiB, full packets, then a
 * flush) from a plain `node:net` server in another process, in turns, several ways:
 *
 * - `plain`: 'data' chunks, `Buffer.concat` (plain `node:net`, no framing: the floor),
 * - `plain, no concat`: 'data' chunks dropped (the socket reads alone),
 * - `simple-ipc`: `sendCommand`,
 * - `onread, reused buffer`: the socket's `onread` option with one reused 256 KiB buffer, the
 *   payload decoded out of it into 4 MiB pieces, joined at the end,
 * - `onread, into the destination`: `onread` with a function that hands the socket, for each
 *   read, a view of a 4 MiB piece ending at the next length field, so the kernel writes the
 *   payload where it stays and the length fields into a 4-byte buffer (no copy in JavaScript
 *   until the join; twice the reads),
 * - and, in memory only, the copies: joining 64 KiB chunks into one buffer, and touching fresh
 *   memory of the size.
 *
 * Each row: median ms of `--runs` turns, and MB/s. Linux or macOS.
 *
 *   node dist/bench/bulk-floor.js [--size=67108864] [--runs=9]
 */

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sendCommand } from '../src/client.js';
import { median } from './report.js';

const args = process.argv.slice(2);
const option = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const size = Number(option('size') ?? 64 * 1024 * 1024);
const runs = Number(option('runs') ?? 9);
const PIECE = 4 * 1024 * 1024;
const REQUEST = Buffer.from('0008ping0000', 'latin1');

const dir = mkdtempSync(join(tmpdir(), 'simple-ipc-bulk-'));
const path = join(dir, 's');
const WIRE = new URL('./wire.js', import.meta.url).href;
const server = spawn(
  process.execPath,
  [
    '--input-type=module',
    '-e',
    `import { createServer } from 'node:net';
     const { wireOfRun } = await import(${JSON.stringify(WIRE)});
     const wire = wireOfRun(${size}, 0x79);
     createServer((s) => { s.once('data', () => s.end(wire)); s.on('error', () => {}); })
       .listen(process.argv[1], () => console.log('ready'));`,
    path,
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
await new Promise((resolve) => server.stdout.once('data', resolve));

function exchange(socket: Socket): Promise<void> {
  socket.write(REQUEST);
  return new Promise((resolve, reject) => {
    socket.once('close', () => resolve()).once('error', reject);
  });
}

async function plain(join: boolean): Promise<number> {
  const socket = connect(path);
  const chunks: Buffer[] = [];
  let length = 0;
  socket.on('data', (chunk: Buffer) => {
    length += chunk.length;
    if (join) chunks.push(chunk);
  });
  await exchange(socket);
  return join ? Buffer.concat(chunks).length : length;
}

/** Decodes pkt-line from `onread` reads into 4 MiB pieces (full packets only, then a flush). */
async function reusedBuffer(): Promise<number> {
  const pieces: Buffer[] = [];
  let piece = Buffer.allocUnsafe(PIECE);
  let used = 0;
  let payloadLeft = 0; // bytes of the current packet's payload still to come
  const header = Buffer.alloc(4);
  let headerHave = 0;
  const socket = connect({
    path,
    onread: {
      buffer: Buffer.allocUnsafe(256 * 1024),
      callback(n, read) {
        const buf = read as Buffer;
        let at = 0;
        while (at < n) {
          if (payloadLeft === 0) {
            const take = Math.min(4 - headerHave, n - at);
            buf.copy(header, headerHave, at, at + take);
            headerHave += take;
            at += take;
            if (headerHave === 4) {
              headerHave = 0;
              const length = parseInt(header.toString('latin1'), 16);
              payloadLeft = length === 0 ? 0 : length - 4;
            }
            continue;
          }
          const take = Math.min(payloadLeft, n - at, PIECE - used);
          buf.copy(piece, used, at, at + take);
          used += take;
          at += take;
          payloadLeft -= take;
          if (used === PIECE) {
            pieces.push(piece);
            piece = Buffer.allocUnsafe(PIECE);
            used = 0;
          }
        }
        return true;
      },
    },
  });
  await exchange(socket);
  pieces.push(piece.subarray(0, used));
  return Buffer.concat(pieces).length;
}

/** `onread` with a buffer function: the payload is read straight into its piece. */
async function intoDestination(): Promise<number> {
  const pieces: Buffer[] = [];
  let piece = Buffer.allocUnsafe(PIECE);
  let used = 0;
  let payloadLeft = 0;
  const header = Buffer.alloc(4);
  let headerHave = 0;
  let last: Buffer = header; // what the socket reads into next
  const next = (): Buffer => {
    if (payloadLeft === 0) return (last = header.subarray(headerHave));
    if (used === PIECE) {
      pieces.push(piece);
      piece = Buffer.allocUnsafe(PIECE);
      used = 0;
    }
    return (last = piece.subarray(used, used + Math.min(payloadLeft, PIECE - used)));
  };
  const socket = connect({
    path,
    onread: {
      buffer: next,
      callback(n) {
        if (payloadLeft === 0) {
          headerHave += n;
          if (headerHave === 4) {
            headerHave = 0;
            const length = parseInt(header.toString('latin1'), 16);
            payloadLeft = length === 0 ? 0 : length - 4;
          }
        } else {
          used += n;
          payloadLeft -= n;
        }
        void last;
        return true;
      },
    },
  });
  await exchange(socket);
  pieces.push(piece.subarray(0, used));
  return Buffer.concat(pieces).length;
}

const CHUNKS = Array.from({ length: Math.ceil(size / 65536) }, () => Buffer.alloc(65536, 0x79));
const ways: [string, () => Promise<number>][] = [
  ['plain `node:net`, data + concat', () => plain(true)],
  ['plain `node:net`, data, no concat', () => plain(false)],
  ['simple-ipc `sendCommand`', async () => (await sendCommand(path, 'ping')).length],
  ['onread, reused buffer, decode into pieces', reusedBuffer],
  ['onread, read into the destination', intoDestination],
  ['memory only: concat of 64 KiB chunks', () => Promise.resolve(Buffer.concat(CHUNKS).length)],
  [
    'memory only: fresh buffer, filled',
    () => Promise.resolve(Buffer.allocUnsafe(size).fill(1).length),
  ],
];
const times = ways.map(() => [] as number[]);
try {
  for (let run = -1; run < runs; run++) {
    const order = ways.map((_, i) => i);
    if (run % 2 !== 0) order.reverse();
    for (const i of order) {
      const t0 = performance.now();
      const got = await ways[i]![1]();
      const ms = performance.now() - t0;
      // The plain rows count the wire bytes (payload and length fields), the others the payload.
      if (i < 5 && (i < 2 ? got < size : got !== size)) {
        throw new Error(`${ways[i]![0]}: ${got} bytes`);
      }
      if (run >= 0) times[i]!.push(ms);
    }
  }
} finally {
  server.kill();
  rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(`Node ${process.version}, ${size} bytes, ${runs} runs\n`);
process.stdout.write('| way | ms | MB/s | vs plain |\n|---|--:|--:|--:|\n');
const base = median(times[0]!);
ways.forEach(([title], i) => {
  const ms = median(times[i]!);
  process.stdout.write(
    `| ${title} | ${ms.toFixed(1)} | ${((size / ms) * 1e-3).toFixed(0)} | ${(base / ms).toFixed(2)} |\n`,
  );
});

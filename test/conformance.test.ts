/**
 * Conformance with Git's own peers, from the byte-exact recordings in `test/fixtures/git/`
 * (Git's C client and `run-daemon` server, see its README):
 * - our server, given each `X.request` on a raw socket, writes `X.response`;
 * - our client, served each `X.response` by a raw socket, yields its payload and sends `X.request`;
 * - our CLI prints `stdout.X.txt` byte for byte;
 * - every recording decodes right however it is split into chunks.
 */

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, type TestContext } from 'node:test';
import { testDaemon } from '../cli/test-daemon.js';
import {
  connect,
  MessageDecoder,
  PktLineDecoder,
  SimpleIpcError,
  sendCommand,
  startServer,
} from '../src/index.js';
import {
  netAddress,
  rawExchange,
  recording,
  runCli,
  tempDir,
  testWithDeadline,
} from './helpers.js';

// Some tests run the CLI.
const test = testWithDeadline(60_000);

const text = (s: string): Buffer => Buffer.from(s, 'latin1');

/** `stdout.X.txt` without the newline that `send` adds after a non-empty response. */
function sentPayload(stdoutFile: string): Buffer {
  const out = recording(stdoutFile);
  assert.equal(out[out.length - 1], 0x0a);
  return out.subarray(0, out.length - 1);
}

/** One recorded exchange and what it must mean, written independently of our code. */
interface Exchange {
  name: string;
  /** The CLI arguments that made it (without --name). */
  args: string[];
  /** The stdout recording, or undefined when Git's client printed nothing. */
  stdout: string | undefined;
  request: Buffer;
  response: () => Buffer;
  /** Our server writes the very same bytes (not only the same payload). */
  identical: boolean;
}

const EXCHANGES: Exchange[] = [
  {
    name: 'ping',
    args: ['send', '--token=ping'],
    stdout: 'stdout.ping.txt',
    request: text('ping'),
    response: () => text('pong'),
    identical: true,
  },
  {
    name: 'big',
    args: ['send', '--token=big'],
    stdout: 'stdout.big.txt',
    request: text('big'),
    response: () => sentPayload('stdout.big.txt'),
    identical: true,
  },
  {
    name: 'chunk',
    args: ['send', '--token=chunk'],
    stdout: 'stdout.chunk.txt',
    request: text('chunk'),
    response: () => sentPayload('stdout.chunk.txt'),
    identical: false,
  },
  {
    name: 'slow',
    args: ['send', '--token=slow'],
    stdout: 'stdout.slow.txt',
    request: text('slow'),
    response: () => sentPayload('stdout.slow.txt'),
    identical: false,
  },
  {
    name: 'unknown',
    args: ['send', '--token=nosuchcommand'],
    stdout: 'stdout.unknown.txt',
    request: text('nosuchcommand'),
    response: () => text('unhandled command: nosuchcommand'),
    identical: true,
  },
  {
    name: 'sendbytes-100000-A',
    args: ['sendbytes', '--bytecount=100000', '--byte=A'],
    stdout: 'stdout.sendbytes.txt',
    request: Buffer.concat([text('sendbytes '), Buffer.alloc(100_000, 'A')]),
    response: () => text('rcvd:A00100000\n'),
    identical: true,
  },
  {
    name: 'quit',
    args: ['send', '--token=quit'],
    stdout: undefined,
    request: text('quit'),
    response: () => Buffer.alloc(0),
    identical: true,
  },
];

/**
 * A deliberately simple, strict reading of a recording (not our decoder): the data packets'
 * payload sizes, and the payload; the stream must be data packets then one flush, at the end.
 */
function referenceParse(bytes: Buffer): { sizes: number[]; payload: Buffer } {
  const sizes: number[] = [];
  const payload: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const header = bytes.toString('latin1', pos, pos + 4);
    assert.match(header, /^[0-9a-f]{4}$/);
    const length = Number.parseInt(header, 16);
    if (length === 0) break;
    assert.ok(length > 4 && length <= 65520);
    sizes.push(length - 4);
    payload.push(bytes.subarray(pos + 4, pos + length));
    pos += length;
  }
  assert.equal(pos + 4, bytes.length, 'the flush ends the recording');
  return { sizes, payload: Buffer.concat(payload) };
}

function recordingsSuite(): void {
  describe('the recordings are what their README says', () => {
    for (const exchange of EXCHANGES) {
      test(exchange.name, () => {
        const request = referenceParse(recording(`${exchange.name}.request`));
        const response = referenceParse(recording(`${exchange.name}.response`));
        assert.ok(request.payload.equals(exchange.request));
        assert.ok(response.payload.equals(exchange.response()));
        if (exchange.name === 'chunk') assert.equal(response.sizes.length, 10_000);
        if (exchange.name === 'slow') assert.equal(response.sizes.length, 1_000);
        if (exchange.name === 'sendbytes-100000-A') assert.deepEqual(request.sizes, [65516, 34494]);
      });
    }
  });
}

function serverSuite(): void {
  describe(
    'our server (the test daemon) answers each recorded request',
    {
      concurrency: true,
    },
    () => {
      for (const exchange of EXCHANGES) {
        test(exchange.name, async (t) => {
          const path = join(tempDir(t), 'ipc');
          const server = await startServer(path, testDaemon);
          t.after(() => server.destroy());
          const recorded = recording(`${exchange.name}.response`);
          const { response, error } = await rawExchange(
            path,
            recording(`${exchange.name}.request`),
          );
          assert.equal(error, undefined);
          if (exchange.identical) {
            assert.ok(
              response.equals(recorded),
              `byte-identical response (${response.length} vs ${recorded.length} bytes)`,
            );
          } else {
            // Same payload; packet boundaries may differ (they carry no meaning): Git writes one
            // packet per reply, we pack small replies together.
            const ours = referenceParse(response);
            const git = referenceParse(recorded);
            assert.ok(ours.payload.equals(git.payload), 'same payload');
            assert.ok(ours.sizes.length <= git.sizes.length);
            if (exchange.name === 'chunk') {
              assert.ok(ours.sizes.length < 100, `${ours.sizes.length} packets for 10,000 replies`);
            }
          }
          if (exchange.name === 'quit') {
            await server.closed;
            assert.equal(server.stopReason?.kind, 'quit');
            assert.equal(existsSync(path), false, 'the socket is removed');
          } else {
            assert.equal(server.stopping, false);
            assert.equal(server.stats().responses, 1);
          }
        });
      }
    },
  );
}

/** A raw server that answers every request with recorded bytes, and notes what it got. */
interface Replay {
  path: string;
  /** The raw bytes of each request, up to its flush. */
  requests: Buffer[];
  /** Connections that sent nothing (probes). */
  probes: number;
  /** Resolves once every connection accepted so far has closed. */
  settled(): Promise<void>;
}

async function replayServer(t: TestContext, response: Buffer): Promise<Replay> {
  const path = join(tempDir(t), 'ipc');
  const open = new Set<Socket>();
  let waiters: (() => void)[] = [];
  const replay: Replay = {
    path,
    requests: [],
    probes: 0,
    settled: () =>
      open.size === 0 ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve)),
  };
  const server: NetServer = createServer((socket) => {
    open.add(socket);
    const decoder = new MessageDecoder();
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => {
      if (decoder.done) return;
      let end: number;
      try {
        end = decoder.push(chunk, { onPiece() {} });
      } catch {
        socket.destroy();
        return;
      }
      received.push(end >= 0 ? chunk.subarray(0, end) : chunk);
      if (end >= 0) {
        replay.requests.push(Buffer.concat(received));
        socket.end(response);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (!decoder.started) replay.probes++;
      open.delete(socket);
      if (open.size === 0) {
        for (const wake of waiters) wake();
        waiters = [];
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(netAddress(path), resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return replay;
}

function clientSuite(): void {
  describe('our client, served each recorded response', { concurrency: true }, () => {
    for (const exchange of EXCHANGES) {
      test(`${exchange.name}: sendCommand`, async (t) => {
        const replay = await replayServer(t, recording(`${exchange.name}.response`));
        const answer = await sendCommand(replay.path, exchange.request);
        assert.ok(answer.equals(exchange.response()), 'the payload');
        await replay.settled();
        assert.equal(replay.requests.length, 1);
        // A whole request is packetized exactly as Git's client does it.
        assert.ok(
          replay.requests[0]!.equals(recording(`${exchange.name}.request`)),
          'request bytes',
        );
      });

      test(`${exchange.name}: Connection.stream`, async (t) => {
        const replay = await replayServer(t, recording(`${exchange.name}.response`));
        const connection = await connect(replay.path);
        const pieces: Buffer[] = [];
        for await (const piece of connection.stream(exchange.request)) pieces.push(piece);
        assert.ok(Buffer.concat(pieces).equals(exchange.response()));
      });

      test(`${exchange.name}: cut short before the flush is an error`, async (t) => {
        const recorded = recording(`${exchange.name}.response`);
        const replay = await replayServer(t, recorded.subarray(0, recorded.length - 1));
        await assert.rejects(
          sendCommand(replay.path, exchange.request),
          (err: unknown) => err instanceof SimpleIpcError && err.code === 'ERR_IPC_TRUNCATED',
        );
      });
    }
  });
}

function cliSuite(): void {
  describe('our CLI prints what Git printed', { concurrency: true }, () => {
    for (const exchange of EXCHANGES) {
      test(exchange.name, async (t) => {
        const replay = await replayServer(t, recording(`${exchange.name}.response`));
        const result = await runCli([...exchange.args, `--name=${replay.path}`]);
        assert.equal(result.stderr, '');
        assert.equal(result.code, 0);
        const expected =
          exchange.stdout === undefined ? Buffer.alloc(0) : recording(exchange.stdout);
        assert.ok(
          result.stdout.equals(expected),
          `stdout (${result.stdout.length} vs ${expected.length} bytes)`,
        );
        await replay.settled();
        assert.equal(replay.probes, 1, 'the CLI probes first, as Git does');
        assert.equal(replay.requests.length, 1);
        assert.ok(referenceParse(replay.requests[0]!).payload.equals(exchange.request));
      });
    }
  });
}

/** A small deterministic generator, so that sampled offsets are the same on every run. */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/**
 * Split points for a recording: every offset of a small one; for a large one every offset near
 * both ends and around the first packet headers, and a seeded sample in between (the cut
 * patterns of {@link everyOffset} cover the rest).
 */
function splitPoints(bytes: Buffer, sizes: number[]): number[] {
  const n = bytes.length;
  if (n <= 4096) return Array.from({ length: n + 1 }, (_, i) => i);
  const points = new Set<number>();
  for (let i = 0; i <= 16; i++) {
    points.add(i);
    points.add(n - i);
  }
  let header = 0;
  for (const size of sizes.slice(0, 3)) {
    for (let d = -5; d <= 5; d++) points.add(header + d);
    header += size + 4;
  }
  const random = lcg(n);
  for (let i = 0; i < 16; i++) points.add(Math.floor(random() * (n + 1)));
  return [...points].filter((p) => p >= 0 && p <= n).sort((a, b) => a - b);
}

/**
 * Chunkings of a large recording in which every byte offset is a cut in exactly one of them:
 * chunking `k` cuts at k, k + 97, k + 2 * 97, ... (97 is prime, so the cuts drift across
 * packets of every size).
 */
function* everyOffset(bytes: Buffer): Generator<[number, Buffer[]]> {
  const stride = 97;
  for (let k = 0; k < stride; k++) {
    const chunks = [bytes.subarray(0, k)];
    for (let pos = k; pos < bytes.length; pos += stride) {
      chunks.push(bytes.subarray(pos, pos + stride));
    }
    yield [k, chunks];
  }
}

/** Feeds one of the chunkings to both decoders and checks they agree with the reference. */
function checkChunks(
  chunks: Buffer[],
  expected: { sizes: number[]; payload: Buffer },
  where: string,
): void {
  // Simple-IPC message decoding: pieces in order, the flush at the very end. (Plain checks
  // with assert.fail: this runs for millions of pieces.)
  const message = new MessageDecoder();
  let offset = 0;
  let endAt = -1;
  let consumed = 0;
  const sink = {
    onPiece(piece: Buffer) {
      if (!piece.equals(expected.payload.subarray(offset, offset + piece.length))) {
        assert.fail(`${where}: wrong piece at payload offset ${offset}`);
      }
      offset += piece.length;
    },
  };
  for (const chunk of chunks) {
    if (chunk.length > 0 && message.done) assert.fail(`${where}: bytes after the flush`);
    const end = message.push(chunk, sink);
    if (end >= 0) endAt = consumed + end;
    consumed += chunk.length;
  }
  message.end();
  assert.equal(offset, expected.payload.length, `${where}: whole payload`);
  assert.equal(endAt, consumed, `${where}: the flush is the last packet`);
  // Whole packets: same sizes as the reference, then a flush.
  const packets = new PktLineDecoder();
  let index = 0;
  let flushes = 0;
  for (const chunk of chunks) {
    packets.push(chunk);
    for (let p = packets.next(); p !== undefined; p = packets.next()) {
      if (p.kind === 'flush') flushes++;
      else if (p.kind !== 'data' || flushes > 0 || p.payload.length !== expected.sizes[index++]) {
        assert.fail(`${where}: unexpected ${p.kind} packet after ${index} data packets`);
      }
    }
  }
  packets.end();
  assert.equal(index, expected.sizes.length, `${where}: packet count`);
  assert.equal(flushes, 1, where);
}

function decodeSuite(): void {
  describe('every recording decodes however it is split', () => {
    const files = EXCHANGES.flatMap((e) => [`${e.name}.request`, `${e.name}.response`]);
    for (const file of files) {
      test(file, () => {
        const bytes = recording(file);
        const expected = referenceParse(bytes);
        const points = splitPoints(bytes, expected.sizes);
        for (const i of points) {
          checkChunks([bytes.subarray(0, i), bytes.subarray(i)], expected, `split at ${i}`);
        }
        if (bytes.length > 4096) {
          for (const [k, chunks] of everyOffset(bytes))
            checkChunks(chunks, expected, `cuts at ${k} + 97n`);
        }
        if (bytes.length <= 64) {
          for (const i of points) {
            for (let j = i; j <= bytes.length; j++) {
              const chunks = [bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)];
              checkChunks(chunks, expected, `split at ${i} and ${j}`);
            }
          }
        }
        // Tiny random chunks all the way through, and socket-sized ones.
        const random = lcg(bytes.length + 7);
        const tiny: Buffer[] = [];
        for (let pos = 0; pos < bytes.length;) {
          const n = 1 + Math.floor(random() * 16);
          tiny.push(bytes.subarray(pos, pos + n));
          pos += n;
        }
        checkChunks(tiny, expected, 'tiny chunks');
        const socketSized: Buffer[] = [];
        for (let pos = 0; pos < bytes.length; pos += 65536) {
          socketSized.push(bytes.subarray(pos, pos + 65536));
        }
        checkChunks(socketSized, expected, '64 KiB chunks');
      });
    }
  });
}

// The suites run side by side: the `slow` exchange spends ten seconds waiting on timers while
// the decoding suite keeps the CPU busy.
describe("conformance with the recordings of Git's peers", { concurrency: true }, () => {
  recordingsSuite();
  serverSuite();
  clientSuite();
  cliSuite();
  decodeSuite();
});

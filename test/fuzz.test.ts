/**
 * Property tests of the pkt-line codec with fast-check: for any bytes and any way of cutting
 * them into chunks, both decoders do exactly what a plain model of the format says and fail
 * only with a coded SimpleIpcError; every message we encode decodes back, however it is cut;
 * every corrupted one fails with the right code.
 *
 * A few hundred runs per property by default (a few seconds). For a longer hunt:
 * `SIMPLE_IPC_FUZZ_RUNS=100000 node --test dist/test/fuzz.test.js`; to replay a failure, also
 * set `SIMPLE_IPC_FUZZ_SEED` to the seed fast-check printed.
 */

import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  encodeMessage,
  LARGE_PACKET_DATA_MAX,
  LARGE_PACKET_MAX,
  MessageDecoder,
  PacketBuilder,
  SimpleIpcError,
} from '../src/index.js';
import { decodeAllPackets, test } from './helpers.js';

const RUNS = Number.parseInt(process.env.SIMPLE_IPC_FUZZ_RUNS ?? '', 10);
const SEED = Number.parseInt(process.env.SIMPLE_IPC_FUZZ_SEED ?? '', 10);

/** fast-check parameters: `defaultRuns` unless SIMPLE_IPC_FUZZ_RUNS says otherwise. */
function params(defaultRuns: number): fc.Parameters<unknown> {
  return {
    numRuns: RUNS > 0 ? RUNS : defaultRuns,
    ...(Number.isSafeInteger(SEED) ? { seed: SEED } : {}),
  };
}

const CODES = new Set([
  'ERR_PKT_LINE_LENGTH',
  'ERR_PKT_LINE_TOO_LONG',
  'ERR_PKT_LINE_UNEXPECTED',
  'ERR_IPC_TRUNCATED',
]);

/** The code of a decoder error; anything but a coded SimpleIpcError fails the property. */
function codeOf(err: unknown): string {
  if (!(err instanceof SimpleIpcError)) {
    throw new Error(`a decoder threw something other than a SimpleIpcError: ${String(err)}`);
  }
  assert.ok(CODES.has(err.code), `unexpected code ${err.code}`);
  return err.code;
}

/** Cuts `bytes` at the given points (taken modulo its length + 1). */
function cut(bytes: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of at) {
    chunks.push(bytes.subarray(from, p));
    from = p;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

// -- The model: the format read the plain way, over the whole input at once. ------------------

const HEX = /^[0-9a-fA-F]{4}$/;

/** What reading a length field must give: the length, or the error code. */
function modelLength(bytes: Buffer, pos: number): number | string {
  const text = bytes.toString('latin1', pos, pos + 4);
  if (!HEX.test(text)) return 'ERR_PKT_LINE_LENGTH';
  const length = Number.parseInt(text, 16);
  if (length === 3) return 'ERR_PKT_LINE_LENGTH';
  if (length > LARGE_PACKET_MAX) return 'ERR_PKT_LINE_TOO_LONG';
  return length;
}

/** Packets as text (`data:<hex>`, `flush`, ...), and the error that ends the stream, if any. */
interface PacketsOutcome {
  packets: string[];
  error: string | undefined;
}

function decodePackets(chunks: Buffer[]): PacketsOutcome {
  return decodeAllPackets(chunks, 'hex', codeOf);
}

function modelPackets(bytes: Buffer): PacketsOutcome {
  const packets: string[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    if (bytes.length - pos < 4) return { packets, error: 'ERR_IPC_TRUNCATED' };
    const length = modelLength(bytes, pos);
    if (typeof length === 'string') return { packets, error: length };
    if (length < 4) {
      packets.push(['flush', 'delim', 'response-end'][length]!);
      pos += 4;
      continue;
    }
    if (bytes.length - pos < length) return { packets, error: 'ERR_IPC_TRUNCATED' };
    packets.push(`data:${bytes.toString('hex', pos + 4, pos + length)}`);
    pos += length;
  }
  return { packets, error: undefined };
}

/** One Simple-IPC message: the payload seen (hex), where the flush ended, or the error. */
interface MessageOutcome {
  payload: string;
  end: number | undefined;
  error: string | undefined;
}

function modelMessage(bytes: Buffer): MessageOutcome {
  const payload: string[] = [];
  let pos = 0;
  const fail = (error: string): MessageOutcome => ({
    payload: payload.join(''),
    end: undefined,
    error,
  });
  for (;;) {
    if (bytes.length - pos < 4) return fail('ERR_IPC_TRUNCATED');
    const length = modelLength(bytes, pos);
    if (typeof length === 'string') return fail(length);
    if (length === 0) return { payload: payload.join(''), end: pos + 4, error: undefined };
    if (length < 4) return fail('ERR_PKT_LINE_UNEXPECTED');
    // The decoder streams what it has of a packet before knowing whether the rest will come.
    payload.push(bytes.toString('hex', pos + 4, Math.min(bytes.length, pos + length)));
    if (bytes.length - pos < length) return fail('ERR_IPC_TRUNCATED');
    pos += length;
  }
}

function decodeMessage(chunks: Buffer[]): MessageOutcome {
  const decoder = new MessageDecoder();
  const pieces: Buffer[] = [];
  let consumed = 0;
  let end: number | undefined;
  try {
    for (const chunk of chunks) {
      const at = decoder.push(chunk, {
        onPiece(piece) {
          assert.ok(piece.length > 0, 'no empty pieces');
          pieces.push(Buffer.from(piece));
        },
      });
      if (at >= 0 && end === undefined) end = consumed + at;
      consumed += chunk.length;
    }
    decoder.end();
  } catch (err) {
    return { payload: Buffer.concat(pieces).toString('hex'), end: undefined, error: codeOf(err) };
  }
  return { payload: Buffer.concat(pieces).toString('hex'), end, error: undefined };
}

// -- Generators. ------------------------------------------------------------------------------

const header = (length: number, upper = false): string => {
  const text = length.toString(16).padStart(4, '0');
  return upper ? text.toUpperCase() : text;
};

/** `n` bytes derived from `seed` (cheaper than generating large arrays element by element). */
function filler(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = state & 0xff;
  }
  return out;
}

/** Pieces of a pkt-line stream, valid and not: most inputs get past the first header. */
const token: fc.Arbitrary<Buffer> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.boolean())
      .map(([payload, upper]) =>
        Buffer.concat([Buffer.from(header(payload.length + 4, upper)), payload]),
      ),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: LARGE_PACKET_DATA_MAX - 64, max: LARGE_PACKET_DATA_MAX }), fc.nat())
      .map(([n, seed]) => Buffer.concat([Buffer.from(header(n + 4)), filler(n, seed)])),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom('0000', '0001', '0002', '0003', '0004').map((s) => Buffer.from(s)),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: LARGE_PACKET_MAX + 1, max: 0xffff })
      .map((n) => Buffer.from(header(n))),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 5, max: LARGE_PACKET_MAX }).map((n) => Buffer.from(header(n))),
  },
  {
    weight: 1,
    arbitrary: fc.uint8Array({ minLength: 1, maxLength: 6 }).map((b) => Buffer.from(b)),
  },
);

const stream: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
  fc.array(token, { maxLength: 12 }).map((parts) => Buffer.concat(parts)),
);

const cuts = fc.array(fc.nat(), { maxLength: 12 });

/** Payload chunk sizes around every threshold of the encoder. */
const chunkSize: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: 0, max: 100 }),
  fc.integer({ min: 4090, max: 4100 }),
  fc.integer({ min: LARGE_PACKET_DATA_MAX - 8, max: LARGE_PACKET_DATA_MAX + 8 }),
  fc.integer({ min: 100, max: 140_000 }),
);

/** Chunks to send: sizes, contents, and after which ones to take() what is ready. */
const outgoing = fc
  .tuple(fc.array(fc.tuple(chunkSize, fc.nat(), fc.boolean()), { maxLength: 8 }))
  .map(([specs]) => specs.map(([n, seed, take]) => ({ data: filler(n, seed + n), take })));

/** Encodes `chunks` with a PacketBuilder, taking output where asked. */
function build(chunks: { data: Buffer; take: boolean }[]): Buffer {
  const builder = new PacketBuilder();
  const out: Buffer[] = [];
  for (const { data, take } of chunks) {
    builder.add(data);
    if (take) out.push(...builder.take());
  }
  builder.addFlush();
  out.push(...builder.take());
  return Buffer.concat(out);
}

/** Checks that `bytes` is data packets of 1..65516 bytes with lowercase lengths, then a flush. */
function assertWellFormed(bytes: Buffer): number[] {
  const sizes: number[] = [];
  let pos = 0;
  for (;;) {
    const text = bytes.toString('latin1', pos, pos + 4);
    assert.match(text, /^[0-9a-f]{4}$/);
    const length = Number.parseInt(text, 16);
    if (length === 0) break;
    assert.ok(length > 4 && length <= LARGE_PACKET_MAX, `bad packet ${text}`);
    sizes.push(length - 4);
    pos += length;
  }
  assert.equal(pos + 4, bytes.length, 'the flush comes last');
  return sizes;
}

// -- Properties. ------------------------------------------------------------------------------

test('PktLineDecoder: any bytes, any chunks, does what the model says', () => {
  fc.assert(
    fc.property(stream, cuts, (bytes, points) => {
      assert.deepEqual(decodePackets(cut(bytes, points)), modelPackets(bytes));
    }),
    params(1000),
  );
});

test('MessageDecoder: any bytes, any chunks, does what the model says', () => {
  fc.assert(
    fc.property(stream, cuts, (bytes, points) => {
      assert.deepEqual(decodeMessage(cut(bytes, points)), modelMessage(bytes));
    }),
    params(1000),
  );
});

test('every message round-trips: PacketBuilder or encodeMessage, then any chunks', () => {
  fc.assert(
    fc.property(outgoing, cuts, (chunks, points) => {
      const payload = Buffer.concat(chunks.map((c) => c.data));
      for (const bytes of [build(chunks), encodeMessage(payload)]) {
        const sizes = assertWellFormed(bytes);
        assert.equal(
          sizes.reduce((a, b) => a + b, 0),
          payload.length,
        );
        const decoded = decodeMessage(cut(bytes, points));
        assert.equal(decoded.error, undefined);
        assert.equal(decoded.end, bytes.length);
        assert.ok(Buffer.from(decoded.payload, 'hex').equals(payload));
      }
      // encodeMessage packs as tightly as Git: full packets, then the rest.
      const sizes = assertWellFormed(encodeMessage(payload));
      assert.equal(sizes.length, Math.ceil(payload.length / LARGE_PACKET_DATA_MAX));
    }),
    params(300),
  );
});

// Several builders used in turn, as concurrent responses use theirs: nothing one builder
// writes may land in bytes another has already handed out (a socket may still hold them), and
// each builder's packets must carry exactly its own bytes. (A shared-arena variant of the
// builder, its regions made to overlap on purpose, fails it.)
test('PacketBuilder: builders used in turn keep their bytes apart', () => {
  const step = fc.tuple(
    fc.nat({ max: 3 }), // which builder
    fc.integer({ min: 1, max: 700 }), // chunk size: small, sometimes over the arena's regions
    fc.nat(),
    fc.constantFrom('bytes', 'string', 'take'),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 80 }), (steps) => {
      const sides = [0, 1, 2, 3].map(() => ({
        builder: new PacketBuilder(),
        handedOut: [] as Buffer[],
        sent: [] as Buffer[],
      }));
      // Copies of everything handed out, taken at once: compared again at the end.
      const snapshots: [Buffer, Buffer][] = [];
      const hand = (side: (typeof sides)[number]): void => {
        for (const part of side.builder.take()) {
          side.handedOut.push(part);
          snapshots.push([part, Buffer.from(part)]);
        }
      };
      for (const [which, n, seed, action] of steps) {
        const side = sides[which]!;
        const data = filler(n, seed);
        if (action === 'take') hand(side);
        else if (action === 'bytes') {
          side.builder.add(data);
          side.sent.push(data);
        } else {
          const text = data.toString('hex').slice(0, n);
          side.builder.addString(text);
          side.sent.push(Buffer.from(text, 'latin1'));
        }
      }
      for (const side of sides) {
        side.builder.addFlush();
        hand(side);
        const bytes = Buffer.concat(side.handedOut);
        const sizes = assertWellFormed(bytes);
        const payload = Buffer.concat(side.sent);
        assert.equal(
          sizes.reduce((a, b) => a + b, 0),
          payload.length,
        );
        const decoded = decodeMessage([bytes]);
        assert.ok(Buffer.from(decoded.payload, 'hex').equals(payload));
      }
      for (const [part, copy] of snapshots)
        assert.ok(part.equals(copy), 'bytes changed after hand-out');
    }),
    params(500),
  );
});

/** Ways to break a well-formed message, and the code each must give. */
const corruption = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('header' as const),
    packet: fc.nat(),
    header: fc.oneof(
      fc.constantFrom(
        ['0001', 'ERR_PKT_LINE_UNEXPECTED'],
        ['0002', 'ERR_PKT_LINE_UNEXPECTED'],
        ['0003', 'ERR_PKT_LINE_LENGTH'],
        ['fff1', 'ERR_PKT_LINE_TOO_LONG'],
        ['FFFF', 'ERR_PKT_LINE_TOO_LONG'],
        [' 008', 'ERR_PKT_LINE_LENGTH'],
        ['+008', 'ERR_PKT_LINE_LENGTH'],
        ['0x08', 'ERR_PKT_LINE_LENGTH'],
      ),
      fc
        .tuple(fc.nat({ max: 3 }), fc.integer({ min: 0, max: 255 }))
        .filter(([, b]) => !/[0-9a-fA-F]/.test(String.fromCharCode(b)))
        .map(([i, b]) => {
          const bytes = Buffer.from('0010');
          bytes[i] = b;
          return [bytes.toString('latin1'), 'ERR_PKT_LINE_LENGTH'] as [string, string];
        }),
    ),
  }),
);

test('every corrupted message fails with the right code, however it is cut', () => {
  fc.assert(
    fc.property(outgoing, corruption, cuts, (chunks, broken, points) => {
      const bytes = build(chunks);
      let bad: Buffer;
      let code: string;
      if (broken.kind === 'truncate') {
        bad = bytes.subarray(0, broken.at % bytes.length);
        code = 'ERR_IPC_TRUNCATED';
      } else {
        // Replace the length of one packet (the flush included) with a bad one.
        const starts: number[] = [];
        for (let pos = 0; ;) {
          starts.push(pos);
          const length = Number.parseInt(bytes.toString('latin1', pos, pos + 4), 16);
          if (length === 0) break;
          pos += length;
        }
        const at = starts[broken.packet % starts.length]!;
        bad = Buffer.from(bytes);
        bad.write(broken.header[0], at, 'latin1');
        code = broken.header[1];
      }
      const decoded = decodeMessage(cut(bad, points));
      assert.equal(decoded.error, code);
      assert.deepEqual(decoded, modelMessage(bad));
    }),
    params(300),
  );
});

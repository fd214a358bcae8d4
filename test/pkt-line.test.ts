/**
 * The pkt-line codec on literal wire bytes: length parsing, the encoder, the packet builder, and
 * both decoders, every decoder fixture also fed split at every byte offset.
 */

import assert from 'node:assert/strict';
import { describe } from 'node:test';
import {
  DELIM_PKT,
  encodeMessage,
  encodePacket,
  FLUSH_PKT,
  LARGE_PACKET_DATA_MAX,
  LARGE_PACKET_MAX,
  MessageDecoder,
  PacketBuilder,
  PktLineDecoder,
  parsePacketLength,
  RESPONSE_END_PKT,
  SimpleIpcError,
  writePacketLength,
} from '../src/index.js';
import { decodeAllPackets, test } from './helpers.js';

const wire = (text: string): Buffer => Buffer.from(text, 'latin1');

/** Asserts that `fn` throws a SimpleIpcError with `code`. */
function throwsCode(fn: () => unknown, code: string, what?: string): void {
  assert.throws(
    fn,
    (err: unknown) => err instanceof SimpleIpcError && err.code === code,
    what ?? `expected ${code}`,
  );
}

/**
 * Ways of feeding `bytes`: whole, one byte at a time, and split at every offset (and at every
 * pair of offsets for short fixtures). For the 64 KiB fixtures: every offset near the ends and
 * the packet headers, and every 251st in between.
 */
function* feeds(bytes: Buffer): Generator<Buffer[]> {
  yield [bytes];
  const bytewise: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) bytewise.push(bytes.subarray(i, i + 1));
  yield bytewise;
  const dense = bytes.length <= 4096;
  for (let i = 0; i <= bytes.length; i++) {
    if (!dense && i > 64 && i < bytes.length - 64 && i % 251 !== 0) continue;
    yield [bytes.subarray(0, i), bytes.subarray(i)];
    if (bytes.length <= 64) {
      for (let j = i; j <= bytes.length; j++) {
        yield [bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)];
      }
    }
  }
}

/** What a decoder made of a stream: packets (payloads as latin1 text), or the error code. */
type Outcome = { packets: string[] } | { code: string };

/** Runs a PktLineDecoder over `chunks`, then end(). Packets are `data:<payload>`, `flush`... */
function decodePackets(chunks: Buffer[]): Outcome {
  const { packets, error } = decodeAllPackets(chunks, 'latin1', codeOf);
  return error === undefined ? { packets } : { code: error };
}

/** What a MessageDecoder made of a stream: the payload and where the message ended, or the
 * error code. `rest` is what followed the flush. */
type MessageOutcome = { payload: string; rest: string; pieces: number } | { code: string };

function decodeMessage(chunks: Buffer[]): MessageOutcome {
  const decoder = new MessageDecoder();
  const pieces: Buffer[] = [];
  const sink = { onPiece: (piece: Buffer) => pieces.push(piece) };
  const rest: Buffer[] = [];
  try {
    for (const chunk of chunks) {
      if (decoder.done) {
        rest.push(chunk);
        continue;
      }
      const end = decoder.push(chunk, sink);
      if (end >= 0) rest.push(chunk.subarray(end));
    }
    decoder.end();
  } catch (err) {
    return { code: codeOf(err) };
  }
  for (const piece of pieces) assert.ok(piece.length > 0, 'a piece is never empty');
  return {
    payload: Buffer.concat(pieces).toString('latin1'),
    rest: Buffer.concat(rest).toString('latin1'),
    pieces: pieces.length,
  };
}

function codeOf(err: unknown): string {
  assert.ok(err instanceof SimpleIpcError, `not a SimpleIpcError: ${String(err)}`);
  assert.equal(typeof err.code, 'string');
  return err.code;
}

describe('parsePacketLength', () => {
  test('accepts every 4-hex-digit length up to 65520 in lower, upper and mixed case', () => {
    const digits = '0123456789abcdef';
    for (let n = 0; n <= 0xffff; n++) {
      const lower = n.toString(16).padStart(4, '0');
      const upper = lower.toUpperCase();
      const mixed = [...lower].map((c, i) => (i % 2 === 0 ? c.toUpperCase() : c)).join('');
      for (const text of new Set([lower, upper, mixed])) {
        if (n === 3) throwsCode(() => parsePacketLength(wire(text)), 'ERR_PKT_LINE_LENGTH', text);
        else if (n > LARGE_PACKET_MAX) {
          throwsCode(() => parsePacketLength(wire(text)), 'ERR_PKT_LINE_TOO_LONG', text);
        } else assert.equal(parsePacketLength(wire(text)), n, text);
      }
    }
    assert.equal(digits.length, 16);
  });

  test('the special lengths and the limits', () => {
    assert.equal(parsePacketLength(wire('0000')), 0);
    assert.equal(parsePacketLength(wire('0001')), 1);
    assert.equal(parsePacketLength(wire('0002')), 2);
    assert.equal(parsePacketLength(wire('0004')), 4);
    assert.equal(parsePacketLength(wire('fff0')), 65520);
    assert.equal(parsePacketLength(wire('FFF0')), 65520);
    throwsCode(() => parsePacketLength(wire('0003')), 'ERR_PKT_LINE_LENGTH');
    throwsCode(() => parsePacketLength(wire('fff1')), 'ERR_PKT_LINE_TOO_LONG');
    throwsCode(() => parsePacketLength(wire('FFF1')), 'ERR_PKT_LINE_TOO_LONG');
    throwsCode(() => parsePacketLength(wire('ffff')), 'ERR_PKT_LINE_TOO_LONG');
  });

  test('rejects signs, spaces, 0x and every other non-hex byte, at every position', () => {
    for (const text of [
      ' 008',
      '008 ',
      '00 8',
      '\t008',
      '008\n',
      '+008',
      '-008',
      '0x08',
      '0X08',
      '0x0f',
      '000g',
      'G000',
      '1e+3',
      '.008',
      '00_8',
    ]) {
      throwsCode(() => parsePacketLength(wire(text)), 'ERR_PKT_LINE_LENGTH', JSON.stringify(text));
    }
    const isHex = (b: number): boolean =>
      (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
    for (let b = 0; b < 256; b++) {
      if (isHex(b)) continue;
      for (let position = 0; position < 4; position++) {
        const bytes = wire('0008');
        bytes[position] = b;
        throwsCode(() => parsePacketLength(bytes), 'ERR_PKT_LINE_LENGTH', `${b} at ${position}`);
      }
    }
  });

  test('reads at an offset and needs four bytes there', () => {
    assert.equal(parsePacketLength(wire('xx0010yy'), 2), 16);
    for (const [text, offset] of [
      ['', 0],
      ['0', 0],
      ['00', 0],
      ['000', 0],
      ['0000', 1],
      ['0008', 2],
      ['0008', 4],
      ['0008', 9],
    ] as const) {
      throwsCode(
        () => parsePacketLength(wire(text), offset),
        'ERR_PKT_LINE_LENGTH',
        `${text}@${offset}`,
      );
    }
    throwsCode(() => parsePacketLength(wire('0008'), -1), 'ERR_PKT_LINE_LENGTH');
  });

  test('writePacketLength writes 4 lowercase hex digits', () => {
    const target = Buffer.alloc(8, 0x2e);
    writePacketLength(target, 2, 0xabcd);
    assert.equal(target.toString('latin1'), '..abcd..');
    writePacketLength(target, 0, 4);
    assert.equal(target.toString('latin1', 0, 4), '0004');
    writePacketLength(target, 0, LARGE_PACKET_MAX);
    assert.equal(target.toString('latin1', 0, 4), 'fff0');
  });
});

describe('encodePacket', () => {
  test('one data packet with a lowercase length that counts itself', () => {
    assert.equal(encodePacket('ping').toString('latin1'), '0008ping');
    assert.equal(encodePacket('0123456789').toString('latin1'), '000e0123456789');
    assert.equal(encodePacket(new Uint8Array([1, 2, 255])).toString('latin1'), '0007\x01\x02\xff');
    assert.equal(encodePacket('é').toString('latin1'), '0006\xc3\xa9', 'strings are UTF-8');
    const view = new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4);
    assert.deepEqual([...encodePacket(view)], [...wire('0007'), 1, 2, 3]);
  });

  test('the largest packet, and nothing larger or empty', () => {
    const max = encodePacket(Buffer.alloc(LARGE_PACKET_DATA_MAX, 0x61));
    assert.equal(max.length, LARGE_PACKET_MAX);
    assert.equal(max.toString('latin1', 0, 4), 'fff0');
    throwsCode(
      () => encodePacket(Buffer.alloc(LARGE_PACKET_DATA_MAX + 1)),
      'ERR_PKT_LINE_TOO_LONG',
    );
    throwsCode(() => encodePacket(''), 'ERR_PKT_LINE_LENGTH');
    throwsCode(() => encodePacket(new Uint8Array(0)), 'ERR_PKT_LINE_LENGTH');
  });

  test('the special packets', () => {
    assert.equal(FLUSH_PKT.toString('latin1'), '0000');
    assert.equal(DELIM_PKT.toString('latin1'), '0001');
    assert.equal(RESPONSE_END_PKT.toString('latin1'), '0002');
  });
});

/** Walks encoded bytes strictly: every header lowercase, every data packet 1..65516 bytes. */
function walkEncoded(bytes: Buffer): { sizes: number[]; payload: Buffer; flushAt: number } {
  const sizes: number[] = [];
  const payload: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const header = bytes.toString('latin1', pos, pos + 4);
    assert.match(header, /^[0-9a-f]{4}$/, `header at ${pos}`);
    const length = Number.parseInt(header, 16);
    if (length === 0) return { sizes, payload: Buffer.concat(payload), flushAt: pos };
    assert.ok(length > 4, `no empty data packet (0004) and no special packet: ${header}`);
    assert.ok(length <= LARGE_PACKET_MAX, `packet too long: ${header}`);
    sizes.push(length - 4);
    payload.push(bytes.subarray(pos + 4, pos + length));
    pos += length;
  }
}

/** `n` bytes that differ from position to position, so misplaced bytes show. */
function pattern(n: number, seed = 0): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >>> 8)) & 0xff;
  return out;
}

describe('encodeMessage', () => {
  test('literal messages', () => {
    assert.equal(encodeMessage('').toString('latin1'), '0000');
    assert.equal(encodeMessage(new Uint8Array(0)).toString('latin1'), '0000');
    assert.equal(encodeMessage('ping').toString('latin1'), '0008ping0000');
    assert.equal(
      encodeMessage('unhandled command: nosuchcommand').toString('latin1'),
      '0024unhandled command: nosuchcommand0000',
    );
  });

  test('splits at 65516 payload bytes, exactly where Git does', () => {
    const data = pattern(LARGE_PACKET_DATA_MAX + 1);
    const encoded = encodeMessage(data);
    const expected = Buffer.concat([
      wire('fff0'),
      data.subarray(0, LARGE_PACKET_DATA_MAX),
      wire('0005'),
      data.subarray(LARGE_PACKET_DATA_MAX),
      wire('0000'),
    ]);
    assert.ok(encoded.equals(expected));
  });

  test('every size around the packet limits round-trips in full packets', () => {
    for (const n of [1, 2, 4095, 4096, 4097, 65515, 65516, 65517, 131031, 131032, 131033, 810000]) {
      const data = pattern(n, n);
      const encoded = encodeMessage(data);
      const { sizes, payload, flushAt } = walkEncoded(encoded);
      assert.equal(flushAt, encoded.length - 4, `${n}: the flush ends the message`);
      assert.ok(payload.equals(data), `${n}: payload`);
      // As few packets as possible: all full but the last.
      const full = Math.floor(n / LARGE_PACKET_DATA_MAX);
      const expected = Array<number>(full).fill(LARGE_PACKET_DATA_MAX);
      if (n % LARGE_PACKET_DATA_MAX !== 0) expected.push(n % LARGE_PACKET_DATA_MAX);
      assert.deepEqual(sizes, expected, `${n}: packet sizes`);
    }
  });
});

/** Everything a builder produced, as one buffer. */
function drain(builder: PacketBuilder): Buffer {
  return Buffer.concat(builder.take());
}

describe('PacketBuilder', () => {
  test('small chunks share a packet', () => {
    const builder = new PacketBuilder();
    builder.add(wire('a'));
    builder.add(wire('bc'));
    builder.add(Buffer.alloc(0));
    builder.add(wire('d'));
    builder.addFlush();
    assert.equal(drain(builder).toString('latin1'), '0008abcd0000');
    builder.addFlush();
    assert.equal(drain(builder).toString('latin1'), '0000', 'a bare flush');
    assert.deepEqual(builder.take(), [], 'empty after take()');
  });

  test("10,000 replies of 81 bytes (the test daemon's chunk) become a dozen packets", () => {
    const builder = new PacketBuilder();
    const rows: Buffer[] = [];
    for (let i = 0; i < 10_000; i++) {
      const row = wire(`big: ${String(i).padStart(75, '0')}\n`);
      rows.push(row);
      builder.add(row);
    }
    builder.addFlush();
    const { sizes, payload, flushAt } = walkEncoded(drain(builder));
    assert.ok(payload.equals(Buffer.concat(rows)));
    assert.ok(flushAt > 0);
    assert.ok(sizes.length <= 20, `${sizes.length} packets`);
    assert.ok(sizes.length >= Math.ceil(810_000 / LARGE_PACKET_DATA_MAX));
  });

  test('a large chunk after small ones keeps byte order (and every other mix)', () => {
    const sizes = [1, 81, 4095, 4096, 5000, 65516, 65517, 70000, 140000];
    let seed = 0;
    const check = (chunkSizes: number[], takeBetween: boolean): void => {
      const builder = new PacketBuilder();
      const chunks = chunkSizes.map((n) => pattern(n, ++seed));
      const out: Buffer[] = [];
      for (const chunk of chunks) {
        builder.add(chunk);
        if (takeBetween) out.push(...builder.take());
      }
      builder.addFlush();
      out.push(...builder.take());
      const encoded = Buffer.concat(out);
      const walked = walkEncoded(encoded);
      assert.equal(walked.flushAt, encoded.length - 4);
      assert.ok(walked.payload.equals(Buffer.concat(chunks)), `order of ${chunkSizes.join(',')}`);
    };
    for (const a of sizes) {
      for (const b of sizes) {
        check([a, b], false);
        check([a, b], true);
        for (const c of [1, 4096, 70000]) {
          check([a, b, c], false);
          check([c, a, b], true);
        }
      }
    }
    // The case of the fixed bug, spelled out: small, small, large, small.
    const builder = new PacketBuilder();
    builder.add(wire('one,'));
    builder.add(wire('two,'));
    builder.add(Buffer.alloc(5000, 0x4c));
    builder.add(wire(',three'));
    builder.addFlush();
    assert.equal(
      drain(builder).toString('latin1'),
      `000cone,two,${(5000 + 4).toString(16).padStart(4, '0')}${'L'.repeat(5000)}000a,three0000`,
    );
  });

  test('large chunks are referenced, not copied; small ones are copied', () => {
    const builder = new PacketBuilder();
    const large = pattern(200_000);
    const small = wire('small');
    builder.add(small);
    builder.add(large);
    const parts = builder.take();
    const views = parts.filter((p) => p.buffer === large.buffer);
    assert.equal(views.length, Math.ceil(large.length / LARGE_PACKET_DATA_MAX));
    let offset = large.byteOffset;
    for (const view of views) {
      assert.equal(view.byteOffset, offset, 'views follow each other in the caller buffer');
      offset += view.length;
    }
    assert.equal(offset, large.byteOffset + large.length);
    small.fill(0x21); // reusing a small chunk at once is safe: it was copied
    large[0] = 0x5a; // a large one is still shared until written
    const { payload } = walkEncoded(Buffer.concat([...parts, FLUSH_PKT]));
    assert.equal(payload.toString('latin1', 0, 5), 'small');
    assert.equal(payload[5], 0x5a);
  });

  test('pendingBytes counts what take() will return', () => {
    const builder = new PacketBuilder();
    assert.equal(builder.pendingBytes, 0);
    const sizes = [3, 2000, 100, 3000, 10_000, 1, 60_000, 4095, 4095, 4095, 65_516, 2, 70_000];
    for (let i = 0; i < sizes.length; i++) {
      // Several chunks between takes, so that packets close and scratch buffers fill up.
      for (const n of sizes.slice(i, i + 4)) builder.add(pattern(n));
      const pending: number = builder.pendingBytes;
      const taken = builder.take().reduce((sum, part) => sum + part.length, 0);
      assert.equal(pending, taken, `round ${i}`);
      assert.equal(builder.pendingBytes, 0);
    }
    builder.addFlush();
    assert.equal(builder.pendingBytes, 4);
  });
});

/** A decoder fixture: bytes, and what each decoder must make of them. */
interface Fixture {
  name: string;
  bytes: Buffer;
  packets: Outcome;
  message: MessageOutcome;
}

/** A fixture that both decoders refuse with the same `code`. */
function malformed(name: string, bytes: Buffer, code: string): Fixture {
  return { name, bytes, packets: { code }, message: { code } };
}

const max = 'm'.repeat(LARGE_PACKET_DATA_MAX);
const fixtures: Fixture[] = [
  {
    name: 'a bare flush (empty message)',
    bytes: wire('0000'),
    packets: { packets: ['flush'] },
    message: { payload: '', rest: '', pieces: 0 },
  },
  {
    name: 'ping',
    bytes: wire('0008ping0000'),
    packets: { packets: ['data:ping', 'flush'] },
    message: { payload: 'ping', rest: '', pieces: 1 },
  },
  {
    name: 'packets of one message join without separators',
    bytes: wire('0008send0009bytes0000'),
    packets: { packets: ['data:send', 'data:bytes', 'flush'] },
    message: { payload: 'sendbytes', rest: '', pieces: 2 },
  },
  {
    name: 'uppercase and mixed-case lengths',
    bytes: wire('000Ahello!000aHELLO!000Bhello!!0000'),
    packets: { packets: ['data:hello!', 'data:HELLO!', 'data:hello!!', 'flush'] },
    message: { payload: 'hello!HELLO!hello!!', rest: '', pieces: 3 },
  },
  {
    name: 'an empty data packet 0004 carries nothing',
    bytes: wire('000400080ab500040000'),
    packets: { packets: ['data:', 'data:0ab5', 'data:', 'flush'] },
    message: { payload: '0ab5', rest: '', pieces: 1 },
  },
  {
    name: 'bytes after the flush belong to no message',
    bytes: wire('0008pong0000junk'),
    packets: { code: 'ERR_PKT_LINE_LENGTH' },
    message: { payload: 'pong', rest: 'junk', pieces: 1 },
  },
  {
    name: 'two messages in a row',
    bytes: wire('0008pong00000007abc0000'),
    packets: { packets: ['data:pong', 'flush', 'data:abc', 'flush'] },
    message: { payload: 'pong', rest: '0007abc0000', pieces: 1 },
  },
  {
    name: 'binary payload with NUL and high bytes, and a payload that looks like a header',
    bytes: Buffer.concat([
      wire('000a'),
      Buffer.from([0, 1, 0xff, 0x80, 0x0a, 0]),
      wire('0008000000000'),
    ]),
    packets: { code: 'ERR_IPC_TRUNCATED' },
    message: { payload: '\x00\x01\xff\x80\n\x000000', rest: '0', pieces: 2 },
  },
  {
    name: 'delim, response-end and flush as a Git protocol v2 stream',
    bytes: wire('0014command=ls-refs\n00010009peel\n00000002'),
    packets: {
      packets: ['data:command=ls-refs\n', 'delim', 'data:peel\n', 'flush', 'response-end'],
    },
    message: { code: 'ERR_PKT_LINE_UNEXPECTED' },
  },
  {
    name: 'response-end inside a message',
    bytes: wire('0008ping00020000'),
    packets: { packets: ['data:ping', 'response-end', 'flush'] },
    message: { code: 'ERR_PKT_LINE_UNEXPECTED' },
  },
  {
    name: 'delim first',
    bytes: wire('00010000'),
    packets: { packets: ['delim', 'flush'] },
    message: { code: 'ERR_PKT_LINE_UNEXPECTED' },
  },
  {
    name: 'the largest packet',
    bytes: wire(`fff0${max}0000`),
    packets: { packets: [`data:${max}`, 'flush'] },
    message: { payload: max, rest: '', pieces: 1 },
  },
  malformed('a length over 65520', wire(`fff1${max}x0000`), 'ERR_PKT_LINE_TOO_LONG'),
  malformed('length 3', wire('0008ping00030000'), 'ERR_PKT_LINE_LENGTH'),
  malformed(
    'a non-hex length after a good packet',
    wire('0008ping+0080000'),
    'ERR_PKT_LINE_LENGTH',
  ),
  malformed('a 0x length', wire('0x08ping0000'), 'ERR_PKT_LINE_LENGTH'),
  malformed('a length with a space', wire(' 008ping0000'), 'ERR_PKT_LINE_LENGTH'),
  {
    name: 'nothing at all',
    bytes: wire(''),
    packets: { packets: [] },
    message: { code: 'ERR_IPC_TRUNCATED' },
  },
  malformed('EOF inside a length', wire('0008ping000'), 'ERR_IPC_TRUNCATED'),
  malformed('EOF inside a payload', wire('0008pi'), 'ERR_IPC_TRUNCATED'),
  {
    name: 'EOF before the flush',
    bytes: wire('0008ping0008pong'),
    packets: { packets: ['data:ping', 'data:pong'] },
    message: { code: 'ERR_IPC_TRUNCATED' },
  },
];

describe('decoders on literal wire bytes, split at every offset', () => {
  for (const fixture of fixtures) {
    test(fixture.name, () => {
      let feedsTried = 0;
      for (const chunks of feeds(fixture.bytes)) {
        const where = `split ${chunks.map((c) => c.length).join('+')}`;
        assert.deepEqual(decodePackets(chunks), fixture.packets, `PktLineDecoder, ${where}`);
        const message = decodeMessage(chunks);
        if ('code' in fixture.message) assert.deepEqual(message, fixture.message, where);
        else {
          assert.ok('payload' in message, `MessageDecoder, ${where}: ${JSON.stringify(message)}`);
          assert.equal(message.payload, fixture.message.payload, `MessageDecoder, ${where}`);
          assert.equal(message.rest, fixture.message.rest, `after the flush, ${where}`);
          // A piece never spans chunks and is never joined: at most one per packet per chunk.
          if (chunks.length === 1) assert.equal(message.pieces, fixture.message.pieces);
        }
        feedsTried++;
      }
      assert.ok(feedsTried > Math.min(fixture.bytes.length, 300));
    });
  }
});

describe('PktLineDecoder', () => {
  test('payloads are views of the pushed chunk; a copy only across chunks', () => {
    const chunk = wire('0008ping0009pong!0000');
    const decoder = new PktLineDecoder();
    decoder.push(chunk);
    const first = decoder.next();
    assert.ok(first?.kind === 'data');
    assert.equal(first.payload.buffer, chunk.buffer);
    assert.equal(first.payload.byteOffset, chunk.byteOffset + 4);
    assert.equal(decoder.bufferedBytes, chunk.length - 8);
    const split = new PktLineDecoder();
    split.push(chunk.subarray(0, 6));
    assert.equal(split.next(), undefined);
    split.push(chunk.subarray(6));
    const joined = split.next();
    assert.ok(joined?.kind === 'data');
    assert.equal(joined.payload.toString('latin1'), 'ping');
  });

  test('stays failed after a bad length', () => {
    const decoder = new PktLineDecoder();
    decoder.push(wire('0008pingzzzz0000'));
    assert.equal(decoder.next()?.kind, 'data');
    let first: unknown;
    try {
      decoder.next();
    } catch (err) {
      first = err;
    }
    assert.ok(first instanceof SimpleIpcError && first.code === 'ERR_PKT_LINE_LENGTH');
    decoder.push(wire('0000'));
    assert.throws(
      () => decoder.next(),
      (err: unknown) => err === first,
    );
  });
});

describe('MessageDecoder', () => {
  test('pieces are views of the pushed chunks, never copies', () => {
    const chunk = wire('0008ping0009pong!0000');
    const decoder = new MessageDecoder();
    const pieces: Buffer[] = [];
    assert.equal(decoder.started, false);
    // Split inside the second payload: the pieces are still views of the two chunks.
    const a = chunk.subarray(0, 15);
    const b = chunk.subarray(15);
    assert.equal(decoder.push(a, { onPiece: (p) => pieces.push(p) }), -1);
    assert.equal(decoder.started, true);
    assert.equal(decoder.done, false);
    assert.equal(decoder.push(b, { onPiece: (p) => pieces.push(p) }), b.length);
    assert.equal(decoder.done, true);
    assert.deepEqual(
      pieces.map((p) => p.toString('latin1')),
      ['ping', 'pon', 'g!'],
    );
    for (const piece of pieces) assert.equal(piece.buffer, chunk.buffer);
    assert.equal(decoder.payloadBytes, 9);
    decoder.end();
  });

  test('returns the offset just past the flush', () => {
    const decoder = new MessageDecoder();
    const chunk = wire('0008ping0000XYZ');
    assert.equal(decoder.push(chunk, { onPiece() {} }), 12);
    assert.equal(decoder.push(wire('0008more'), { onPiece: () => assert.fail('no piece') }), 0);
  });

  test('delim and response-end inside a message are protocol errors', () => {
    for (const text of ['0001', '0008ping0001', '00020000', '0008ping00020008pong0000']) {
      const decoder = new MessageDecoder();
      throwsCode(() => decoder.push(wire(text), { onPiece() {} }), 'ERR_PKT_LINE_UNEXPECTED', text);
    }
  });

  test('EOF before the flush is ERR_IPC_TRUNCATED, never a short success', () => {
    for (const text of ['', '0', '000', '0008', '0008pin', '0008ping', '0008ping000']) {
      const decoder = new MessageDecoder();
      decoder.push(wire(text), { onPiece() {} });
      throwsCode(() => decoder.end(), 'ERR_IPC_TRUNCATED', JSON.stringify(text));
    }
  });

  test('stays failed after an error, and end() reports that error', () => {
    const decoder = new MessageDecoder();
    let first: unknown;
    try {
      decoder.push(wire('zzzz0008ping0000'), { onPiece() {} });
    } catch (err) {
      first = err;
    }
    assert.ok(first instanceof SimpleIpcError && first.code === 'ERR_PKT_LINE_LENGTH');
    // The bytes that follow must not be read as if the stream were in step.
    assert.throws(
      () => decoder.push(wire('0000'), { onPiece() {} }),
      (err) => err === first,
    );
    assert.equal(decoder.done, false);
    assert.throws(
      () => decoder.end(),
      (err) => err === first,
    );
  });

  test('a sink that throws fails the decoder', () => {
    const decoder = new MessageDecoder();
    const boom = new Error('full');
    assert.throws(
      () =>
        decoder.push(wire('0008ping0000'), {
          onPiece() {
            throw boom;
          },
        }),
      (err) => err === boom,
    );
    assert.throws(
      () => decoder.push(wire('0000'), { onPiece() {} }),
      (err) => err === boom,
    );
  });
});

describe('PacketBuilder.addString', () => {
  test('encodes strings straight into packets, in order with buffers, within packet limits', () => {
    const pieces: (string | Buffer)[] = [];
    for (let i = 0; i < 5000; i++) {
      if (i % 7 === 0) pieces.push(Buffer.alloc(i % 5000, i & 255));
      else if (i % 3 === 0) pieces.push(`é€😀${i}`.repeat(1 + (i % 40)));
      else pieces.push(`row ${i}\n`);
    }
    pieces.push('x'.repeat(3000)); // over the short-string bound: encoded separately
    const builder = new PacketBuilder();
    for (const piece of pieces) {
      if (typeof piece === 'string') builder.addString(piece);
      else builder.add(piece);
    }
    builder.addString('');
    builder.addFlush();
    const wire = Buffer.concat(builder.take());
    const decoder = new PktLineDecoder();
    decoder.push(wire);
    const payloads: Buffer[] = [];
    for (let p = decoder.next(); p !== undefined; p = decoder.next()) {
      if (p.kind === 'data') {
        assert.ok(p.payload.length <= LARGE_PACKET_DATA_MAX);
        payloads.push(p.payload);
      } else assert.equal(p.kind, 'flush');
    }
    const expected = Buffer.concat(pieces.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
    assert.ok(Buffer.concat(payloads).equals(expected));
    // Coalesced: far fewer packets than pieces (each large buffer still has its own).
    assert.ok(payloads.length * 10 < pieces.length, `${payloads.length} packets`);
  });
});

/**
 * The pkt-line codec, as Git's `pkt-line.c` defines it: a packet is a 4-hex-digit length
 * (counting its own 4 bytes) followed by the payload; `0000` is flush, `0001` delim, `0002`
 * response-end. A Simple-IPC message is zero or more data packets ended by one flush.
 *
 * This module writes: the format's constants, reading and writing a length field, whole-message
 * and single-packet encoding, and {@link PacketBuilder}, which packetizes outgoing bytes, packing
 * small chunks into shared packets and referencing large ones without copying. Reading is in
 * src/pkt-line-decoder.ts.
 *
 * @module
 */

import { ErrorCode, SimpleIpcError } from './errors.js';
import { bytesOrString, invalidArgument } from './validate.js';

/** Largest packet, length field included (Git's `LARGE_PACKET_MAX`). */
export const LARGE_PACKET_MAX = 65520;
/** Largest payload of one packet (Git's `LARGE_PACKET_DATA_MAX`). */
export const LARGE_PACKET_DATA_MAX = LARGE_PACKET_MAX - 4;

// The three special packets below are for the application: the library never writes them (a
// Buffer cannot be frozen, and one it wrote from would let `FLUSH_PKT.write(...)` corrupt every
// message sent afterwards). It writes a flush with putPacketLength instead.

/**
 * The flush packet `0000`: ends a message. The library never writes this Buffer itself, so
 * changing it changes nothing the library sends.
 */
export const FLUSH_PKT: Buffer = Buffer.from('0000', 'latin1');
/**
 * The delimiter packet `0001` (protocol v2 sections). Not valid inside a Simple-IPC message.
 * The library never writes this Buffer itself.
 */
export const DELIM_PKT: Buffer = Buffer.from('0001', 'latin1');
/**
 * The response-end packet `0002` (protocol v2 stateless RPC). Not valid inside a Simple-IPC
 * message. The library never writes this Buffer itself.
 */
export const RESPONSE_END_PKT: Buffer = Buffer.from('0002', 'latin1');

// Hex digit values by byte; -1 for anything else. Git's reader accepts both cases and nothing
// else: no spaces, signs or `0x` (parseInt would take all of those).
const HEX_VALUE = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX_VALUE[0x30 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX_VALUE[0x61 + i] = 10 + i;
  HEX_VALUE[0x41 + i] = 10 + i;
}
const HEX_DIGITS = '0123456789abcdef';

/**
 * Reads the 4-hex-digit length at `offset` of `bytes` and checks it.
 * Returns the packet length (0, 1 and 2 for the special packets; 4..65520 for data).
 *
 * @throws {@link SimpleIpcError} `ERR_PKT_LINE_LENGTH` for non-hex digits, the length 3, or fewer
 *   than 4 bytes at `offset` (a negative one too); `ERR_PKT_LINE_TOO_LONG` above 65520;
 *   `ERR_IPC_INVALID_ARGUMENT` if `bytes` is not a Uint8Array or `offset` not a whole number.
 */
export function parsePacketLength(bytes: Uint8Array, offset = 0): number {
  // Without this check a missing byte reads as undefined, which `|` and `<<` turn into 0:
  // `00` would parse as a flush.
  if (!(
    bytes instanceof Uint8Array &&
    Number.isInteger(offset) &&
    offset >= 0 &&
    bytes.length - offset >= 4
  )) {
    if (!(bytes instanceof Uint8Array)) throw invalidArgument('bytes', bytes, 'a Uint8Array');
    if (!Number.isInteger(offset)) throw invalidArgument('offset', offset, 'a whole number');
    throw new SimpleIpcError(
      ErrorCode.PKT_LINE_LENGTH,
      `a packet length is 4 bytes; ${Math.max(0, bytes.length - offset)} at offset ${offset}`,
    );
  }
  const a = HEX_VALUE[bytes[offset]!]!;
  const b = HEX_VALUE[bytes[offset + 1]!]!;
  const c = HEX_VALUE[bytes[offset + 2]!]!;
  const d = HEX_VALUE[bytes[offset + 3]!]!;
  if ((a | b | c | d) < 0) {
    throw new SimpleIpcError(
      ErrorCode.PKT_LINE_LENGTH,
      `protocol error: bad line length character: ${JSON.stringify(
        Buffer.from(bytes.subarray(offset, offset + 4)).toString('latin1'),
      )}`,
    );
  }
  const length = (a << 12) | (b << 8) | (c << 4) | d;
  if (length === 3) {
    throw new SimpleIpcError(ErrorCode.PKT_LINE_LENGTH, 'protocol error: bad line length 3');
  }
  if (length > LARGE_PACKET_MAX) {
    throw new SimpleIpcError(
      ErrorCode.PKT_LINE_TOO_LONG,
      `protocol error: bad line length ${length} (the largest packet is ${LARGE_PACKET_MAX})`,
    );
  }
  return length;
}

/**
 * Writes `length` as 4 lowercase hex digits at `offset` (writers emit lowercase, like Git).
 *
 * @throws {@link SimpleIpcError} `ERR_IPC_INVALID_ARGUMENT` if `target` is not a Uint8Array with 4
 *   bytes at `offset`, or `length` is not a whole number from 0 to 65520.
 */
export function writePacketLength(target: Uint8Array, offset: number, length: number): void {
  if (!(target instanceof Uint8Array)) throw invalidArgument('target', target, 'a Uint8Array');
  if (!Number.isInteger(offset) || offset < 0 || offset > target.length - 4) {
    throw invalidArgument('offset', offset, `a whole number from 0 to ${target.length - 4}`);
  }
  if (!Number.isInteger(length) || length < 0 || length > LARGE_PACKET_MAX) {
    throw invalidArgument('length', length, `a whole number from 0 to ${LARGE_PACKET_MAX}`);
  }
  putPacketLength(target, offset, length);
}

// writePacketLength for callers whose arguments are right by construction.
function putPacketLength(target: Uint8Array, offset: number, length: number): void {
  target[offset] = HEX_DIGITS.charCodeAt((length >>> 12) & 15);
  target[offset + 1] = HEX_DIGITS.charCodeAt((length >>> 8) & 15);
  target[offset + 2] = HEX_DIGITS.charCodeAt((length >>> 4) & 15);
  target[offset + 3] = HEX_DIGITS.charCodeAt(length & 15);
}

/** Views `data` as a Buffer without copying; strings are encoded as UTF-8. */
export function toBuffer(data: string | Uint8Array): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (Buffer.isBuffer(data)) return data;
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Encodes one whole message: `payload` split into packets of at most 65516 bytes, then a flush.
 * An empty payload gives just `0000` (`0004` is never written: Git's reader would take an
 * empty data packet for the end of the message).
 */
export function encodeMessage(payload: string | Uint8Array): Buffer {
  const builder = new PacketBuilder();
  builder.add(toBuffer(bytesOrString(payload, 'payload')));
  builder.addFlush();
  const parts = builder.take();
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/**
 * Encodes one data packet. Use {@link encodeMessage} or {@link PacketBuilder} for payloads
 * that may be larger than one packet.
 *
 * @throws {@link SimpleIpcError} `ERR_PKT_LINE_TOO_LONG` when `payload` is over 65516 bytes,
 *   `ERR_PKT_LINE_LENGTH` when it is empty (an empty data packet is never written).
 */
export function encodePacket(payload: string | Uint8Array): Buffer {
  const data = toBuffer(bytesOrString(payload, 'payload'));
  if (data.length > LARGE_PACKET_DATA_MAX) {
    throw new SimpleIpcError(
      ErrorCode.PKT_LINE_TOO_LONG,
      `payload of ${data.length} bytes does not fit in one packet (at most ${LARGE_PACKET_DATA_MAX})`,
    );
  }
  if (data.length === 0) {
    throw new SimpleIpcError(ErrorCode.PKT_LINE_LENGTH, 'an empty data packet is never written');
  }
  const packet = Buffer.allocUnsafe(data.length + 4);
  putPacketLength(packet, 0, data.length + 4);
  data.copy(packet, 4);
  return packet;
}

// Payloads shorter than this are copied into a shared packet; longer ones are referenced.
const COPY_BELOW = 4096;
// First shared-packet buffer: only as large as a short reply and its flush need. It comes from
// Node's 8 KiB buffer pool, and a small one leaves the pool to many replies: at 2 KiB, a new
// pool was allocated every fourth reply, which made a one-packet response cost several times
// as much CPU (measured in docs/benchmarks.md). The next ones grow eightfold up to one full
// packet: a reply that goes on soon gets few, large packets, and a short one never allocates
// 64 KiB.
const FIRST_SCRATCH = 64;
const SCRATCH_GROWTH = 8;

/**
 * Turns outgoing bytes into packets with as few copies and buffers as possible.
 *
 * Small chunks are packed together into shared packets (so 10,000 small replies become a
 * dozen packets, not 10,000); a chunk of 4 KiB or more is cut into views of at most 65516
 * bytes, each behind its own 4-byte header, without copying. Call {@link PacketBuilder.take} to get what
 * to write, in order (for `socket.cork()` + writes, or one `writev`).
 */
export class PacketBuilder {
  #out: Buffer[] = [];
  #outBytes = 0;
  #scratch: Buffer | undefined;
  // Where the open shared packet starts in #scratch (its header), and where it ends so far.
  #packetStart = 0;
  #cursor = 0;
  // Part of #scratch already handed to #out.
  #emitted = 0;

  /** Bytes packetized but not yet taken. */
  get pendingBytes(): number {
    // Closed packets not yet handed out sit between #emitted and #packetStart.
    return this.#outBytes + (this.#cursor - this.#emitted);
  }

  /** Adds payload bytes. They may join the open packet; nothing is written for an empty chunk. */
  add(data: Buffer): void {
    if (!Buffer.isBuffer(data)) throw invalidArgument('data', data, 'a Buffer');
    const length = data.length;
    if (length === 0) return;
    if (length < COPY_BELOW) {
      this.#addSmall(data);
      return;
    }
    this.#closePacket();
    this.#emitScratch(); // what was packed before goes out before this chunk
    for (let offset = 0; offset < length; offset += LARGE_PACKET_DATA_MAX) {
      const end = Math.min(length, offset + LARGE_PACKET_DATA_MAX);
      const header = Buffer.allocUnsafe(4);
      putPacketLength(header, 0, end - offset + 4);
      this.#out.push(header, offset === 0 && end === length ? data : data.subarray(offset, end));
      this.#outBytes += end - offset + 4;
    }
  }

  /**
   * Adds a string as UTF-8. A short one is encoded straight into the shared packet, with no
   * Buffer of its own (many small string replies are the common case of chunked answers).
   */
  addString(text: string): void {
    if (typeof text !== 'string') throw invalidArgument('text', text, 'a string');
    const most = text.length * 3; // UTF-8 bytes per UTF-16 unit, at most
    if (most === 0) return;
    if (most >= COPY_BELOW) {
      this.add(Buffer.from(text, 'utf8'));
      return;
    }
    const open = this.#cursor - this.#packetStart;
    if (
      open > 0 &&
      (open + most > LARGE_PACKET_MAX || this.#scratch!.length - this.#cursor < most)
    ) {
      this.#closePacket();
    }
    if (this.#cursor === this.#packetStart) {
      this.#reserve(4 + most);
      this.#cursor += 4; // room for the header
    }
    this.#cursor += this.#scratch!.write(text, this.#cursor, 'utf8');
  }

  /** Adds a flush packet (the end of a message). */
  addFlush(): void {
    this.#closePacket();
    this.#reserve(4);
    putPacketLength(this.#scratch!, this.#cursor, 0);
    this.#cursor += 4;
    this.#packetStart = this.#cursor;
    this.#emitScratch();
  }

  /**
   * Closes the open packet and returns everything packetized so far, in order, as buffers to
   * write. The builder is empty afterwards.
   */
  take(): Buffer[] {
    this.#closePacket();
    this.#emitScratch();
    const out = this.#out;
    this.#out = [];
    this.#outBytes = 0;
    return out;
  }

  #addSmall(data: Buffer): void {
    let offset = 0;
    while (offset < data.length) {
      const open = this.#cursor - this.#packetStart; // header + payload so far, 0 if none
      if (open === 0) this.#reserve(4 + Math.min(data.length - offset, LARGE_PACKET_DATA_MAX));
      const scratch = this.#scratch!;
      if (this.#cursor === this.#packetStart) this.#cursor += 4; // room for the header
      const room = Math.min(
        scratch.length - this.#cursor,
        LARGE_PACKET_MAX - (this.#cursor - this.#packetStart),
      );
      const take = Math.min(room, data.length - offset);
      data.copy(scratch, this.#cursor, offset, offset + take);
      this.#cursor += take;
      offset += take;
      if (offset < data.length) this.#closePacket();
    }
  }

  // Makes sure the scratch buffer has `bytes` free after the cursor, starting a new one (and
  // handing the filled part of the old one to the output) when it has not.
  #reserve(bytes: number): void {
    const scratch = this.#scratch;
    if (scratch !== undefined && scratch.length - this.#cursor >= bytes) return;
    this.#emitScratch();
    // Room for a flush behind the first packet; then growing up to one full packet.
    const size =
      scratch === undefined
        ? Math.max(FIRST_SCRATCH, bytes + 4)
        : Math.max(bytes, Math.min(LARGE_PACKET_MAX, scratch.length * SCRATCH_GROWTH));
    this.#scratch = Buffer.allocUnsafe(size);
    this.#packetStart = 0;
    this.#cursor = 0;
    this.#emitted = 0;
  }

  #closePacket(): void {
    const length = this.#cursor - this.#packetStart;
    if (length === 0) return;
    putPacketLength(this.#scratch!, this.#packetStart, length);
    this.#packetStart = this.#cursor;
  }

  // Hands the closed packets of the scratch buffer to the output as one view.
  #emitScratch(): void {
    const scratch = this.#scratch;
    if (scratch === undefined || this.#packetStart === this.#emitted) return;
    this.#out.push(scratch.subarray(this.#emitted, this.#packetStart));
    this.#outBytes += this.#packetStart - this.#emitted;
    this.#emitted = this.#packetStart;
  }
}

// Frozen, prototype included: the library's own I/O runs through it, and an application that
// could replace a method would change what every server and client sends.
Object.freeze(PacketBuilder.prototype);
Object.freeze(PacketBuilder);

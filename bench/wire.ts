/**
 * The plain `node:net` baseline's pkt-line handling: the least a hand-written client or server
 * must do to speak Simple-IPC. It does not use the project's codec, so the baseline measures
 * Node itself, not a second copy of the library.
 */

/** Largest payload of one packet (Git's `LARGE_PACKET_DATA_MAX`). */
const PACKET_DATA_MAX = 65516;

const HEX = '0123456789abcdef';

// Hex digit value by byte. The baseline trusts its peer (it is one of ours): no validation
// beyond what finding the end of the message needs.
const HEX_VALUE = new Uint8Array(256);
for (let i = 0; i < 16; i++) {
  HEX_VALUE[HEX.charCodeAt(i)] = i;
  HEX_VALUE[HEX.toUpperCase().charCodeAt(i)] = i;
}

function writeLength(target: Buffer, offset: number, length: number): void {
  target[offset] = HEX.charCodeAt((length >>> 12) & 15);
  target[offset + 1] = HEX.charCodeAt((length >>> 8) & 15);
  target[offset + 2] = HEX.charCodeAt((length >>> 4) & 15);
  target[offset + 3] = HEX.charCodeAt(length & 15);
}

/** The wire bytes of a message whose payload is `size` copies of `byte`, built in one buffer. */
export function wireOfRun(size: number, byte: number): Buffer {
  const packets = Math.ceil(size / PACKET_DATA_MAX);
  const wire = Buffer.allocUnsafe(size + packets * 4 + 4);
  let at = 0;
  for (let left = size; left > 0;) {
    const take = Math.min(left, PACKET_DATA_MAX);
    writeLength(wire, at, take + 4);
    wire.fill(byte, at + 4, at + 4 + take);
    at += take + 4;
    left -= take;
  }
  wire.write('0000', at, 'latin1');
  return wire;
}

/** The wire bytes of a message carrying `payload` (split into full packets, then a flush). */
export function wireOf(payload: Buffer): Buffer {
  const packets = Math.ceil(payload.length / PACKET_DATA_MAX);
  const wire = Buffer.allocUnsafe(payload.length + packets * 4 + 4);
  let at = 0;
  for (let from = 0; from < payload.length; from += PACKET_DATA_MAX) {
    const to = Math.min(payload.length, from + PACKET_DATA_MAX);
    writeLength(wire, at, to - from + 4);
    payload.copy(wire, at + 4, from, to);
    at += to - from + 4;
  }
  wire.write('0000', at, 'latin1');
  return wire;
}

/**
 * Finds the end of one message in a byte stream, hopping from length field to length field,
 * and hands out the payload as views of the chunks (kept only when asked for).
 */
export class MessageEnd {
  /** Payload bytes seen. */
  payloadBytes = 0;
  /** Payload views, when collecting. */
  readonly pieces: Buffer[] | undefined;
  #skip = 0;
  #digits = 0;
  #length = 0;

  constructor(collect: boolean) {
    this.pieces = collect ? [] : undefined;
  }

  /** Scans `chunk`; returns the offset just past the flush, or -1 if the message goes on. */
  scan(chunk: Buffer): number {
    const size = chunk.length;
    let pos = 0;
    while (pos < size) {
      if (this.#skip > 0) {
        const end = Math.min(size, pos + this.#skip);
        this.pieces?.push(chunk.subarray(pos, end));
        this.payloadBytes += end - pos;
        this.#skip -= end - pos;
        pos = end;
        continue;
      }
      this.#length = (this.#length << 4) | HEX_VALUE[chunk[pos++]!]!;
      if (++this.#digits < 4) continue;
      const length = this.#length;
      this.#digits = 0;
      this.#length = 0;
      if (length === 0) return pos;
      if (length < 4) throw new Error(`baseline: unexpected special packet ${length}`);
      this.#skip = length - 4;
    }
    return -1;
  }

  /** The collected payload as one Buffer (one copy, as the project's whole form makes). */
  payload(): Buffer {
    const pieces = this.pieces ?? [];
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, this.payloadBytes);
  }
}

/**
 * The test daemon's application handler, answering as Git's `test-tool simple-ipc run-daemon`
 * does (`t/helper/test-simple-ipc.c`): `quit`, `ping`, `big`, `chunk`, `slow`,
 * `sendbytes <ballast>`, anything else. It is a streaming handler, so a `sendbytes` request of
 * any size is checked in bounded memory.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { QUIT, type Reply, type StreamingRequestHandler } from '../src/index.js';

/** Rows of `big` and `chunk`. */
const BIG_ROWS = 10_000;
/** Rows of `slow`, and the pause after each, in ms. */
const SLOW_ROWS = 1_000;
const SLOW_PAUSE_MS = 10;
/** Largest request other than `sendbytes` the test daemon takes (it echoes unknown ones). */
const MAX_COMMAND = 128 * 1024 * 1024;

const SENDBYTES = Buffer.from('sendbytes ', 'latin1');

/** Row `i` of the `big` answer: `big: %.75d\n`. */
export function bigRow(i: number): string {
  return `big: ${String(i).padStart(75, '0')}\n`;
}

/** The whole `big` answer (810,000 bytes). */
export function bigAnswer(): Buffer {
  const rows: string[] = [];
  for (let i = 0; i < BIG_ROWS; i++) rows.push(bigRow(i));
  return Buffer.from(rows.join(''), 'latin1');
}

// Runs of one byte value to compare ballast against, one per byte value, shared by all
// requests: a fresh one per request was a tenth of the daemon's time under many small
// sendbytes, and one shared run refilled for each letter of Git's `multiple` not much less.
const sameRuns: (Buffer | undefined)[] = [];

function runOf(byte: number, length: number): Buffer {
  let run = sameRuns[byte];
  if (run === undefined || run.length < length) {
    run = Buffer.alloc(Math.max(length, 65536), byte);
    sameRuns[byte] = run;
  }
  return run;
}

/** Counts a `sendbytes` ballast as it streams by, as Git's handler does with `strlen`. */
class BallastCheck {
  first = -1;
  length = 0;
  errors = 0;
  #ended = false; // a NUL byte ends the ballast (Git measures it with strlen)
  #same: Buffer | undefined;

  add(piece: Buffer): void {
    if (this.#ended || piece.length === 0) return;
    const nul = piece.indexOf(0);
    if (nul >= 0) {
      this.#ended = true;
      piece = piece.subarray(0, nul);
      if (piece.length === 0) return;
    }
    let from = 0;
    if (this.first < 0) {
      this.first = piece[0]!;
      from = 1;
    }
    this.length += piece.length;
    const body = piece.subarray(from);
    if (body.length === 0) return;
    // Compare in bulk against a run of the first byte; count byte by byte only on a mismatch.
    if (this.#same === undefined || this.#same.length < body.length) {
      this.#same = runOf(this.first, body.length);
    }
    if (body.equals(this.#same.subarray(0, body.length))) return;
    for (let i = 0; i < body.length; i++) if (body[i] !== this.first) this.errors++;
  }

  answer(): Buffer {
    if (this.errors > 0) return Buffer.from(`errs:${this.errors}\n`, 'latin1');
    // latin1: the first byte goes out as that one byte, whatever its value.
    const first = String.fromCharCode(Math.max(this.first, 0));
    return Buffer.from(`rcvd:${first}${String(this.length).padStart(8, '0')}\n`, 'latin1');
  }
}

async function answer(command: Buffer, reply: Reply): Promise<typeof QUIT | undefined> {
  const text = command.toString('latin1');
  switch (text) {
    case 'quit':
      return QUIT;
    case 'ping':
      await reply('pong');
      return undefined;
    case 'big':
      await reply(bigAnswer());
      return undefined;
    case 'chunk':
      for (let i = 0; i < BIG_ROWS; i++) await reply(bigRow(i));
      return undefined;
    case 'slow':
      for (let i = 0; i < SLOW_ROWS; i++) {
        await reply(bigRow(i));
        await sleep(SLOW_PAUSE_MS);
      }
      return undefined;
    default:
      await reply(Buffer.concat([Buffer.from('unhandled command: ', 'latin1'), command]));
      return undefined;
  }
}

/** The test daemon: pass it to `startServer(path, testDaemon)`. */
export const testDaemon: { readonly stream: StreamingRequestHandler } = {
  async stream(request, reply) {
    const head: Buffer[] = [];
    let headBytes = 0;
    let check: BallastCheck | undefined;
    let plain = false; // known not to be sendbytes: just collect it
    for await (const piece of request) {
      if (check !== undefined) {
        check.add(piece);
        continue;
      }
      head.push(piece);
      headBytes += piece.length;
      if (headBytes > MAX_COMMAND) {
        throw new Error(`request over ${MAX_COMMAND} bytes that is not sendbytes`);
      }
      if (plain || headBytes < SENDBYTES.length) continue;
      const joined = Buffer.concat(head, headBytes);
      if (joined.subarray(0, SENDBYTES.length).equals(SENDBYTES)) {
        check = new BallastCheck();
        check.add(joined.subarray(SENDBYTES.length));
      } else {
        plain = true;
        head.length = 0;
        head.push(joined);
      }
    }
    if (check !== undefined) {
      await reply(check.answer());
      return undefined;
    }
    return answer(Buffer.concat(head, headBytes), reply);
  },
};

/** The same, as the default export: the handler module of `run-daemon --processes=N`. */
export default testDaemon;

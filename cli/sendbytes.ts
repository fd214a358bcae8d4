/**
 * The `sendbytes` exchange of Git's test tool, shared by `sendbytes` and `multiple` (whose
 * senders may run in worker threads).
 */

import { type ConnectOptions, LARGE_PACKET_DATA_MAX, sendCommand } from '../src/client.js';
import { fail, type Progress } from './io.js';

const SENDBYTES_PREFIX = Buffer.from('sendbytes ', 'latin1');

/**
 * One sendbytes exchange (Git's `do_sendbytes()`): resolves with the line Git prints for it,
 * `sent:<byte><count> <answer>`, or throws `CliExit` with Git's error line. A request of
 * up to one block is built and sent whole; a larger one is generated in blocks, never held
 * whole.
 */
export async function sendbytesOnce(
  path: string,
  byte: number,
  count: number,
  connect: ConnectOptions,
  progress?: Progress,
): Promise<string> {
  let answer: Buffer;
  try {
    const request =
      count + SENDBYTES_PREFIX.length <= BALLAST_BLOCK
        ? smallBallast(byte, count)
        : ballast(byte, count, progress);
    answer = await sendCommand(path, request, connect);
  } catch {
    throw fail(`client failed to sendbytes(${count}, '${String.fromCharCode(byte)}') to '${path}'`);
  } finally {
    progress?.done();
  }
  return `sent:${String.fromCharCode(byte)}${String(count).padStart(8, '0')} ${rtrim(answer)}\n`;
}

// Whole numbers of full packets, so that a streamed request is packetized exactly as Git's
// client packetizes the same request (and as a whole one is).
const BALLAST_BLOCK = LARGE_PACKET_DATA_MAX * 16;

function smallBallast(byte: number, count: number): Buffer {
  const request = Buffer.allocUnsafe(SENDBYTES_PREFIX.length + count);
  SENDBYTES_PREFIX.copy(request);
  return request.fill(byte, SENDBYTES_PREFIX.length);
}

// The request `sendbytes ` + `count` bytes, generated in blocks.
function* ballast(byte: number, count: number, progress?: Progress): Generator<Buffer> {
  const block = Buffer.alloc(Math.min(count + SENDBYTES_PREFIX.length, BALLAST_BLOCK), byte);
  SENDBYTES_PREFIX.copy(block);
  const total = count + SENDBYTES_PREFIX.length;
  let sent = 0;
  while (sent < total) {
    const n = Math.min(block.length, total - sent);
    yield n === block.length ? block : block.subarray(0, n);
    if (sent === 0) block.fill(byte, 0, SENDBYTES_PREFIX.length);
    sent += n;
    progress?.update(sent - Math.min(sent, SENDBYTES_PREFIX.length), count);
  }
}

// Git's strbuf_rtrim(): drop trailing white space.
function rtrim(answer: Buffer): string {
  let end = answer.length;
  while (end > 0 && isSpace(answer[end - 1]!)) end--;
  return answer.subarray(0, end).toString('latin1');
}

function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

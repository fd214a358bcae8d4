// What every contender's server answers, so that all of them move the same bytes:
//   'ping'   -> 'pong'
//   'send N' -> N bytes of 'y' (made once per size, then reused: no contender pays to make it)
//   other    -> 'ok <length of the request>'
// A server that speaks Buffers calls answerBuffer(); one that speaks JSON strings (node-ipc,
// vscode-jsonrpc) calls answerString(). Both sides check what they get (see checked() below).
import { Buffer } from 'node:buffer';

const made = new Map();

/** The answer to `request` as a Buffer. @param {Uint8Array} request */
export function answerBuffer(request) {
  if (
    request.length === 4 &&
    Buffer.from(request.buffer, request.byteOffset, 4).toString('latin1') === 'ping'
  ) {
    return Buffer.from('pong', 'latin1');
  }
  if (request.length < 32) {
    const text = Buffer.from(request.buffer, request.byteOffset, request.length).toString('latin1');
    if (text.startsWith('send ')) return big(Number(text.slice(5)), 'buffer');
  }
  return Buffer.from(`ok ${request.length}`, 'latin1');
}

/** The answer to `request` as a string. @param {string} request */
export function answerString(request) {
  if (request === 'ping') return 'pong';
  if (request.length < 32 && request.startsWith('send ')) {
    return big(Number(request.slice(5)), 'string');
  }
  return `ok ${request.length}`;
}

function big(size, kind) {
  if (!Number.isSafeInteger(size) || size < 0 || size > 2 ** 30) {
    throw new Error(`bench server: bad size ${size}`);
  }
  const key = `${kind} ${size}`;
  let value = made.get(key);
  if (value === undefined) {
    value = kind === 'buffer' ? Buffer.alloc(size, 'y') : 'y'.repeat(size);
    made.set(key, value);
  }
  return value;
}

/**
 * A request the client sends, in the contender's kind.
 * @param {'buffer' | 'string'} kind
 * @param {{ kind: 'ping' } | { kind: 'upload', size: number } | { kind: 'download', size: number }} what
 */
export function request(kind, what) {
  const text =
    what.kind === 'ping' ? 'ping' : what.kind === 'download' ? `send ${what.size}` : undefined;
  if (text !== undefined) return kind === 'buffer' ? Buffer.from(text, 'latin1') : text;
  return kind === 'buffer' ? Buffer.alloc(what.size, 'x') : 'x'.repeat(what.size);
}

/**
 * Checks the answer to `what` and returns its length in bytes; throws on a wrong one, so that a
 * wrong answer fails the run instead of making it faster.
 */
export function checked(what, response) {
  const length = response.length;
  if (what.kind === 'download') {
    if (length !== what.size) throw new Error(`expected ${what.size} bytes, got ${length}`);
    const last =
      typeof response === 'string' ? response.charCodeAt(length - 1) : response[length - 1];
    if (length > 0 && last !== 0x79) throw new Error('the response is not all y');
    return length;
  }
  const text = typeof response === 'string' ? response : Buffer.from(response).toString('latin1');
  const expected = what.kind === 'ping' ? 'pong' : `ok ${what.size}`;
  if (text !== expected) throw new Error(`expected ${expected}, got ${text.slice(0, 40)}`);
  return length;
}

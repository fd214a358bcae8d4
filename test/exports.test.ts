/**
 * Nothing the application can reach changes what the library sends: every exported value is
 * frozen, or a copy the library never uses. The mutation is for the whole process, so this file
 * holds this one test (node --test runs each file in a process of its own).
 */

import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import * as api from '../src/index.js';
import { netAddress, rawExchange, tempDir, test, until } from './helpers.js';

// Taken before the mutation: the test's own tools.
const { connect, encodeMessage, getActiveState, sendCommand, startServer } = api;
const BIG = 'x'.repeat(5000);

/**
 * Writes over every writable byte and property reachable from `value` through own properties
 * (a class's statics, its prototype's methods, an object's fields), depth first: methods become
 * functions that throw, other values junk, and Buffers are filled with `9`s.
 */
function mutate(value: unknown, seen: Set<unknown>): void {
  if (ArrayBuffer.isView(value)) {
    new Uint8Array(value.buffer, value.byteOffset, value.byteLength).fill(0x39);
    return;
  }
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return;
  if (seen.has(value)) return;
  seen.add(value);
  const target = value as Record<PropertyKey, unknown>;
  for (const key of Reflect.ownKeys(target)) {
    const descriptor = Object.getOwnPropertyDescriptor(target, key)!;
    if ('value' in descriptor) mutate(descriptor.value, seen);
    const junk =
      typeof descriptor.value === 'function' || descriptor.get !== undefined
        ? () => {
            throw new Error(`replaced ${String(key)}`);
          }
        : '9999';
    try {
      target[key] = junk;
    } catch {
      // frozen or read-only: as it should be
    }
    try {
      Object.defineProperty(target, key, { value: junk });
    } catch {
      // not configurable
    }
  }
}

/** What the server sends for `hello` + 5000 bytes, and what the clients send. */
async function exchanges(serverPath: string, rawPath: string, seen: string[]) {
  const whole = (await rawExchange(serverPath, Buffer.from('0008ping0000'))).response;
  seen.length = 0;
  // A request without its flush gets no answer: the timeout ends the wait with an error.
  const answer = await sendCommand(rawPath, 'ping', { timeout: 2000 }).catch(codeOf);
  const connection = await connect(rawPath);
  const pieces: Buffer[] = [];
  let streamed: string;
  try {
    for await (const piece of connection.stream(['a', 'b'], { timeout: 2000 })) pieces.push(piece);
    streamed = Buffer.concat(pieces).toString();
  } catch (err) {
    streamed = codeOf(err);
  }
  await until('the raw server saw both requests', () => seen.length === 2);
  return {
    // Head, size and tail: a diff of 5000 bytes would hide the change.
    server: [whole.subarray(0, 13), whole.length, whole.subarray(-4)].map(String),
    answers: [answer.toString(), streamed],
    clients: [...seen],
    encoded: encodeMessage('abc').toString('latin1'),
    state: await getActiveState(serverPath),
    missing: await sendCommand(join(serverPath, '..', 'none'), 'x').catch(codeOf),
  };
}

function codeOf(err: unknown): string {
  return String((err as { code?: unknown }).code);
}

test('mutating every exported value changes no byte a server or client sends', async (t) => {
  const dir = tempDir(t);
  const serverPath = join(dir, 's');
  const server = await startServer(serverPath, async (_request, reply) => {
    await reply('hello');
    await reply(BIG);
  });
  t.after(() => server.destroy());
  // A raw server that records what clients send, and answers `ok`.
  const rawPath = join(dir, 'raw');
  const seen: string[] = [];
  const raw = createServer((socket: Socket) => {
    let bytes = '';
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.toString('latin1');
      if (bytes.endsWith('0000')) socket.end('0006ok0000');
    });
    socket.on('close', () => seen.push(bytes));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => raw.listen(netAddress(rawPath), resolve));
  t.after(() => new Promise<void>((resolve) => raw.close(() => resolve())));

  const expected = {
    server: ['0009hello138c', '5017', '0000'],
    answers: ['ok', 'ok'],
    clients: ['0008ping0000', '0006ab0000'],
    encoded: '0007abc0000',
    state: 'listening',
    missing: 'ERR_IPC_PATH_NOT_FOUND',
  };
  assert.deepEqual(await exchanges(serverPath, rawPath, seen), expected, 'before');

  const visited = new Set<unknown>();
  for (const value of Object.values(api)) mutate(value, visited);
  assert.ok(visited.size > 30, `walked ${visited.size} objects`);

  assert.deepEqual(await exchanges(serverPath, rawPath, seen), expected, 'after the mutation');
});

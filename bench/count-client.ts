/**
 * A client that makes N sequential `ping` round trips and exits, for counting instructions per
 * round trip (`valgrind --tool=callgrind`, run once with N and once with 3N; the difference over
 * 2N is the steady-state cost of one round trip). See docs/benchmarks.md, "Counting
 * instructions".
 *
 *   node count-client.js MODE PATH N [CONCURRENCY]
 *
 * MODE is `project` (`sendCommand(path, 'ping')`), `net-connect` (a plain `node:net` client as
 * it is usually written: `net.connect(path, cb)`), or `net-lean` (the leanest plain client: a
 * Socket made without options, then connected, prebuilt wire bytes, one listener per event).
 * Every answer must be `pong`; anything else fails the run.
 */

import { connect, Socket } from 'node:net';
import { sendCommand } from '../src/index.js';
import { MessageEnd } from './wire.js';

const REQUEST = Buffer.from('0008ping0000', 'latin1');

function netExchange(path: string, lean: boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const response = new MessageEnd(true);
    const socket = lean
      ? new Socket().connect(path, () => socket.write(REQUEST))
      : connect(path, () => socket.write(REQUEST));
    socket.on('data', (chunk: Buffer) => {
      if (response.scan(chunk) < 0) return;
      socket.destroy();
      resolve(response.payload());
    });
    socket.on('error', reject);
  });
}

const [mode, path, count, concurrency] = process.argv.slice(2);
if (path === undefined || count === undefined) {
  throw new Error('usage: count-client.js project|net-connect|net-lean PATH N [CONCURRENCY]');
}
const exchange =
  mode === 'project'
    ? (): Promise<Buffer> => sendCommand(path, 'ping')
    : mode === 'net-connect' || mode === 'net-lean'
      ? (): Promise<Buffer> => netExchange(path, mode === 'net-lean')
      : undefined;
if (exchange === undefined) throw new Error(`unknown mode ${String(mode)}`);
const total = Number(count);
let next = 0;
const worker = async (): Promise<void> => {
  while (next < total) {
    next++;
    const answer = await exchange();
    if (answer.length !== 4 || answer.toString('latin1') !== 'pong') {
      throw new Error(`unexpected answer ${JSON.stringify(answer.toString('latin1'))}`);
    }
  }
};
await Promise.all(Array.from({ length: Math.max(1, Number(concurrency ?? 1)) }, worker));

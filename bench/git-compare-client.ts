/**
 * The plain `node:net` client of `git-compare.ts`: the test tool's `multiple` and `sendbytes`
 * workloads done with bare sockets and prebuilt wire bytes, printing the same last line. It is
 * the floor for any Node client on this machine: what Node itself costs per round trip.
 *
 *   node git-compare-client.js multiple --name=PATH --threads=N --batchsize=N --bytecount=N
 *   node git-compare-client.js sendbytes --name=PATH --bytecount=N
 */

import { connect } from 'node:net';
import { MessageEnd, wireOfRun } from './wire.js';

const SENDBYTES = Buffer.from('sendbytes ', 'latin1');

function option(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? fallback : Number(arg.slice(name.length + 3));
}

// The request `sendbytes ` + `count` times `byte`, as wire bytes.
function request(byte: number, count: number): Buffer {
  const wire = wireOfRun(SENDBYTES.length + count, byte);
  SENDBYTES.copy(wire, 4);
  return wire;
}

function exchange(path: string, wire: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const response = new MessageEnd(true);
    const socket = connect(path, () => socket.write(wire));
    socket.on('data', (chunk: Buffer) => {
      if (response.scan(chunk) < 0) return;
      socket.destroy();
      resolve(response.payload());
    });
    socket.on('error', reject);
  });
}

function line(byte: number, count: number, answer: Buffer): string {
  const letter = String.fromCharCode(byte);
  return `sent:${letter}${String(count).padStart(8, '0')} ${answer.toString('latin1').trimEnd()}\n`;
}

const [command] = process.argv.slice(2);
const nameArg = process.argv.find((a) => a.startsWith('--name='));
if (nameArg === undefined) throw new Error('--name=PATH is required');
const path = nameArg.slice(7);
let out = '';
if (command === 'sendbytes') {
  const count = option('bytecount', 1024);
  out = line(0x78, count, await exchange(path, request(0x78, count)));
} else if (command === 'multiple') {
  const threads = option('threads', 5);
  const batch = option('batchsize', 10);
  const bytecount = option('bytecount', 1024);
  let good = 0;
  const sender = async (k: number): Promise<void> => {
    const letter = 0x41 + (k % 26);
    const base = bytecount + batch * Math.floor(k / 26);
    for (let j = 0; j < batch; j++) {
      out += line(letter, base + j, await exchange(path, request(letter, base + j)));
      good++;
    }
  };
  await Promise.all(Array.from({ length: threads }, (_, k) => sender(k)));
  out += `client (good ${good}) (join 0), (errors 0)\n`;
} else {
  throw new Error(`unknown command ${String(command)}`);
}
process.stdout.write(out);

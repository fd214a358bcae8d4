// One measured repetition, in a fresh process spawned by run.mjs:
//   node client.mjs <contender> <socket path> <job as JSON>
// job: { scenario: 'sequential' | 'concurrent' | 'upload' | 'download', requests, clients, size }
// Connects its clients, sends each one 'ping' (not timed: warms up the code and, for the
// persistent contenders, opens the connection), then times the job and prints
// `{ ms, requests, bytes }` as one JSON line.
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { checked, request } from './answer.mjs';
import { load } from './contenders.mjs';

const [name, path, jobText] = process.argv.slice(2);
const job = JSON.parse(jobText);
const contender = await load(name);

const ping = { kind: 'ping' };
const what =
  job.scenario === 'upload'
    ? { kind: 'upload', size: job.size }
    : job.scenario === 'download'
      ? { kind: 'download', size: job.size }
      : ping;
const body = request(contender.kind, what);
const pingBody = request(contender.kind, ping);

const clients = [];
for (let i = 0; i < job.clients; i++) clients.push(await contender.connect(path));
for (const client of clients) checked(ping, await client.call(pingBody));

let left = job.requests;
let bytes = 0;
async function loop(client) {
  while (left > 0) {
    left--;
    const response = await client.call(body);
    bytes += checked(what, response);
  }
}

const start = performance.now();
await Promise.all(clients.map(loop));
const ms = performance.now() - start;

for (const client of clients) await client.close();
process.stdout.write(`${JSON.stringify({ ms, requests: job.requests, bytes })}\n`);
process.exit(0);

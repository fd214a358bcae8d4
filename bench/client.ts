/**
 * A benchmark client, run as a child process of `run.ts`:
 * `node client.js <project|baseline> <socket path>`. It runs the jobs it is sent and answers
 * with what it measured. Every answer is checked, so a wrong response fails the benchmark
 * instead of making it faster.
 *
 * The project side uses the public API as an application would (`sendCommand`,
 * `Connection.stream`); the baseline side is a plain `node:net` client writing the same bytes.
 */

import { connect as netConnect } from 'node:net';
import {
  CHUNK_ANSWER_BYTES,
  type Command,
  cpuTime,
  downloadRequest,
  type Impl,
  type Job,
  type JobResult,
  loadLibrary,
  now,
  peakRss,
  uploadAnswer,
} from './protocol.js';
import { MessageEnd, wireOf, wireOfRun } from './wire.js';

const REQUEST_BYTE = 0x78; // 'x'
const PING = 'ping';
const CHUNK = 'chunk';

const [impl, path] = process.argv.slice(2) as [Impl, string];
const { lib, daemon } = await loadLibrary();
const { connect, sendCommand } = lib;
const { bigAnswer } = daemon;
const CHUNK_ANSWER = bigAnswer();

/** A request as one side sends it: the project takes the payload, the baseline wire bytes. */
type Prepared = string | Buffer;

/** One side's way to make one round trip: the response payload, whole or only counted. */
interface Side {
  prepare(request: string | { readonly size: number }): Prepared;
  exchange(request: Prepared, whole: boolean): Promise<{ payload?: Buffer; size: number }>;
}

const project: Side = {
  prepare(request) {
    // Strings go to the library as strings, as an application would pass them.
    return typeof request === 'string' ? request : Buffer.alloc(request.size, REQUEST_BYTE);
  },
  async exchange(request, whole) {
    if (whole) {
      const payload = await sendCommand(path, request, { waitIfBusy: true });
      return { payload, size: payload.length };
    }
    const connection = await connect(path, { waitIfBusy: true });
    let size = 0;
    for await (const piece of connection.stream(request)) size += piece.length;
    return { size };
  },
};

const baseline: Side = {
  prepare(request) {
    // Prebuilt wire bytes: the baseline pays nothing to packetize.
    return typeof request === 'string'
      ? wireOf(Buffer.from(request, 'latin1'))
      : wireOfRun(request.size, REQUEST_BYTE);
  },
  exchange(request, whole) {
    return new Promise((resolve, reject) => {
      const response = new MessageEnd(whole);
      let done = false;
      const socket = netConnect(path, () => socket.write(request));
      socket.on('data', (chunk: Buffer) => {
        if (response.scan(chunk) < 0) return;
        done = true;
        socket.destroy();
        resolve(
          whole
            ? { payload: response.payload(), size: response.payloadBytes }
            : { size: response.payloadBytes },
        );
      });
      socket.on('error', reject);
      socket.on('close', () => {
        if (!done) reject(new Error('baseline client: the server hung up early'));
      });
    });
  },
};

const side = impl === 'project' ? project : baseline;

function expect(ok: boolean, what: string): void {
  if (!ok) throw new Error(`${impl} client: wrong answer (${what})`);
}

// Large requests are built once, before any clock starts.
const uploads = new Map<number, Prepared>();
function uploadRequest(size: number): Prepared {
  let request = uploads.get(size);
  if (request === undefined) {
    request = side.prepare({ size });
    uploads.set(size, request);
  }
  return request;
}

async function sequential(
  count: number,
  latencies: number[],
  one: () => Promise<number>,
): Promise<number> {
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    bytes += await one();
    latencies.push(performance.now() - t0);
  }
  return bytes;
}

async function run(job: Job): Promise<JobResult> {
  const latencies: number[] = [];
  let requests = 0;
  let bytes = 0;
  let start = now();
  let cpu0 = cpuTime();
  switch (job.kind) {
    case 'ping': {
      const request = side.prepare(PING);
      let next = 0;
      const loop = async (): Promise<void> => {
        while (next < job.requests) {
          next++;
          const t0 = performance.now();
          const { payload } = await side.exchange(request, true);
          latencies.push(performance.now() - t0);
          expect(payload!.toString('latin1') === 'pong', 'pong');
        }
      };
      start = now();
      cpu0 = cpuTime();
      await Promise.all(Array.from({ length: job.concurrency }, loop));
      requests = job.requests;
      bytes = requests * 8;
      break;
    }
    case 'upload': {
      const request = uploadRequest(job.size);
      const answer = uploadAnswer(job.size);
      start = now();
      cpu0 = cpuTime();
      bytes = await sequential(1, latencies, async () => {
        const { payload } = await side.exchange(request, true);
        expect(payload!.toString('latin1') === answer, answer);
        return job.size + payload!.length;
      });
      requests = 1;
      break;
    }
    case 'download': {
      const request = side.prepare(downloadRequest(job.size));
      start = now();
      cpu0 = cpuTime();
      bytes = await sequential(1, latencies, async () => {
        const { size } = await side.exchange(request, !job.stream);
        expect(size === job.size, `${job.size} bytes, got ${size}`);
        return size + downloadRequest(job.size).length;
      });
      requests = 1;
      break;
    }
    case 'chunk': {
      const request = side.prepare(CHUNK);
      start = now();
      cpu0 = cpuTime();
      bytes = await sequential(job.requests, latencies, async () => {
        const { payload } = await side.exchange(request, true);
        expect(payload!.equals(CHUNK_ANSWER), 'the chunk rows');
        return CHUNK_ANSWER_BYTES + CHUNK.length;
      });
      requests = job.requests;
      break;
    }
  }
  const end = now();
  return { start, end, requests, bytes, latencies, cpuUs: cpuTime() - cpu0 };
}

process.on('message', (message: Command) => {
  if (message.cmd === 'run') {
    run(message.job).then(
      (result) => process.send!({ result }),
      (err: unknown) => process.send!({ error: err instanceof Error ? err.stack : String(err) }),
    );
  } else if (message.cmd === 'rss') process.send!({ rss: peakRss() });
  else if (message.cmd === 'exit') process.exit(0);
});
process.on('disconnect', () => process.exit(0));
process.send!({ ready: true });

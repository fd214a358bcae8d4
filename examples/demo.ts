/**
 * `npm start`: a tour of simple-ipc in under two seconds. Starts a server on a temporary socket,
 * probes it, sends a few requests (one answered in many chunks, some in parallel), prints what
 * happened, and stops the server cleanly.
 */

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  connect,
  getActiveState,
  QUIT,
  sendCommand,
  type Server,
  startServer,
  stopOnSignals,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'simple-ipc-demo-'));
const path = join(dir, 'demo.sock');
const ms = (since: number): string => `${(performance.now() - since).toFixed(1)} ms`;
const show = (line: string): void => console.log(`  ${line}`);
// Ctrl-C (or SIGTERM) stops the server gracefully; the tour ends there, cleaning up.
let interrupted: NodeJS.Signals | undefined;
let server: Server | undefined;

try {
  console.log(`simple-ipc demo, socket ${path}`);
  show(`state before the server starts: ${await getActiveState(path)}`);

  // The application's handler: answer in one piece or in many; QUIT stops the server.
  server = await startServer(
    path,
    async (request, reply) => {
      const [command, argument = ''] = request.toString().split(' ');
      switch (command) {
        case 'ping':
          await reply('pong');
          return undefined;
        case 'lines':
          // One reply per line: the client sees a stream it can read as it arrives.
          for (let i = 1; i <= Number(argument); i++) await reply(`line ${i}\n`);
          return undefined;
        case 'upper':
          await reply(argument.toUpperCase());
          return undefined;
        case 'quit':
          await reply('bye');
          return QUIT;
        default:
          await reply(`unknown command: ${command}`);
          return undefined;
      }
    },
    { threads: 4 },
  );
  stopOnSignals(server, { onSignal: (signal) => void (interrupted ??= signal) });
  show(`server listening with 4 threads; state now: ${await getActiveState(path)}`);

  let t = performance.now();
  show(`ping -> ${(await sendCommand(path, 'ping')).toString()}  (${ms(t)})`);

  t = performance.now();
  const connection = await connect(path);
  let pieces = 0;
  let bytes = 0;
  let last = '';
  for await (const piece of connection.stream('lines 5000')) {
    pieces++;
    bytes += piece.length;
    last = piece.toString();
  }
  show(
    `lines 5000 -> ${bytes} bytes in ${pieces} piece(s) as they came, ending with "${last.trim().split('\n').pop()}"  (${ms(t)})`,
  );

  t = performance.now();
  const words = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta'];
  const answers = await Promise.all(words.map((w) => sendCommand(path, `upper ${w}`)));
  show(`${words.length} requests in parallel -> ${answers.join(' ')}  (${ms(t)})`);

  show(`quit -> ${(await sendCommand(path, 'quit')).toString()}`);
  await server.closed;
  const stats = server.stats();
  show(
    `server stopped: ${stats.connections} connections (${stats.probes} of them liveness probes), ${stats.requests} requests, ${stats.responses} responses, ${stats.bytesIn} bytes in, ${stats.bytesOut} bytes out`,
  );
  show(`socket removed: ${existsSync(path) ? 'no' : 'yes'}`);
} catch (err) {
  // Requests fail once the server stops: expected after Ctrl-C, a bug otherwise.
  if (interrupted === undefined) throw err;
} finally {
  if (interrupted !== undefined) {
    await server?.closed;
    show(`${interrupted}: server stopped, socket removed: ${existsSync(path) ? 'no' : 'yes'}`);
  }
  rmSync(dir, { recursive: true, force: true });
}

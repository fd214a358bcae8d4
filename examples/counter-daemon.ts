/**
 * A self-starting daemon in a few lines. The first run starts the server in the background;
 * later runs reuse it (the count goes on); it stops by itself after a minute without use, or
 * on Ctrl-C / SIGTERM.
 *
 *   node dist/examples/counter-daemon.js     # 1
 *   node dist/examples/counter-daemon.js     # 2
 */

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
// In your own project: from 'simple-ipc'.
import { connectOrStart, startServer, stopOnSignals, stopWhenIdle } from '../src/index.js';

const path = join(tmpdir(), `counter-daemon-${process.getuid?.() ?? 'user'}.sock`);

if (process.argv[2] === '--serve') {
  // The daemon: started by connectOrStart below, detached, with its output in the log file.
  let count = 0;
  const server = await startServer(path, (_request, reply) => reply(String(++count)));
  stopWhenIdle(server, 60_000);
  stopOnSignals(server);
} else {
  // The client: connect, starting the daemon first if nothing listens.
  const connection = await connectOrStart(path, {
    command: process.execPath,
    args: [fileURLToPath(import.meta.url), '--serve'],
    logFile: `${path}.log`,
  });
  console.log((await connection.send('next')).toString());
}

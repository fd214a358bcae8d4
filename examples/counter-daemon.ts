/**
 * A self-starting daemon in a few lines. The first run starts the server in the background;
 * later runs reuse it (the count goes on); it stops by itself after a minute without use, or
 * on Ctrl-C / SIGTERM.
 *
 *   node dist/examples/counter-daemon.js     # 1
 *   node dist/examples/counter-daemon.js     # 2
 */

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
// In your own project: from 'simple-ipc'.
import {
  connectOrStart,
  startServer,
  stopOnSignals,
  stopWhenIdle,
  userSocketDirectory,
} from '../src/index.js';

// In a directory only this user can reach: a fixed name in a shared directory such as /tmp
// could be taken first by another user, who would then receive the requests
// (docs/security.md).
const path = join(userSocketDirectory(), 'counter-daemon.sock');

if (process.argv[2] === '--serve') {
  // The daemon: started by connectOrStart below, detached, with its output in the log file.
  let count = 0;
  const server = await startServer(path, (_request, reply) => reply(String(++count)));
  stopWhenIdle(server, 60_000);
  stopOnSignals(server); // Ctrl-C or SIGTERM: stop gracefully, remove the socket, exit 0
  console.log(`counter daemon ${process.pid} listening at ${path}`);
} else {
  // The client: connect, starting the daemon first if nothing listens.
  const connection = await connectOrStart(path, {
    command: process.execPath,
    args: [fileURLToPath(import.meta.url), '--serve'],
    logFile: `${path}.log`,
  });
  console.log((await connection.send('next')).toString());
}

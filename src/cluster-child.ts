/**
 * A process of a clustered server other than the first (see {@link startClusteredServer}):
 * forked by the first process, it receives the listening socket and the handler module, and
 * serves on that socket until told to stop, or until the first process is gone.
 *
 * Not part of the public API.
 *
 * @module
 */

import type { Server as NetServer } from 'node:net';
import { type ClusterMessage, loadHandler } from './cluster.js';
import { errorData } from './handoff.js';
import { attachListener, makeServer, type Server, setServerGroup } from './server.js';
import { serverSettings } from './server-options.js';

function tell(message: ClusterMessage): void {
  if (process.connected) process.send!(message);
}

let loaded: Server | undefined; // made once the handler has loaded
let server: Server | undefined; // once it serves on the listening socket

// Signals are the first process's business: it tells this one when to stop (a Ctrl-C reaches
// the whole process group, and must not cut this process's conversations short).
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});

async function load(message: ClusterMessage & { kind: 'simple-ipc:serve' }): Promise<void> {
  const options = message.options;
  let handler;
  try {
    handler = await loadHandler(message.module);
  } catch (err) {
    tell({ kind: 'simple-ipc:failed', message: (err as Error).message });
    process.exit(1);
  }
  const made = makeServer(
    message.path,
    handler,
    serverSettings({
      ...options.server,
      maxRequestSize: options.server.maxRequestSize ?? Number.POSITIVE_INFINITY,
      onHandlerError: options.handlerErrors
        ? (error) => tell({ kind: 'simple-ipc:handler-error', error: errorData(error) })
        : undefined,
      debug: options.debug
        ? (line) => tell({ kind: 'simple-ipc:debug', message: line })
        : undefined,
    }),
  );
  // A stop of this process's own making (a QUIT) is the whole group's: tell the first process.
  setServerGroup(made, {
    stop: () => {
      const reason = made.stopReason?.kind;
      if (reason !== undefined) tell({ kind: 'simple-ipc:stopping', reason });
    },
    closed: Promise.resolve(),
  });
  loaded = made;
  tell({ kind: 'simple-ipc:loaded' });
}

// Called as the socket arrives, before this process's event loop can accept on it: every
// connection it accepts has a handler.
function listen(listener: NetServer): void {
  const running = loaded!;
  attachListener(running, listener);
  server = running;
  void running.closed.then(() => process.exit(0));
  tell({ kind: 'simple-ipc:ready' });
}

function stop(hard: boolean): void {
  // Not serving yet (the first process never sends the socket once it stops): nothing to finish.
  if (server === undefined) process.exit(0);
  if (hard) void server.destroy();
  else void server.stop();
}

process.on('message', (message: ClusterMessage, handle: unknown) => {
  if (message.kind === 'simple-ipc:serve') void load(message);
  else if (message.kind === 'simple-ipc:listen') listen(handle as NetServer);
  else if (message.kind === 'simple-ipc:stop') stop(message.hard);
});

// The first process is gone (it exited or was killed): finish what is running, then leave.
process.on('disconnect', () => {
  if (server === undefined) process.exit(0);
  else void server.stop();
});

// node-ipc 9.2.1 (before the 2022 sabotage: run.mjs refuses a lockfile with peacenotwar or a
// sabotaged release). Messages are JSON `{ type, data }` followed by a form feed, over one
// persistent connection per client; data is a string here.
import { createRequire } from 'node:module';
import { answerString } from '../answer.mjs';

const require = createRequire(import.meta.url);

export const kind = 'string';

function instance(id) {
  const { IPC } = require('node-ipc');
  const ipc = new IPC();
  ipc.config.id = id;
  ipc.config.silent = true;
  ipc.config.maxRetries = 0;
  return ipc;
}

export async function serve(path) {
  const ipc = instance('bench');
  await new Promise((resolve) => {
    ipc.serve(path, () => {
      ipc.server.on('call', (data, socket) => ipc.server.emit(socket, 'call', answerString(data)));
      resolve();
    });
    ipc.server.start();
  });
  return async () => ipc.server.stop();
}

let clients = 0;

export async function connect(path) {
  const ipc = instance(`client${clients}`);
  const id = `bench${clients++}`;
  const waiting = [];
  await new Promise((resolve, reject) => {
    ipc.connectTo(id, path, () => {
      const peer = ipc.of[id];
      peer.on('connect', resolve);
      peer.on('error', (err) => {
        reject(err);
        for (const w of waiting.splice(0)) w.reject(err);
      });
      peer.on('call', (data) => waiting.shift()?.resolve(data));
    });
  });
  return {
    call: (request) =>
      new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        ipc.of[id].emit('call', request);
      }),
    close: async () => ipc.disconnect(id),
  };
}

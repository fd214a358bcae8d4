// Plain node:net, a new connection per request (as simple-ipc and Git's Simple-IPC do): connect,
// one frame each way, close.
import { connect as netConnect } from 'node:net';
import { readFrames, writeFrame } from '../frame.mjs';
import { serveFrames } from './net-server.mjs';

export const kind = 'buffer';
export const serve = serveFrames;

export async function connect(path) {
  return {
    call: (request) =>
      new Promise((resolve, reject) => {
        const socket = netConnect(path, () => writeFrame(socket, request));
        socket.on('error', reject);
        socket.on('close', () => reject(new Error('closed before the answer')));
        readFrames(socket, (response) => {
          resolve(response);
          socket.destroy();
        });
      }),
    close: async () => {},
  };
}

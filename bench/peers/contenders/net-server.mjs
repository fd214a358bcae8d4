// The plain node:net server both node:net contenders use: frames in, frames out, as many per
// connection as the client sends.
import { createServer } from 'node:net';
import { answerBuffer } from '../answer.mjs';
import { readFrames, writeFrame } from '../frame.mjs';

export async function serveFrames(path) {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    readFrames(socket, (request) => writeFrame(socket, answerBuffer(request)));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, resolve);
  });
  return () => new Promise((resolve) => server.close(() => resolve()));
}

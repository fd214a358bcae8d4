// vscode-jsonrpc (the Language Server Protocol's transport): JSON-RPC requests framed by a
// Content-Length header over one persistent node:net connection per client; data is a string.
import { createServer, connect as netConnect } from 'node:net';
import { createRequire } from 'node:module';
import { answerString } from '../answer.mjs';

const require = createRequire(import.meta.url);

export const kind = 'string';

function messageConnection(socket) {
  const rpc = require('vscode-jsonrpc/node');
  return rpc.createMessageConnection(
    new rpc.SocketMessageReader(socket),
    new rpc.SocketMessageWriter(socket),
  );
}

export async function serve(path) {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    const connection = messageConnection(socket);
    connection.onRequest('call', (request) => answerString(request));
    connection.onError(() => {});
    socket.on('close', () => connection.dispose());
    connection.listen();
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, resolve);
  });
  return () => new Promise((resolve) => server.close(() => resolve()));
}

export async function connect(path) {
  const socket = netConnect(path);
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const connection = messageConnection(socket);
  connection.listen();
  return {
    call: (request) => connection.sendRequest('call', request),
    close: async () => {
      connection.dispose();
      socket.destroy();
    },
  };
}

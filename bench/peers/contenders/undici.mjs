// undici's Client to a node:http server: POST the request, the response is the body; HTTP/1.1
// keep-alive on one persistent connection per client.
import { Buffer } from 'node:buffer';
import { answerBuffer } from '../answer.mjs';

export const kind = 'buffer';

export async function serve(path) {
  const { createServer } = await import('node:http');
  const server = createServer((req, res) => {
    const pieces = [];
    req.on('data', (piece) => pieces.push(piece));
    req.on('end', () => {
      const body = answerBuffer(pieces.length === 1 ? pieces[0] : Buffer.concat(pieces));
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, resolve);
  });
  return () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
}

export async function connect(path) {
  const { Client } = await import('undici');
  const client = new Client('http://localhost', { socketPath: path });
  return {
    call: async (request) => {
      const { statusCode, body } = await client.request({
        path: '/',
        method: 'POST',
        body: request,
      });
      if (statusCode !== 200) throw new Error(`HTTP ${statusCode}`);
      return Buffer.from(await body.arrayBuffer());
    },
    close: () => client.close(),
  };
}

// simple-ipc itself, through the built library (dist/src of this repository, made by
// `npm run build`): startServer() with a whole-request handler, sendCommand() per request (the
// protocol is one request per connection, as in Git).
import { URL } from 'node:url';
import { answerBuffer } from '../answer.mjs';

const LIBRARY = new URL('../../../dist/src/index.js', import.meta.url);

export const kind = 'buffer';

export async function serve(path) {
  const { startServer } = await import(LIBRARY.href);
  const server = await startServer(
    path,
    async (request, reply) => {
      await reply(answerBuffer(request));
    },
    { maxRequestSize: 2 ** 31 },
  );
  return () => server.stop();
}

export async function connect(path) {
  const { sendCommand } = await import(LIBRARY.href);
  return { call: (request) => sendCommand(path, request), close: async () => {} };
}

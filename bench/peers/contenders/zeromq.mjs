// zeromq 6 (libzmq 4.3 through its prebuilt Node addon, shipped in the npm package): REQ/REP
// over ipc://, one persistent connection per client. libzmq does its socket I/O on a native
// thread of its own, beside the JavaScript thread.
import { answerBuffer } from '../answer.mjs';

export const kind = 'buffer';

export async function serve(path) {
  const zmq = await import('zeromq');
  const socket = new zmq.Reply({ linger: 0 });
  await socket.bind(`ipc://${path}`);
  void (async () => {
    for await (const [request] of socket) await socket.send(answerBuffer(request));
  })().catch(() => {});
  return async () => socket.close();
}

export async function connect(path) {
  const zmq = await import('zeromq');
  const socket = new zmq.Request({ linger: 0 });
  socket.connect(`ipc://${path}`);
  return {
    call: async (request) => {
      await socket.send(request);
      const [response] = await socket.receive();
      return response;
    },
    close: async () => socket.close(),
  };
}

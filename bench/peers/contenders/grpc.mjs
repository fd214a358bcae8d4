// @grpc/grpc-js: one unary method with identity (de)serializers (no protobuf: the payload is
// the message), over HTTP/2 on one persistent connection per client. Message size limits are
// lifted so that 64 MiB may pass.
import { answerBuffer } from '../answer.mjs';

const METHOD = '/bench.Bench/Call';
const same = (value) => value;
const UNLIMITED = {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
};

export const kind = 'buffer';

export async function serve(path) {
  const grpc = await import('@grpc/grpc-js');
  const server = new grpc.Server(UNLIMITED);
  const definition = {
    path: METHOD,
    requestStream: false,
    responseStream: false,
    requestSerialize: same,
    requestDeserialize: same,
    responseSerialize: same,
    responseDeserialize: same,
  };
  server.addService(
    { Call: definition },
    { Call: (call, done) => done(null, answerBuffer(call.request)) },
  );
  await new Promise((resolve, reject) =>
    server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  return () => new Promise((resolve) => server.tryShutdown(() => resolve()));
}

export async function connect(path) {
  const grpc = await import('@grpc/grpc-js');
  // A channel of its own per client (grpc-js would otherwise share one connection among them).
  const client = new grpc.Client(`unix:${path}`, grpc.credentials.createInsecure(), {
    ...UNLIMITED,
    'grpc.use_local_subchannel_pool': 1,
  });
  return {
    call: (request) =>
      new Promise((resolve, reject) =>
        client.makeUnaryRequest(METHOD, same, same, request, (err, response) =>
          err ? reject(err) : resolve(response),
        ),
      ),
    close: async () => client.close(),
  };
}

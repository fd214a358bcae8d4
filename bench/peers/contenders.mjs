// The contenders, in table order. Each module under contenders/ exports `kind` ('buffer' or
// 'string': what its messages are), `serve(path)` (resolves to a close function once it
// listens) and `connect(path)` (resolves to `{ call(request), close() }`; one connection, or for
// the per-request ones a caller that opens one per call).

/** @type {readonly { name: string; title: string }[]} */
export const CONTENDERS = Object.freeze([
  { name: 'net-per-request', title: 'node:net, connection per request' },
  { name: 'net-persistent', title: 'node:net, persistent connection' },
  { name: 'simple-ipc', title: 'simple-ipc' },
  { name: 'node-ipc', title: 'node-ipc 9.2.1' },
  { name: 'grpc', title: '@grpc/grpc-js 1.14.7' },
  { name: 'vscode-jsonrpc', title: 'vscode-jsonrpc 8.2.1' },
  { name: 'undici', title: 'undici 7.30.3 -> node:http' },
  { name: 'zeromq', title: 'zeromq 6.8.0 (REQ/REP)' },
]);

/** Loads a contender's module by name. */
export function load(name) {
  if (!CONTENDERS.some((c) => c.name === name)) throw new Error(`no contender ${name}`);
  return import(`./contenders/${name}.mjs`);
}

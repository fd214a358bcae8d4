/**
 * The client entry, `simple-ipc/client`: the client's public API, re-exports only, for programs
 * that only ask a server (a short-lived command above all). It loads no server, daemon starter,
 * cluster or worker code, and none of the Node built-ins that only those use: a script that
 * imports it and sends one request starts about as fast as a plain `node:net` script
 * (docs/benchmarks.md, "Client start-up"). Everything here is also exported, as the same
 * objects, by the main entry. Besides the client: its errors (`SimpleIpcError`, `ErrorCode`,
 * `isSimpleIpcError`), the socket path rules and the pkt-line constants, which cost nothing
 * more to load.
 *
 * Connecting is connect.ts's (one attempt: connect-attempt.ts), the connection object
 * connection.ts's, one exchange exchange.ts's, and the one-call client send-command.ts's.
 *
 * @packageDocumentation
 */

export { pipeNameFor, SOCKET_PATH_MAX, USES_NAMED_PIPES } from './address.js';
export {
  ActiveState,
  CONNECT_RETRY_INTERVAL_MS,
  CONNECT_TIMEOUT_MS,
  type ConnectOptions,
  type ConnectResult,
  connect,
  getActiveState,
  tryConnect,
} from './connect.js';
export { Connection } from './connection.js';
export {
  type ClientRequestContext,
  type ClientRetryMessage,
  DiagnosticsChannel,
} from './diagnostics.js';
export { ErrorCode, isSimpleIpcError, SimpleIpcError } from './errors.js';
export { type Message, type SendOptions } from './exchange.js';
export {
  DELIM_PKT,
  FLUSH_PKT,
  LARGE_PACKET_DATA_MAX,
  LARGE_PACKET_MAX,
  RESPONSE_END_PKT,
} from './pkt-line.js';
export { sendCommand } from './send-command.js';

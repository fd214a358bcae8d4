/**
 * The client's public API, re-exports only: what index.ts exports from the client side,
 * for code that must not load the server, the daemon starter or the worker pool (the CLI's
 * client commands). Connecting is connect.ts's (one attempt: connect-attempt.ts), the connection
 * object connection.ts's, one exchange exchange.ts's, and the one-call client send-command.ts's.
 *
 * @module
 */

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
export { type Message, type SendOptions } from './exchange.js';
export { sendCommand } from './send-command.js';

/**
 * simple-ipc: Git's Simple-IPC for Node.js. Public API (re-exports only).
 *
 * @packageDocumentation
 */

export { pipeNameFor, SOCKET_PATH_MAX, USES_NAMED_PIPES } from './address.js';
export {
  ActiveState,
  CONNECT_RETRY_INTERVAL_MS,
  CONNECT_TIMEOUT_MS,
  Connection,
  type ConnectOptions,
  type ConnectResult,
  connect,
  getActiveState,
  type Message,
  type SendOptions,
  sendCommand,
  tryConnect,
} from './client.js';
export {
  type ConnectOrStartOptions,
  connectOrStart,
  type DaemonOptions,
  type StartedDaemon,
  startDaemon,
} from './daemon.js';
export { type ClusteredServerOptions, startClusteredServer } from './cluster.js';
export {
  type ClientRequestContext,
  type ClientRetryMessage,
  DiagnosticsChannel,
  type RejectReason,
  type ServerErrorMessage,
  type ServerMessage,
  type ServerRejectedMessage,
  type ServerRequestContext,
  type ServerRequestOutcome,
  type ServerStolenMessage,
  type ServerStopMessage,
} from './diagnostics.js';
export { ErrorCode, isSimpleIpcError, SimpleIpcError } from './errors.js';
export { describeTheft, type TheftReason } from './ownership.js';
export { type UserSocketDirectoryOptions, userSocketDirectory } from './socket-dir.js';
export {
  DELIM_PKT,
  encodeMessage,
  encodePacket,
  FLUSH_PKT,
  LARGE_PACKET_DATA_MAX,
  LARGE_PACKET_MAX,
  PacketBuilder,
  parsePacketLength,
  RESPONSE_END_PKT,
  writePacketLength,
} from './pkt-line.js';
export { MessageDecoder, type Packet, type PieceSink, PktLineDecoder } from './pkt-line-decoder.js';
export {
  type IdleOptions,
  type ServerPolicy,
  type SignalOptions,
  stopOnSignals,
  stopWhenIdle,
} from './policies.js';
export {
  type Handler,
  type RequestContext,
  type RequestHandler,
  Server,
  type StreamingRequestHandler,
  startServer,
} from './server.js';
export {
  type HandlerResult,
  QUIT,
  type Reply,
  type ServerOptions,
  type ServerStats,
  type StopReason,
} from './server-options.js';
export {
  type WorkerChunk,
  type WorkerHandler,
  type WorkerHandlerOptions,
  type WorkerResult,
  type WorkerTask,
  type WorkerTaskContext,
  workerHandler,
} from './workers.js';

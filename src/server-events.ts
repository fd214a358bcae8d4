/**
 * What a server tells the diagnostics channels (src/diagnostics.ts) beyond a publish call: how
 * a traced connection ended, what made a request bad, and the `debug` option, which is a
 * subscriber of the server's channels. The Server (src/server.ts) calls these; they read a
 * conversation (src/conversation.ts) and change nothing.
 *
 * @module
 */

import { type Conversation, Phase } from './conversation.js';
import {
  kServer,
  type RejectReason,
  serverAcceptFailed,
  serverRejected,
  type ServerRequestOutcome,
  settleServer,
  type ServerTrace,
} from './diagnostics.js';
import { ErrorCode, SimpleIpcError } from './errors.js';
import { callObserver } from './guard.js';

/**
 * The `debug` option: a subscriber of the rejected and accept-failed channels, for the events
 * of `server` only. Lines as they always were. Returns what ends the subscription.
 */
export function subscribeDebug(server: object, debug: (message: string) => void): () => void {
  const onRejected = (m: unknown): void => {
    const message = m as { [kServer]?: unknown; reason: RejectReason; error: Error };
    if (message[kServer] !== server) return;
    if (message.reason === 'timeout')
      callObserver('options.debug', debug, 'closed a stalled client');
    else if (message.reason !== 'queue-full' && message.reason !== 'stopping') {
      callObserver('options.debug', debug, `dropped a bad request: ${message.error.message}`);
    }
  };
  const onAcceptFailed = (m: unknown): void => {
    const message = m as { [kServer]?: unknown; error: Error };
    if (message[kServer] !== server) return;
    callObserver('options.debug', debug, `accept failed: ${message.error.message}`);
  };
  serverRejected.subscribe(onRejected);
  serverAcceptFailed.subscribe(onAcceptFailed);
  return () => {
    serverRejected.unsubscribe(onRejected);
    serverAcceptFailed.unsubscribe(onAcceptFailed);
  };
}

/** Why a request the handler never saw was bad: its error, or a cut-short one. */
export function badRequestError(conversation: Conversation): Error {
  return (
    conversation.inbound.error ??
    new SimpleIpcError(ErrorCode.TRUNCATED, 'the client hung up mid-request')
  );
}

export function rejectReason(error: Error): RejectReason {
  const code = (error as Partial<SimpleIpcError>).code;
  if (code === ErrorCode.TOO_LARGE) return 'too-large';
  if (code === ErrorCode.TRUNCATED || code === ErrorCode.CONNECTION_CLOSED) return 'cut-short';
  return 'malformed';
}

/** A traced conversation's socket closed: how it ended, published on the tracing channel. */
export function settleTrace(conversation: Conversation, trace: ServerTrace): void {
  const socket = conversation.socket;
  trace.requestBytes = socket.bytesRead;
  trace.responseBytes = socket.bytesWritten ?? 0;
  let outcome: ServerRequestOutcome;
  let error: unknown;
  switch (conversation.phase) {
    case Phase.Reading:
      if (!conversation.inbound.started) outcome = 'probe';
      else {
        outcome = conversation.timedOut ? 'timeout' : 'bad-request';
        error = badRequestError(conversation);
      }
      break;
    case Phase.Waiting:
      outcome = 'dropped';
      error = conversation.inbound.error;
      break;
    default:
      if (trace.error !== undefined) {
        outcome = 'handler-error';
        error = trace.error;
      } else if (conversation.timedOut) {
        outcome = 'timeout';
        error = new SimpleIpcError(ErrorCode.TIMEOUT, 'the client stalled; connection closed');
      } else if (conversation.phase === Phase.Running || conversation.clientGone) {
        outcome = 'client-gone';
        error = new SimpleIpcError(
          ErrorCode.CONNECTION_CLOSED,
          'the connection closed before the response was complete',
        );
      } else outcome = 'ok';
  }
  settleServer(trace, outcome, error);
}

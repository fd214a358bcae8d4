/**
 * {@link sendCommand}: the client in one call, Git's `ipc_client_send_command()`. It connects
 * (connect.ts, connect-attempt.ts) and exchanges (exchange.ts) under one Promise settled from
 * the socket's events, without making a `Connection`.
 *
 * @module
 */

import { Socket } from 'node:net';
import {
  busyDeadline,
  busyWait,
  type ConnectOptions,
  type ConnectSettings,
  connectSettings,
  connectWithRetries,
} from './connect.js';
import { connectOnce } from './connect-attempt.js';
import { beginClient, clientRequest, ClientTrace, settleClient, traced } from './diagnostics.js';
import { abortError, SimpleIpcError } from './errors.js';
import {
  checkMessage,
  exchangeWhole,
  type Message,
  type SendOptions,
  type SendSettings,
  sendSettings,
} from './exchange.js';

/**
 * Connects, sends `request`, and returns the whole response: Git's
 * `ipc_client_send_command()`.
 *
 * @example
 * ```ts
 * const answer = await sendCommand('/run/me/app.sock', 'ping', { waitIfBusy: true });
 * ```
 * @throws {@link SimpleIpcError} a connect error (see {@link connect}), an exchange error (see
 *   {@link Connection.send}), or `ERR_IPC_INVALID_ARGUMENT` (before connecting).
 */
export function sendCommand(
  path: string,
  request: Message,
  options: ConnectOptions & SendOptions = {},
): Promise<Buffer> {
  // One Promise for the whole round trip, settled from the socket's events: each async layer
  // (connect, exchange, collect) would add a Promise, a turn of the microtask queue and a
  // look-up of `then` on the value it settled with. Only the retry path is async.
  return new Promise<Buffer>((resolve, reject) => {
    // Everything is checked before connecting: a bad send option must not cost a connection.
    checkMessage(request);
    const send = sendSettings(options);
    const settings = connectSettings(path, options);
    const signal = settings.signal;
    if (signal?.aborted) throw abortError(signal);
    if (traced(clientRequest)) {
      const trace = new ClientTrace(path, 'sendCommand');
      beginClient(trace, () => {
        roundTrip(path, request, send, settings, resolve, reject, trace);
      });
    } else roundTrip(path, request, send, settings, resolve, reject, undefined);
  });
}

/** sendCommand's connect and exchange, settling `resolve` or `reject`. */
function roundTrip(
  path: string,
  request: Message,
  send: SendSettings,
  settings: ConnectSettings,
  resolve: (response: Buffer) => void,
  reject: (err: Error) => void,
  trace: ClientTrace | undefined,
): void {
  // A connect that fails settles the trace too (the exchange settles it otherwise).
  const fail =
    trace === undefined ? reject : (err: Error) => settleClient(trace, err, () => reject(err));
  const signal = settings.signal;
  if (settings.checkOwner) {
    // The owner checks are file-system look-ups: the ordinary, asynchronous way.
    connectWithRetries(path, settings, undefined, trace).then((result) => {
      if (result instanceof Socket) {
        exchangeWhole(result, path, request, send, resolve, reject, trace);
      } else fail(result.error);
    }, fail);
    return;
  }
  const deadline = busyDeadline(settings);
  connectOnce(path, settings.disallowChdir, busyWait(deadline), signal, (outcome) => {
    if (!(outcome instanceof SimpleIpcError)) {
      exchangeWhole(outcome, path, request, send, resolve, reject, trace);
    } else if (signal?.aborted) {
      fail(abortError(signal));
    } else {
      // The first attempt failed: Git's retry rules, the ordinary way.
      connectWithRetries(path, settings, { error: outcome, deadline }, trace).then((result) => {
        if (result instanceof Socket) {
          exchangeWhole(result, path, request, send, resolve, reject, trace);
        } else fail(result.error);
      }, fail);
    }
  });
}

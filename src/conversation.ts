/**
 * One accepted connection of a server, from its first byte to its close: the request read into
 * an {@link InboundMessage}, the response written through an {@link OutboundMessage}, the phase
 * it is in, and the socket's event listeners that drive it. The server (src/server.ts) decides
 * when a request runs and when a conversation is timed out or cut off; it tells this module
 * nothing else, and learns of progress and of the close through a {@link ConversationHost}.
 *
 * Internal: nothing here is part of the public API, and a handler never sees a conversation
 * (its context is the server's HandlerContext).
 *
 * @module
 */

import type { Socket } from 'node:net';
import { ErrorCode, SimpleIpcError } from './errors.js';
import { type InboundLimits, InboundMessage } from './inbound-message.js';
import { OutboundMessage } from './outbound-message.js';
import type { Reply } from './server-options.js';
import type { ServerTrace } from './diagnostics.js';

/** @internal Where a conversation stands. */
export enum Phase {
  Reading = 0,
  Waiting = 1,
  Running = 2,
  /** The response is written; waiting for the client to hang up. */
  Finishing = 3,
  Done = 4,
}

/**
 * @internal What a conversation needs of its server. A server makes one, with closures over
 * its private members, so that nothing on a Server or on its class names them; a conversation
 * holds it instead of the server.
 */
export interface ConversationHost {
  /** What each request's InboundMessage is made with: the same for every connection. */
  readonly requestLimits: InboundLimits;
  /** The sweeper's tick now (see the server's `TICK_MS`). */
  tick(): number;
  /** Request bytes arrived; the server dispatches once enough is there. */
  requestProgress(conversation: Conversation): void;
  /** The conversation's socket closed. */
  conversationClosed(conversation: Conversation): void;
}

const kConversation = Symbol('conversation');

type TaggedSocket = Socket & { [kConversation]?: Conversation };

/**
 * The open conversations, in an array: each knows its index, and leaving moves the last one
 * into its place. Not a Set: on Node 24 a Set that gains and loses an entry per connection kept
 * V8's young generation at its largest (134 MB, against 34 MB with this array, in a benchmark
 * server under 8 clients; docs/benchmarks.md has the figures), probably through the hash
 * tables the Set keeps replacing, which survive until a full collection.
 *
 * @internal
 */
export class ConversationList {
  readonly #items: Conversation[] = [];

  get size(): number {
    return this.#items.length;
  }

  add(conversation: Conversation): void {
    conversation.listIndex = this.#items.length;
    this.#items.push(conversation);
  }

  /** Removes `conversation`; false if it was not in the list. */
  delete(conversation: Conversation): boolean {
    const items = this.#items;
    const index = conversation.listIndex;
    if (index < 0 || items[index] !== conversation) return false;
    const last = items.pop()!;
    if (last !== conversation) {
      items[index] = last;
      last.listIndex = index;
    }
    conversation.listIndex = -1;
    return true;
  }

  /** A copy to go through: closing conversations on the way changes the list. */
  toArray(): Conversation[] {
    return this.#items.slice();
  }
}

/** @internal One accepted connection: its request, its response, and where it stands. */
export class Conversation {
  readonly host: ConversationHost;
  readonly socket: TaggedSocket;
  readonly inbound: InboundMessage;
  #outbound: OutboundMessage | undefined;
  phase: Phase = Phase.Reading;
  activeTick: number;
  timedOut = false;
  /** The socket failed or closed before the handler ended. */
  clientGone = false;
  /** The handler's end has been taken (a thenable may call back more than once). */
  handlerEnded = false;
  #controller: AbortController | undefined;
  /** Response bytes the client had taken at the last sweep. */
  #taken = 0;
  /** Where this conversation is in the server's {@link ConversationList}; -1 once out. */
  listIndex = -1;
  /** Its `simple-ipc:server:request` context, when that channel had a subscriber at the accept. */
  trace: ServerTrace | undefined = undefined;

  /**
   * Takes `socket`'s events from here on: its listeners are this module's functions, which find
   * the conversation on the socket (no closure is made per connection).
   */
  constructor(host: ConversationHost, socket: TaggedSocket, tick: number) {
    this.host = host;
    this.socket = socket;
    this.activeTick = tick;
    this.inbound = new InboundMessage(host.requestLimits, socket);
    socket[kConversation] = this;
    socket.on('data', socketOnData);
    socket.on('end', socketOnEnd);
    socket.on('error', socketOnError);
    socket.on('close', socketOnClose);
  }

  /** The response writer, made when the handler runs (a probe never needs one). */
  get outbound(): OutboundMessage {
    if (this.#outbound === undefined) this.#outbound = new OutboundMessage(this.socket);
    return this.#outbound;
  }

  /** The handler's `reply`. */
  reply(): Reply {
    const outbound = this.outbound;
    return (chunk) => outbound.write(chunk);
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.socket.destroyed) this.#controller.abort(this.#closedError());
    }
    return this.#controller.signal;
  }

  /** True while a reply waits for the client to take bytes. */
  get waitingForDrain(): boolean {
    return this.socket.writableNeedDrain;
  }

  /**
   * Counts response bytes the client took since the last look as activity: a long response to a
   * client that reads steadily is not a stall, however long it takes in all. Bytes written and
   * not yet taken stay in `writableLength`; the rest of `bytesWritten` has left.
   */
  noteBytesTaken(tick: number): void {
    const socket = this.socket;
    const taken = (socket.bytesWritten ?? 0) - socket.writableLength;
    if (taken !== this.#taken) {
      this.#taken = taken;
      this.activeTick = tick;
    }
  }

  /**
   * The handler ended: write the flush and end our side. The client hangs up once it has read
   * the flush (then Node destroys the socket); one that does not is closed by the sweeper.
   */
  finish(): void {
    this.phase = Phase.Finishing;
    this.outbound.end(true);
    // Reading stopped only if the client sent more after its flush; read on to see it leave.
    if (this.socket.isPaused()) this.socket.resume();
  }

  /**
   * The server is stopping and the response is complete: close once it is written out (then
   * it is in the client's hands), whether or not the client ever hangs up.
   */
  closeWhenWritten(): void {
    const socket = this.socket;
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', socketOnFinish);
  }

  fail(err: SimpleIpcError): void {
    if (err.code === ErrorCode.TIMEOUT) this.timedOut = true;
    // A handler whose client is closed under it (responseTimeout) fails through no fault of its
    // own: its reply rejects, and that is the client gone, not a handler error.
    if (this.phase === Phase.Running) this.clientGone = true;
    this.inbound.fail(err);
    this.socket.destroy();
  }

  /** The server cuts the connection off: destroy(), or a stop that ran out of time. */
  cutOff(): void {
    // A running handler whose connection the server itself closed has not failed: its reply
    // rejects, and that is counted as for a client closed by responseTimeout (clientGone),
    // neither counted nor reported as a handler error.
    if (this.phase === Phase.Running) this.clientGone = true;
    this.socket.destroy();
  }

  closed(): void {
    // An error is built only for someone still waiting: most conversations end complete.
    if (this.phase === Phase.Running || (this.phase !== Phase.Finishing && this.inbound.started)) {
      if (this.phase === Phase.Running) this.clientGone = true;
      const err = this.#closedError();
      this.inbound.fail(err);
      this.#outbound?.abort(err);
      this.#controller?.abort(err);
    }
    this.host.conversationClosed(this);
  }

  #closedError(): SimpleIpcError {
    return new SimpleIpcError(ErrorCode.CONNECTION_CLOSED, 'the client closed the connection');
  }
}

function socketOnData(this: TaggedSocket, chunk: Buffer): void {
  const conversation = this[kConversation]!;
  const host = conversation.host;
  conversation.activeTick = host.tick();
  const inbound = conversation.inbound;
  if (inbound.complete) {
    // Bytes after the flush belong to no message: ignored, and no more are read while the
    // handler runs (reading resumes at the end, to see the client hang up).
    if (conversation.phase !== Phase.Finishing) this.pause();
    return;
  }
  inbound.feed(chunk);
  if (inbound.error !== undefined) {
    // Malformed or too large: close without calling the handler (nothing is written).
    this.destroy();
    return;
  }
  host.requestProgress(conversation);
}

function socketOnEnd(this: TaggedSocket): void {
  const inbound = this[kConversation]!.inbound;
  // A client may half-close after its request; the response still goes out. Before the flush
  // it is a cut-short request, or a probe when nothing came at all (no error is built for a
  // probe: every Git client command makes one).
  if (inbound.started) inbound.end();
  if (!inbound.complete) this.destroy();
}

function socketOnError(this: TaggedSocket): void {
  // EPIPE, ECONNRESET and the like: the client vanished. 'close' follows and accounts for it.
  this[kConversation]!.clientGone = true;
}

function socketOnClose(this: TaggedSocket): void {
  const conversation = this[kConversation]!;
  conversation.closed();
}

function socketOnFinish(this: TaggedSocket): void {
  this.destroy();
}

/**
 * One server socket, several processes: {@link startClusteredServer}.
 *
 * The first process installs the socket as {@link startServer} does (lock, permissions,
 * ownership watch) and serves on it; it then hands the listening socket to the other
 * processes, which accept on the same descriptor, each with its own handler pool. The kernel
 * gives each new connection to one of them. Nothing about the wire changes: clients see one
 * server.
 *
 * @module
 */

import type { ChildProcess } from 'node:child_process';
import type { Server as NetServer } from 'node:net';
import { USES_NAMED_PIPES } from './address.js';
import { ErrorCode, SimpleIpcError } from './errors.js';
import { callObserver } from './guard.js';
import { type ErrorData, errorFromData, moduleHref } from './handoff.js';
import {
  checkHandler,
  type Handler,
  makeServer,
  type Server,
  serverListener,
  setServerGroup,
  startServing,
  stopServerFor,
} from './server.js';
import {
  type ServerOptions,
  type ServerSettings,
  serverSettings,
  type StopReason,
} from './server-options.js';
import { integer, optionsObject, socketPath } from './validate.js';

// Node built-ins: taken, not imported, the heavy ones where first used (trust.ts says why).
const { fileURLToPath } = process.getBuiltinModule('node:url');

/** Options of {@link startClusteredServer}: those of {@link startServer}, and `processes`. */
export interface ClusteredServerOptions extends ServerOptions {
  /**
   * How many processes serve, this one included: a whole number from 1 to 1024 (Windows: 1
   * only). Default: the number of cores (`os.availableParallelism()`); 1 with Windows named
   * pipes. 1 is an ordinary {@link startServer}.
   */
  processes?: number | undefined;
}

/**
 * @internal What the first process sends to each other one at start. The listening socket
 * follows in a `listen` message only once the handler has loaded: a process that accepted
 * connections before it could serve them would leave those clients waiting forever.
 */
export interface ServeMessage {
  readonly kind: 'simple-ipc:serve';
  readonly path: string;
  readonly module: string;
  readonly options: ChildServerOptions;
}

/**
 * The most processes {@link startClusteredServer} starts: far more than any machine has cores,
 * low enough that a mistyped count cannot fork the machine to a halt.
 */
export const MAX_PROCESSES = 1024;

/**
 * @internal The options that cross to the other processes, checked and with their defaults.
 * JSON carries `Infinity` as null: a null `maxRequestSize` is no limit.
 */
export interface ChildServerOptions {
  readonly server: Readonly<
    Pick<
      ServerSettings,
      | 'threads'
      | 'queueSize'
      | 'streamThreshold'
      | 'requestTimeout'
      | 'responseTimeout'
      | 'stopTimeout'
    > & { maxRequestSize: number | null }
  >;
  /** Forward handler errors (the first process has `onHandlerError`). */
  readonly handlerErrors: boolean;
  /** Forward debug lines (the first process has `debug`). */
  readonly debug: boolean;
}

/** @internal Messages between the processes of a clustered server. */
export type ClusterMessage =
  | ServeMessage
  | { readonly kind: 'simple-ipc:loaded' }
  | { readonly kind: 'simple-ipc:listen' }
  | { readonly kind: 'simple-ipc:stop'; readonly hard: boolean }
  | { readonly kind: 'simple-ipc:ready' }
  | { readonly kind: 'simple-ipc:failed'; readonly message: string }
  | { readonly kind: 'simple-ipc:stopping'; readonly reason: StopReason['kind'] }
  | { readonly kind: 'simple-ipc:handler-error'; readonly error: ErrorData }
  | { readonly kind: 'simple-ipc:debug'; readonly message: string };

const CHILD = fileURLToPath(new URL('./cluster-child.js', import.meta.url));

// A process that dies sooner than this after its start is restarted only after this delay:
// a handler that crashes at once must not turn into a fork loop.
const RESTART_DELAY_MS = 1000;

/**
 * Starts a Simple-IPC server at `path` that runs in `processes` processes sharing one
 * listening socket, and resolves once all of them accept connections.
 *
 * The handler comes from a module, whose default export is a {@link Handler} (a function, or
 * `{ stream }`): each process loads it, this one included, so it must not rely on state shared
 * between requests in memory. Use it when a single Node thread is the bottleneck for many small
 * requests; see docs/cluster.md for what it costs.
 *
 * The returned {@link Server} is this process's: `stop()`, `destroy()`, `closed` and
 * `stopReason` cover the whole group (a QUIT from any process stops all of them), while
 * `stats()` counts this process only. The other processes stop on their own if this one dies.
 *
 * @example
 * ```ts
 * const server = await startClusteredServer(path, new URL('./handler.js', import.meta.url), {
 *   processes: 2,
 * });
 * await server.closed;
 * ```
 * On Windows a named pipe is served from one process only: `processes` defaults to 1 there,
 * and more is refused.
 *
 * If `signal` is aborted before or while it starts (or the server stops meanwhile, by a QUIT
 * or theft), it resolves as {@link startServer} does, with a server that is stopping: processes
 * still starting are told to stop, and `closed` resolves once every one has exited.
 *
 * @throws {@link SimpleIpcError} as {@link startServer}; `ERR_IPC_HANDLER_FAILED` when the module
 *   cannot be loaded or has no handler as its default export (in any process; nothing is left
 *   running then), `ERR_IPC_INVALID_ARGUMENT` for a bad `processes` (on Windows: more than
 *   1), or a module that is not a path or a `file:` URL.
 */
export async function startClusteredServer(
  path: string,
  module: string | URL,
  options: ClusteredServerOptions = {},
): Promise<Server> {
  const checkedPath = socketPath(path);
  const href = moduleHref(module, 'the handler module');
  const settings = serverSettings(options);
  const processes =
    integer(optionsObject(options).processes, 'options.processes', 1, MAX_PROCESSES) ??
    (USES_NAMED_PIPES
      ? 1
      : Math.min(process.getBuiltinModule('node:os').availableParallelism(), MAX_PROCESSES));
  // Node passes a listening server to another process only as a TCP server on Windows
  // (sending a named-pipe server fails inside child.send()), and libuv opens every pipe
  // instance as the first one, so other processes cannot add instances of their own.
  if (processes > 1 && USES_NAMED_PIPES) {
    throw new SimpleIpcError(
      ErrorCode.INVALID_ARGUMENT,
      `options.processes must be 1 on Windows, not ${processes}: a named pipe cannot be served from several processes (use workerHandler() for CPU-bound handlers)`,
    );
  }
  const server = makeServer(checkedPath, await loadHandler(href), settings);
  await startServing(server);
  // A server already stopping (its signal was aborted) is returned as startServer returns it,
  // stopping: its socket is closed, so there is nothing to hand to other processes.
  if (processes === 1 || server.stopping) return server;
  const group = new ProcessGroup(server, checkedPath, href, settings);
  setServerGroup(server, group);
  try {
    await group.start(processes - 1);
  } catch (err) {
    await server.destroy();
    throw err;
  }
  return server;
}

/**
 * @internal Loads a handler module's default export.
 * @throws {@link SimpleIpcError} `ERR_IPC_HANDLER_FAILED`.
 */
export async function loadHandler(href: string): Promise<Handler> {
  let exports: { default?: unknown };
  try {
    exports = (await import(href)) as { default?: unknown };
  } catch (cause) {
    throw new SimpleIpcError(
      ErrorCode.HANDLER_FAILED,
      `cannot load the handler module ${href}: ${(cause as Error).message}`,
      { cause },
    );
  }
  try {
    return checkHandler(exports.default, `the default export of ${href}`);
  } catch (err) {
    throw new SimpleIpcError(ErrorCode.HANDLER_FAILED, (err as Error).message);
  }
}

/** One of the other processes, while the first one runs it. */
interface Member {
  readonly child: ChildProcess;
  /** The listening socket it gets once its handler has loaded. */
  readonly listener: NetServer;
  readonly started: number;
  /** It has said it accepts connections. */
  ready: boolean;
  /** Settle the Promise of its start. */
  readonly resolve: () => void;
  readonly reject: (err: SimpleIpcError) => void;
}

/** The other processes, as the first one runs them. */
class ProcessGroup {
  readonly #server: Server;
  readonly #serve: ServeMessage;
  readonly #options: ServerSettings;
  readonly #children = new Set<ChildProcess>();
  #stopping: 'no' | 'gently' | 'hard' = 'no';
  #resolveClosed!: () => void;
  #closedResolved = false;
  readonly closed: Promise<void>;

  constructor(server: Server, path: string, href: string, settings: ServerSettings) {
    this.#server = server;
    this.#options = settings;
    this.#serve = {
      kind: 'simple-ipc:serve',
      path,
      module: href,
      options: {
        server: {
          threads: settings.threads,
          queueSize: settings.queueSize,
          maxRequestSize: settings.maxRequestSize,
          streamThreshold: settings.streamThreshold,
          requestTimeout: settings.requestTimeout,
          responseTimeout: settings.responseTimeout,
          stopTimeout: settings.stopTimeout,
        },
        handlerErrors: settings.onHandlerError !== undefined,
        debug: settings.debug !== undefined,
      },
    };
    this.closed = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  /** Starts `count` processes; resolves once every one accepts, rejects if any cannot. */
  async start(count: number): Promise<void> {
    const starts: Promise<void>[] = [];
    for (let i = 0; i < count; i++) starts.push(this.#spawn());
    const results = await Promise.allSettled(starts);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  stop(hard: boolean): void {
    if (this.#stopping === 'hard' || (this.#stopping === 'gently' && !hard)) return;
    this.#stopping = hard ? 'hard' : 'gently';
    const message: ClusterMessage = { kind: 'simple-ipc:stop', hard };
    for (const child of this.#children) {
      if (child.connected) child.send(message);
    }
    this.#maybeClosed();
  }

  #spawn(): Promise<void> {
    const listener = this.#listener();
    const child = process.getBuiltinModule('node:child_process').fork(CHILD, [], {
      // This process's Node options, but not its debugger: the port is taken.
      execArgv: process.execArgv.filter((arg) => !arg.startsWith('--inspect')),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    });
    this.#children.add(child);
    return new Promise<void>((resolve, reject) => {
      const member: Member = {
        child,
        listener,
        started: performance.now(),
        ready: false,
        resolve,
        reject,
      };
      child.on('message', (message: ClusterMessage) => this.#onMessage(member, message));
      child.on('error', (err) => this.#onError(member, err));
      child.on('exit', (code, signal) => this.#onExit(member, code, signal));
      child.send(this.#serve);
    });
  }

  #onMessage(member: Member, message: ClusterMessage): void {
    const child = member.child;
    switch (message.kind) {
      case 'simple-ipc:loaded':
        // A process that loaded while the group was stopping never gets the socket.
        if (this.#stopping !== 'no') child.send({ kind: 'simple-ipc:stop', hard: true });
        else child.send({ kind: 'simple-ipc:listen' }, member.listener);
        break;
      case 'simple-ipc:ready':
        member.ready = true;
        // A stop that came while this process was loading.
        if (this.#stopping !== 'no') {
          child.send({ kind: 'simple-ipc:stop', hard: this.#stopping === 'hard' });
        }
        member.resolve();
        break;
      case 'simple-ipc:failed':
        member.reject(new SimpleIpcError(ErrorCode.HANDLER_FAILED, message.message));
        break;
      case 'simple-ipc:stopping':
        if (message.reason === 'quit') stopServerFor(this.#server, { kind: 'quit' });
        break;
      case 'simple-ipc:handler-error':
        callObserver(
          'options.onHandlerError',
          this.#options.onHandlerError,
          errorFromData(message.error),
        );
        break;
      case 'simple-ipc:debug':
        callObserver('options.debug', this.#options.debug, message.message);
        break;
    }
  }

  #onError(member: Member, err: Error): void {
    member.reject(
      new SimpleIpcError(ErrorCode.OTHER, `cannot start a server process: ${err.message}`, {
        cause: err,
      }),
    );
  }

  #onExit(member: Member, code: number | null, signal: NodeJS.Signals | null): void {
    this.#children.delete(member.child);
    const how = signal ?? `exit code ${code}`;
    if (!member.ready && this.#stopping !== 'no') {
      // Told to stop while it started (the server's signal aborted, or a stop() or QUIT came
      // first): it has not failed. The start resolves, with the server stopping, as
      // startServer resolves with a stopping server.
      member.resolve();
    } else if (!member.ready) {
      member.reject(
        new SimpleIpcError(
          ErrorCode.HANDLER_FAILED,
          `a server process exited while starting (${how})`,
        ),
      );
    } else if (this.#stopping === 'no') {
      // Died while serving: its connections are cut; another process takes its place.
      callObserver(
        'options.debug',
        this.#options.debug,
        `a server process exited (${how}); starting another`,
      );
      const early = performance.now() - member.started < RESTART_DELAY_MS;
      setTimeout(() => this.#replace(), early ? RESTART_DELAY_MS : 0).unref();
    }
    this.#maybeClosed();
  }

  #replace(): void {
    if (this.#stopping !== 'no') return;
    this.#spawn().catch((err: unknown) =>
      callObserver(
        'options.debug',
        this.#options.debug,
        `no process replaced it: ${(err as Error).message}`,
      ),
    );
  }

  #listener(): NetServer {
    const listener = serverListener(this.#server);
    if (listener === undefined) {
      throw new SimpleIpcError(ErrorCode.OTHER, 'the server has no listening socket to share');
    }
    return listener;
  }

  #maybeClosed(): void {
    if (this.#closedResolved || this.#stopping === 'no' || this.#children.size > 0) return;
    this.#closedResolved = true;
    this.#resolveClosed();
  }
}

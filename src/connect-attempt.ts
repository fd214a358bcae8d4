/**
 * One connection attempt to a server's socket (or named pipe), and what its failure means:
 * the system error mapped to the library's error ({@link connectError}), and on Windows the wait
 * for a busy pipe bounded as Git bounds it ({@link BusyWatch}). The retry rules around an
 * attempt are connect.ts's.
 *
 * Mirrors Git's `compat/simple-ipc/ipc-unix-socket.c` and `ipc-win32.c` (the client's connect).
 * Not part of the public API.
 *
 * @module
 */

import { Socket } from 'node:net';
import { USES_NAMED_PIPES, withSocketAddress } from './address.js';
import { abortError, ErrorCode, SimpleIpcError, systemCode } from './errors.js';
import { injectedError, refusal } from './refusal.js';

/**
 * @internal Makes one connection attempt; `done` gets the connected Socket or the error, once.
 * A named pipe that is busy is waited for up to `busyWait` ms (see {@link BusyWatch}).
 */
export function connectOnce(
  path: string,
  disallowChdir: boolean,
  busyWait: number,
  signal: AbortSignal | undefined,
  done: (outcome: Socket | SimpleIpcError) => void,
): void {
  if (refusal.inject !== undefined) {
    const code = refusal.inject(path);
    if (code !== undefined) {
      done(connectError(injectedError(code, path), path));
      return;
    }
  }
  let socket: Socket;
  try {
    // A Socket made without options, then connected: `net.connect(options)` copies its options
    // object and adds fields to the copy, which on Node 20's V8 gives that copy a hidden class
    // of its own every time, so every property read of the stream set-up misses its cache (what
    // that costs is measured in docs/benchmarks.md, "A Node 20 pitfall").
    socket = withSocketAddress(path, { disallowChdir }, (address) => new Socket().connect(address));
  } catch (err) {
    done(
      err instanceof SimpleIpcError
        ? err
        : new SimpleIpcError(ErrorCode.OTHER, String(err), { cause: err, path }),
    );
    return;
  }
  const busy = USES_NAMED_PIPES ? new BusyWatch(socket, path, busyWait, signal, done) : undefined;
  const onError = (err: Error): void => {
    socket.off('connect', onConnect);
    busy?.settle();
    done(connectError(err, path));
  };
  const onConnect = (): void => {
    socket.off('error', onError);
    busy?.settle();
    done(socket);
  };
  socket.once('error', onError);
  socket.once('connect', onConnect);
}

/**
 * Windows: when every instance of a pipe is taken (ERROR_PIPE_BUSY: a server that is stopping
 * while a conversation runs, or one too slow to re-arm its instances), libuv waits for one in a
 * thread with WaitNamedPipeW for up to 30 s, whatever the caller wanted, and nothing tells us
 * it does. Git waits only with wait-if-busy, and then until its deadline (`ipc-win32.c`).
 * libuv reports any other outcome of the open as soon as its loop next processes requests,
 * which it does before a second turn of setImmediate() after the connect: a connect still
 * pending then (and after `busyWait` ms) is that busy wait, and is ended as not-listening.
 */
class BusyWatch {
  readonly #signal: AbortSignal | undefined;
  readonly #timer: NodeJS.Timeout;
  #immediate: NodeJS.Immediate | undefined;
  readonly #onAbort: () => void;

  constructor(
    socket: Socket,
    path: string,
    busyWait: number,
    signal: AbortSignal | undefined,
    reject: (err: SimpleIpcError) => void,
  ) {
    this.#signal = signal;
    const give = (err: SimpleIpcError): void => {
      this.settle();
      socket.removeAllListeners('connect');
      socket.removeAllListeners('error');
      socket.on('error', noop);
      socket.destroy();
      reject(err);
    };
    const onBusy = (): void => {
      const cause = Object.assign(new Error('every instance of the pipe is busy'), {
        code: 'EBUSY',
      });
      give(
        new SimpleIpcError(
          ErrorCode.NOT_LISTENING,
          `no server listening at '${path}' (its pipe stayed busy)`,
          { cause, path },
        ),
      );
    };
    this.#timer = setTimeout(() => {
      this.#immediate = setImmediate(() => {
        this.#immediate = setImmediate(onBusy);
      });
    }, busyWait);
    this.#onAbort = () => give(abortError(signal!));
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** The connect settled by itself: stop watching. */
  settle(): void {
    clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#signal?.removeEventListener('abort', this.#onAbort);
  }
}

function noop(): void {}

/** @internal The error for a failed connect: `err`, the system error, in the library's terms. */
export function connectError(err: Error, path: string): SimpleIpcError {
  switch (systemCode(err)) {
    case 'ENOENT':
      return new SimpleIpcError(ErrorCode.PATH_NOT_FOUND, `path not found '${path}'`, {
        cause: err,
        path,
      });
    case 'ECONNREFUSED':
    case 'ETIMEDOUT':
    case 'EAGAIN':
    case 'EBUSY':
      return new SimpleIpcError(ErrorCode.NOT_LISTENING, `no server listening at '${path}'`, {
        cause: err,
        path,
      });
    default:
      return new SimpleIpcError(ErrorCode.OTHER, `cannot connect to '${path}': ${err.message}`, {
        cause: err,
        path,
      });
  }
}

/**
 * Small shared pieces of the CLI: exit codes, error output, writing bytes to stdout in full.
 */

/** Git's exit codes: success, error(), die() and usage errors. */
export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_FATAL = 128;
export const EXIT_USAGE = 129;

/** Thrown to end the program with a message on stderr and an exit code. */
export class CliExit extends Error {
  readonly exitCode: number;
  /** Print the message on stdout rather than stderr (Git's `-h` usage). */
  readonly toStdout: boolean;
  constructor(exitCode: number, message = '', toStdout = false) {
    super(message);
    this.exitCode = exitCode;
    this.toStdout = toStdout;
  }
}

/** Ends with `error: <message>` and exit code 1, as Git's `error()` + `return 1`. */
export function fail(message: string): CliExit {
  return new CliExit(EXIT_ERROR, `error: ${message}\n`);
}

/** Writes `data` to a stream and resolves once it has been taken (pipes may be slow). */
export function writeOut(stream: NodeJS.WritableStream, data: string | Uint8Array): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    stream.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * Many short lines to a stream, as C's stdio does it: written at once to a terminal, gathered
 * into writes of about 64 KiB otherwise (one write per line costs more than a small request).
 * Nothing is lost: call {@link flush} at the end.
 */
export class LineOutput {
  readonly #stream: NodeJS.WritableStream;
  readonly #immediate: boolean;
  #pending = '';

  constructor(stream: NodeJS.WritableStream & { isTTY?: boolean }) {
    this.#stream = stream;
    this.#immediate = stream.isTTY === true;
  }

  /** Adds a line; resolves at once, or once a gathered write has been taken. */
  add(line: string): Promise<void> | undefined {
    if (this.#immediate) return writeOut(this.#stream, line);
    this.#pending += line;
    return this.#pending.length >= 1 << 16 ? this.flush() : undefined;
  }

  /** Writes what has been gathered. */
  flush(): Promise<void> {
    const text = this.#pending;
    this.#pending = '';
    return text === '' ? Promise.resolve() : writeOut(this.#stream, Buffer.from(text, 'latin1'));
  }
}

/**
 * A progress line on stderr, only when stderr is a terminal (never in piped output). Redraws
 * at most ten times a second.
 */
export class Progress {
  readonly #enabled: boolean;
  readonly #label: string;
  #last = 0;
  #shown = false;

  constructor(label: string, enabled = process.stderr.isTTY === true) {
    this.#label = label;
    this.#enabled = enabled;
  }

  /** Shows `done` of `total` bytes (or items, with `unit`). */
  update(done: number, total?: number, unit = 'bytes'): void {
    if (!this.#enabled) return;
    const now = performance.now();
    if (now - this.#last < 100 && (total === undefined || done < total)) return;
    this.#last = now;
    const amount =
      unit === 'bytes'
        ? total === undefined
          ? formatBytes(done)
          : `${formatBytes(done)} / ${formatBytes(total)} (${Math.floor((done / total) * 100)}%)`
        : total === undefined
          ? `${done} ${unit}`
          : `${done} / ${total} ${unit}`;
    process.stderr.write(`\r\x1b[K${this.#label}: ${amount}`);
    this.#shown = true;
  }

  /** Clears the line. */
  done(): void {
    if (this.#shown) process.stderr.write('\r\x1b[K');
    this.#shown = false;
  }
}

/** `1536` -> `1.5 KiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

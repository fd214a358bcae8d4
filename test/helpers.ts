/**
 * Shared test helpers: `test` with a deadline, temp dirs that are always removed, running the
 * CLI as a real process, reading conformance recordings, raw socket exchanges, and waiting for
 * a condition instead of sleeping.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer as createNetServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test as nodeTest, type TestContext, type TestOptions } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  getActiveState,
  PktLineDecoder,
  pipeNameFor,
  sendCommand,
  type Server,
  type ServerOptions,
  startServer,
  USES_NAMED_PIPES,
} from '../src/index.js';

/**
 * Skips a test on Windows because what it checks exists only on Unix (socket files, modes,
 * inodes, `/proc`, POSIX signals, process groups). False elsewhere: pass it as `{ skip }`.
 */
export function unixOnly(why: string): string | false {
  return process.platform === 'win32' ? `Unix-only: ${why}` : false;
}

/**
 * True when the Windows build of Node runs under Wine (scripts/test-windows.sh): Wine puts
 * `WINELOADER` in every process's environment; Windows never does.
 */
export const UNDER_WINE = process.platform === 'win32' && process.env.WINELOADER !== undefined;

/**
 * Whether this system has `/proc` with per-process files (Linux; not macOS, the BSDs or
 * Windows). Never on Windows: under Wine, `/proc/self/stat` is the host's `/proc` seen through
 * drive Z:, whose pids are not Windows pids.
 */
export const HAS_PROC =
  process.platform !== 'win32' && existsSync('/proc/self/stat') && existsSync('/proc/self/fd');

/**
 * Skips a test that reads `/proc` (`what` says for what) where there is none: the skip reason,
 * or false where `/proc` exists. Pass it as `{ skip }`.
 */
export function needsProc(what: string): string | false {
  return HAS_PROC ? false : `needs /proc, which this system has not: ${what}`;
}

/**
 * What a connect to a Unix socket whose listen queue is full fails with: `EAGAIN` on Linux,
 * `ECONNREFUSED` on macOS and the BSDs (docs/lifecycle.md, src/refusal.ts).
 */
export const FULL_BACKLOG_ERROR = process.platform === 'linux' ? 'EAGAIN' : 'ECONNREFUSED';

/**
 * A `serve --exec` command line: `unix` (the Unix tools) on Unix; on Windows, whose shell
 * (cmd.exe) has no cat, tr or wc, this Node running `js`, which must hold no double quote or
 * percent sign (cmd.exe's).
 */
export function execCommand(unix: string, js: string): string {
  return process.platform === 'win32' ? `"${process.execPath}" -e "${js}"` : unix;
}

/** An `--exec` command that answers each request with the request itself (`cat`). */
export const CAT_COMMAND = execCommand('cat', 'process.stdin.pipe(process.stdout)');

/** An `--exec` command that answers each request in upper case (`tr a-z A-Z`). */
export const UPPER_COMMAND = execCommand(
  'tr a-z A-Z',
  'process.stdin.on(`data`, (d) => process.stdout.write(d.toString().toUpperCase()))',
);

/** The skip reason of a test of the start-up lock file, which only Unix sockets use. */
export const LOCK_FILE_ONLY = unixOnly(
  'the start-up lock file (Windows creates the first pipe instance atomically instead)',
);

/**
 * Skips a test under Wine only, for a known difference between Wine and Windows: `why` names
 * what Wine does and what Windows documents instead. False on real Windows and elsewhere.
 */
export function wineDiffers(why: string): string | false {
  return UNDER_WINE ? `Wine differs from Windows: ${why}` : false;
}

/** The skip reason of a test of servers racing to start, which Wine cannot show. */
export const START_RACE_UNDER_WINE = wineDiffers(
  'Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE, so servers starting at the same instant can all create the pipe (checked: two node:net servers both listen on one name); Windows documents that CreateNamedPipe then fails with ERROR_ACCESS_DENIED, which libuv reports as EADDRINUSE',
);

/**
 * What `node:net` must be given to reach the server at `path`: the path itself on Unix, the
 * named pipe Git derives from it on Windows (for raw peers that bypass the library).
 */
export function netAddress(path: string): string {
  return USES_NAMED_PIPES ? pipeNameFor(path) : path;
}

/**
 * True once nothing is left at `path`: on Unix no socket file, on Windows no pipe (no file
 * ever exists there; a pipe that is gone is `path-not-found`).
 */
export async function socketGone(path: string): Promise<boolean> {
  if (!USES_NAMED_PIPES) return !existsSync(path);
  return (await getActiveState(path)) === 'path-not-found';
}

/**
 * How much longer waits for other processes may take here: a Node process starts in tens of ms
 * on Linux, in seconds with the Windows build under Wine on a loaded machine. Deadlines that
 * only guard against hangs are multiplied by it.
 */
export const PROCESS_SLOWNESS = process.platform === 'win32' ? 4 : 1;

/**
 * The deadline of every test that does not set its own, in ms: a bug that makes something
 * wait forever fails that test, by name, instead of hanging its file (the test's `t.after`
 * clean-up still runs). The tests of the library take well under 10 s even on a loaded machine;
 * files whose tests run the CLI or Git take a longer one with {@link testWithDeadline}.
 * `SIMPLE_IPC_TEST_TIMEOUT` overrides both.
 */
export const TEST_TIMEOUT_MS = 30_000 * PROCESS_SLOWNESS;

const OVERRIDE_MS = Number(process.env.SIMPLE_IPC_TEST_TIMEOUT ?? '') || undefined;

type TestBody = (t: TestContext) => unknown;

/** `node:test`'s `test`, with a default `timeout`. */
export interface DeadlineTest {
  (name: string, body: TestBody): void;
  (name: string, options: TestOptions, body: TestBody): void;
}

/**
 * A `test` whose default deadline is `ms` (times {@link PROCESS_SLOWNESS}): for a file whose
 * tests run whole processes (the CLI, Git), each of which may take seconds on a loaded machine.
 */
export function testWithDeadline(ms: number): DeadlineTest {
  const timeout = OVERRIDE_MS ?? ms * PROCESS_SLOWNESS;
  return (name: string, second: TestOptions | TestBody, third?: TestBody): void => {
    const [options, body] = typeof second === 'function' ? [{}, second] : [second, third!];
    // The runner awaits the test itself; nobody else needs its Promise.
    void nodeTest(name, { timeout, ...options }, (t) => body(t) as void);
  };
}

/** `node:test`'s `test`, with {@link TEST_TIMEOUT_MS} as the default `timeout`. */
export const test: DeadlineTest = testWithDeadline(TEST_TIMEOUT_MS / PROCESS_SLOWNESS);

/**
 * Resolves once `check` holds, polling every `interval` ms; fails the test with `what` (or what
 * it returns, asked at that moment) if it does not hold within `ms`. For synchronising on a
 * state, never on a guess of how long it takes.
 */
export async function until(
  what: string | (() => string),
  check: () => boolean | Promise<boolean>,
  ms = 15_000 * PROCESS_SLOWNESS,
  interval = 5,
): Promise<void> {
  const end = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > end) {
      throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    }
    await delay(interval);
  }
}

/**
 * Waits until a server listens at `path`, started by `child`; fails at once, with what
 * `stderr()` gives, if the process exits first.
 */
export async function listeningBy(
  path: string,
  child: ChildProcess,
  stderr: () => string = () => '',
): Promise<void> {
  await until(
    `a server at ${path}`,
    async () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`the process exited before listening: ${stderr()}`);
      }
      return (await getActiveState(path)) === 'listening';
    },
    15_000 * PROCESS_SLOWNESS,
    20,
  );
}

/**
 * Waits until `read()` has not changed for `quietMs` (a producer held back by backpressure),
 * or fails once it passes `limit` (a producer nothing holds back). Returns the settled value.
 */
export async function settlesAtMost(
  what: string,
  read: () => number,
  limit: number,
  quietMs = 300,
): Promise<number> {
  let value = read();
  let since = performance.now();
  const end = since + 30_000;
  for (;;) {
    await delay(10);
    const now = read();
    if (now > limit) throw new Error(`${what}: ${now}, past the bound of ${limit}`);
    if (now !== value) {
      value = now;
      since = performance.now();
    } else if (performance.now() - since >= quietMs) return value;
    if (performance.now() > end) throw new Error(`${what} never settled`);
  }
}

/** The project root (dist/test/.. /..). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The CLI entry point. */
export const CLI = join(ROOT, 'bin', 'simple-ipc.js');
/** The recordings of Git's own peers, kept in the repository (test/fixtures/git/README.md). */
export const CONFORMANCE = join(ROOT, 'test', 'fixtures', 'git');

/** Reads one conformance recording. */
export function recording(name: string): Buffer {
  return readFileSync(join(CONFORMANCE, name));
}

/** A fresh temp dir, removed when the test ends (even if it fails). */
export function tempDir(t: TestContext, prefix = 'sipc-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => removeTree(dir));
  return dir;
}

/** A fresh temp dir (removed when the test ends) and `s` in it: the path of the test's server. */
export function serverPath(t: TestContext): { dir: string; path: string } {
  const dir = tempDir(t);
  return { dir, path: join(dir, 's') };
}

/**
 * A test of servers started at once at one path (skipped under Wine, which cannot show the
 * race): `rounds` rounds, in each of which `race` starts them and resolves with the one that
 * serves, once it has checked how each of the others refused. The winner must answer `ping`
 * with `pong` (as `handler`s of these tests and the CLI's run-daemon do); stopped, it must leave
 * the directory empty, and so must the losers: no socket, lock or temporary directory.
 */
export function startRaceTest(
  test: DeadlineTest,
  name: string,
  rounds: number,
  race: (t: TestContext, path: string, round: number) => Promise<{ stop: () => Promise<void> }>,
): void {
  test(name, { skip: START_RACE_UNDER_WINE }, async (t) => {
    const { dir, path } = serverPath(t);
    for (let round = 0; round < rounds; round++) {
      const winner = await race(t, path, round);
      assert.equal((await sendCommand(path, 'ping')).toString(), 'pong', `round ${round}`);
      await winner.stop();
      assert.deepEqual(readdirSync(dir), [], `round ${round}`);
    }
  });
}

/** A fresh shared temp dir, as /tmp is (mode 1777), removed when the test ends. */
export function sharedDir(t: TestContext): string {
  const dir = tempDir(t);
  chmodSync(dir, 0o1777);
  return dir;
}

/**
 * Removes a test's directory, asynchronously, retrying with a fresh listing: a server of this
 * process may still be stopping in it (the lock file it takes to remove its socket comes and
 * goes), and a synchronous removal, retries included, would block the event loop that server
 * needs to finish (seen as ENOTEMPTY under load).
 */
export function removeTree(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
}

/** What a finished process left behind. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/**
 * Kills `child` with SIGKILL if it still runs, and resolves once it has exited. Rejects, naming
 * the process, if it has not exited 10 s (times {@link PROCESS_SLOWNESS}) after the kill, so
 * that a clean-up fails with a reason instead of hanging its file.
 */
export async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  const ms = 10_000 * PROCESS_SLOWNESS;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise((_resolve, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `process ${child.pid} (${child.spawnargs.join(' ')}) still runs ${ms} ms after SIGKILL`,
          ),
        ),
      ms,
    );
  });
  try {
    await Promise.race([exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs the CLI with `args` and resolves when it exits. Killed after `timeoutMs` (default 30 s
 * times {@link PROCESS_SLOWNESS}; then the result has signal SIGKILL), so a hang fails the test
 * instead of stalling the run.
 */
export function runCli(
  args: readonly string[],
  options: SpawnOptions & { input?: Buffer | string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return runProcess(process.execPath, [CLI, ...args], options);
}

/** Runs any program like {@link runCli}. */
export function runProcess(
  command: string,
  args: readonly string[],
  options: SpawnOptions & { input?: Buffer | string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], ...options });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(
      () => child.kill('SIGKILL'),
      options.timeoutMs ?? 30_000 * PROCESS_SLOWNESS,
    );
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin!.on('error', () => {});
    child.stdin!.end(options.input ?? '');
  });
}

/**
 * Connects a raw socket to `path`. A full listen backlog (EAGAIN: a burst of connects outran
 * the server's accept loop) is retried for up to 5 s, as a real client waiting if busy would.
 */
export async function rawConnect(path: string): Promise<Socket> {
  const end = performance.now() + 5000;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = netConnect({ path: netAddress(path) });
        socket.once('connect', () => resolve(socket));
        socket.once('error', reject);
      });
    } catch (err) {
      if ((err as { code?: string }).code !== 'EAGAIN' || performance.now() > end) throw err;
      await delay(5);
    }
  }
}

/**
 * Writes `request` on a raw connection and collects everything the server sends until it
 * closes. Resolves with the bytes and whether the connection ended with an error.
 */
export async function rawExchange(
  path: string,
  request: Buffer,
  options: { end?: boolean } = {},
): Promise<{ response: Buffer; error: Error | undefined }> {
  const socket = await rawConnect(path);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: Error | undefined;
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (e) => {
      error = e;
    });
    socket.on('close', () => resolve({ response: Buffer.concat(chunks), error }));
    socket.write(request);
    if (options.end) socket.end();
  });
}

/** A user without this one's rights, and a Node that user can run. */
export interface OtherUser {
  /** Spawn options: the `nobody` user when this one is root, nothing otherwise. */
  spawn: { uid?: number; gid?: number };
  /** This same Node, where that user can reach it, else a link or copy where they can. */
  node: string;
}

/**
 * A user without this one's rights, for testing what permissions refuse: as root, the `nobody`
 * user (root passes every permission check, so chmod alone proves nothing); as anyone else,
 * that user itself (chmod suffices). Undefined where neither works: Windows, root without a
 * `nobody` user, or a project folder that `nobody` cannot read.
 */
function otherUser(): OtherUser | undefined {
  if (process.platform === 'win32') return undefined;
  if (process.getuid!() !== 0) return { spawn: {}, node: process.execPath };
  let passwd: string;
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  const nobody = /^nobody:[^:]*:(\d+):(\d+):/m.exec(passwd);
  if (nobody === null) return undefined;
  // The child imports the built library from this project.
  if (!openToOthers(fileURLToPath(new URL('../src/index.js', import.meta.url)), 0o004)) {
    return undefined;
  }
  return { spawn: { uid: Number(nobody[1]), gid: Number(nobody[2]) }, node: nodeForOthers() };
}

/**
 * {@link otherUser} for test `t`; where there is none, `t` is marked skipped with the reason and
 * the result is undefined (the test then returns).
 */
export function otherUserOrSkip(t: TestContext): OtherUser | undefined {
  const user = otherUser();
  if (user === undefined) {
    t.skip(
      USES_NAMED_PIPES
        ? 'Unix-only: file modes and another Unix user (who may connect to a pipe: docs/lifecycle.md)'
        : 'needs a user without these rights who can read the project: run as non-root, or as root with a "nobody" user and the project in a folder open to all',
    );
  }
  return user;
}

/**
 * The uid and gid of another real user, for making files of theirs with chown (their sockets,
 * their directories): the `nobody` user, when this one is root. Elsewhere `t` is marked
 * skipped with the reason and the result is undefined.
 */
export function otherOwnerOrSkip(t: TestContext): { uid: number; gid: number } | undefined {
  const user = otherUser();
  const { uid, gid } = user?.spawn ?? {};
  if (uid === undefined || gid === undefined) {
    t.skip('needs root and a "nobody" user, to make files owned by another user');
    return undefined;
  }
  return { uid, gid };
}

/**
 * Whether someone who is neither the owner nor in the group can reach `path` (search rights on
 * every folder above it) and has `bit` (0o004 read, 0o001 execute) on it.
 */
function openToOthers(path: string, bit: number): boolean {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
    if (dirname(dir) === dir) return (statSync(path).mode & bit) !== 0;
  }
}

let othersNode: string | undefined;

/**
 * This Node's executable where other users can run it: itself, or (when it lies in a private
 * folder, as a runtime cached below root's home does) a hard link or copy in a temp folder open
 * to all, removed when this process exits.
 */
function nodeForOthers(): string {
  if (openToOthers(process.execPath, 0o001)) return process.execPath;
  if (othersNode === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'sipc-node-'));
    chmodSync(dir, 0o755);
    const node = join(dir, 'node');
    try {
      linkSync(process.execPath, node);
    } catch {
      copyFileSync(process.execPath, node);
    }
    chmodSync(node, 0o755);
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    othersNode = node;
  }
  return othersNode;
}

/**
 * Leaves a dead socket file at `path`: a socket nobody listens on, as a killed server leaves
 * (bound under another name and renamed into place, so that Node's close() unlinks only that
 * name).
 */
export async function deadSocket(path: string): Promise<void> {
  const temporary = `${path}.dead-${process.pid}`;
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(temporary, resolve));
  renameSync(temporary, path);
  await new Promise((resolve) => server.close(resolve));
}

/**
 * What a request the server closed without answering fails with, for `assert.rejects`:
 * `ERR_IPC_TRUNCATED` when the client read the hang-up, `ERR_IPC_CONNECTION_CLOSED` when the
 * close came first as a reset (a server that closes with request bytes unread sends one; which
 * of the two the client sees is timing).
 */
export const CLOSED_UNANSWERED = Object.freeze({
  code: /^(ERR_IPC_TRUNCATED|ERR_IPC_CONNECTION_CLOSED)$/,
});

/**
 * Collects the process warnings with one of `codes` while a test runs (from now until its
 * end).
 */
export function warnings(
  t: { after: (fn: () => void) => void },
  ...codes: string[]
): (Error & { code?: string })[] {
  const seen: (Error & { code?: string })[] = [];
  const listener = (warning: Error & { code?: string }): void => {
    if (warning.code !== undefined && codes.includes(warning.code)) seen.push(warning);
  };
  process.on('warning', listener);
  t.after(() => process.off('warning', listener));
  return seen;
}

/** A Promise and its opener, to hold handlers at a known point until the test lets them go. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/**
 * A server at a fresh path whose handler waits for `hold` to open, then answers `answer`
 * (destroyed after the test): for tests of what happens while handlers run.
 */
export async function heldServer(
  t: TestContext,
  answer: string,
  options?: ServerOptions,
): Promise<{ path: string; server: Server; hold: ReturnType<typeof gate> }> {
  const path = join(tempDir(t), 's');
  const hold = gate();
  const server = await startServer(
    path,
    async (_request, reply) => {
      await hold.promise;
      await reply(answer);
    },
    options,
  );
  t.after(() => server.destroy());
  return { path, server, hold };
}

/**
 * A server at a fresh path that answers `ok` and counts its handler's calls (destroyed after
 * the test): for tests that what is refused never reaches the handler.
 */
export async function countingServer(
  t: TestContext,
): Promise<{ path: string; server: Server; calls: () => number }> {
  const path = join(tempDir(t), 's');
  let calls = 0;
  const server = await startServer(path, async (_request, reply) => {
    calls++;
    await reply('ok');
  });
  t.after(() => server.destroy());
  return { path, server, calls: () => calls };
}

/**
 * Connects a raw client to `server`, sends `bytes`, waits until a handler runs, then hangs up
 * (errors of its own socket ignored): a client that leaves mid-conversation.
 */
export async function hangUpMidHandler(server: Server, bytes: string): Promise<void> {
  const socket = await rawConnect(server.path);
  socket.on('error', () => {});
  socket.write(bytes);
  await until('the handler to run', () => server.stats().running === 1);
  socket.destroy();
}

/**
 * The built library by absolute URL: modules a test writes to a temp dir (handlers, worker
 * tasks, scripts) import it so, as an application's module would by package name.
 */
export const LIBRARY = new URL('../src/index.js', import.meta.url).href;

/** Writes a module (a handler or worker task) `name` with `source` into `dir`; its path. */
export function writeModule(dir: string, name: string, source: string): string {
  const file = join(dir, name);
  writeFileSync(file, source);
  return file;
}

/** Resolves after `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A path of exactly `length` bytes ending in `name`, below `base`, with its directories made
 * (for paths longer than a socket address holds).
 */
export function pathOfLength(base: string, length: number, name: string): string {
  let dir = base;
  let remaining = length - base.length - 1 - name.length;
  while (remaining > 0) {
    const segment = remaining > 62 ? 50 : remaining - 1;
    dir = join(dir, 'p'.repeat(segment));
    remaining -= segment + 1;
  }
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  if (Buffer.byteLength(path) !== length)
    throw new Error(`made a path of the wrong length: ${path}`);
  return path;
}

/**
 * Runs a PktLineDecoder over `chunks`, then end(): the packets (`data:<payload>` in
 * `encoding`, `flush`, `delim`, `response-end`) seen before any error, and the error.
 */
export function decodeAllPackets(
  chunks: readonly Buffer[],
  encoding: BufferEncoding,
  codeOf: (err: unknown) => string,
): { packets: string[]; error: string | undefined } {
  const decoder = new PktLineDecoder();
  const packets: string[] = [];
  try {
    for (const chunk of chunks) {
      decoder.push(chunk);
      for (let p = decoder.next(); p !== undefined; p = decoder.next()) {
        packets.push(p.kind === 'data' ? `data:${p.payload.toString(encoding)}` : p.kind);
      }
    }
    decoder.end();
  } catch (err) {
    return { packets, error: codeOf(err) };
  }
  return { packets, error: undefined };
}

/**
 * Our pkt-line codec against real Git. The `git` binary is everywhere, so these run in CI:
 * - we decode what `git upload-pack` writes with protocol v2 (data, delim, flush, a packet of
 *   the largest size, a pack in sideband packets), and the `response-end` of `git remote-http`;
 * - Git accepts what our encoder writes (ls-refs and fetch requests built with encodePacket,
 *   DELIM_PKT and FLUSH_PKT, up to a packet of the largest size).
 *
 * Optional, with Git's C test tool (`SIMPLE_IPC_GIT_TEST_TOOL=/path/to/t/helper/test-tool`, or
 * the Git build that test/git-build.ts finds; skipped with a message otherwise): its pkt-line reader and writer against ours, and its
 * Simple-IPC client and server against ours in both directions, on every test-daemon command,
 * with a 50 MB request and 30 concurrent senders.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, type TestContext } from 'node:test';
import { testDaemon } from '../cli/test-daemon.js';
import {
  ActiveState,
  DELIM_PKT,
  encodeMessage,
  encodePacket,
  FLUSH_PKT,
  getActiveState,
  MessageDecoder,
  type Packet,
  PktLineDecoder,
  RESPONSE_END_PKT,
  SimpleIpcError,
  sendCommand,
  startServer,
} from '../src/index.js';
import { gitEnv, isolatedGitEnv, TEST_TOOL, TEST_TOOL_SKIP } from './git-build.js';
import {
  CLI,
  recording,
  runCli,
  runProcess,
  type RunResult,
  tempDir,
  testWithDeadline,
  until,
} from './helpers.js';

// Each test runs Git.
const test = testWithDeadline(120_000);

// Git (the one on PATH) must not see the caller's configuration or repository (a hook may have
// set GIT_DIR), nor a proxy for 127.0.0.1.
const GIT_ENV = isolatedGitEnv();
const V2 = { ...GIT_ENV, GIT_PROTOCOL: 'version=2' };

/** Runs git; fails the test unless it exits 0. */
async function git(
  args: string[],
  options: { cwd?: string; input?: Buffer | string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  const result = await runProcess('git', args, { env: GIT_ENV, ...options });
  assert.equal(result.code, 0, `git ${args.join(' ')}: ${result.stderr}`);
  return result;
}

async function gitLine(args: string[], cwd: string): Promise<string> {
  return (await git(args, { cwd })).stdout.toString('latin1').trim();
}

/** `n` deterministic bytes that do not compress, so the pack spans several full packets. */
function noise(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let state = seed >>> 0;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state >>> 24;
  }
  return out;
}

/** Every packet of a stream, fed in `chunks`; the stream must end on a packet boundary. */
function decodeAll(chunks: Buffer[]): Packet[] {
  const decoder = new PktLineDecoder();
  const packets: Packet[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (let p = decoder.next(); p !== undefined; p = decoder.next()) {
      // Views into chunks the caller keeps: copy, so the comparison is on values.
      packets.push(p.kind === 'data' ? { kind: 'data', payload: Buffer.from(p.payload) } : p);
    }
  }
  decoder.end();
  return packets;
}

/** Packets as text: data payloads as latin1, the others by kind in brackets. */
function show(packets: Packet[]): string[] {
  return packets.map((p) => (p.kind === 'data' ? p.payload.toString('latin1') : `[${p.kind}]`));
}

/** `bytes` fed whole, one byte at a time, split at every offset (or a sample when large), and in
 * seeded random chunks: every way must give the same packets. */
function decodeEveryWay(bytes: Buffer): Packet[] {
  const whole = decodeAll([bytes]);
  const expected = show(whole);
  const same = (chunks: Buffer[], where: string): void =>
    assert.deepEqual(show(decodeAll(chunks)), expected, where);
  const bytewise: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) bytewise.push(bytes.subarray(i, i + 1));
  same(bytewise, 'one byte at a time');
  const step = bytes.length <= 8192 ? 1 : 997;
  for (let i = 0; i <= bytes.length; i += step) {
    same([bytes.subarray(0, i), bytes.subarray(i)], `split at ${i}`);
  }
  const random = noise(64, bytes.length);
  for (let round = 0; round < 4; round++) {
    const chunks: Buffer[] = [];
    for (let pos = 0, r = 0; pos < bytes.length; r++) {
      const n = 1 + ((random[r % 64]! * (round + 1) * 37 + r) % 9000);
      chunks.push(bytes.subarray(pos, pos + n));
      pos += n;
    }
    same(chunks, `random chunks, round ${round}`);
  }
  return whole;
}

/** A request for `git upload-pack`, built with our encoder. */
function request(command: string, args: string[], capabilities: string[] = []): Buffer {
  return Buffer.concat([
    encodePacket(`command=${command}\n`),
    ...capabilities.map((c) => encodePacket(`${c}\n`)),
    DELIM_PKT,
    ...args.map((a) => encodePacket(`${a}\n`)),
    FLUSH_PKT,
  ]);
}

/** The test repository: main at B, feature and tag v1 at A, annotated tag v2 at B. */
interface Repo {
  root: string;
  path: string;
  a: string;
  b: string;
  v2: string;
  blob: Buffer;
  blobId: string;
}

// Real `git` runs wherever one is installed (CI's Linux machines have one; a Wine prefix has no
// Git for Windows).
const NO_GIT =
  spawnSync('git', ['--version'], { stdio: 'ignore' }).error !== undefined &&
  'no git program on PATH';

describe('pkt-line against real Git', { skip: NO_GIT }, () => {
  let repo: Repo;

  before(async () => {
    const root = mkdtempSync(join(tmpdir(), 'sipc-git-'));
    const path = join(root, 'r');
    await git(['init', '-q', '-b', 'main', path]);
    writeFileSync(join(path, 'a.txt'), 'hello\n');
    await git(['add', 'a.txt'], { cwd: path });
    await git(['commit', '-q', '-m', 'A'], { cwd: path });
    // 200 kB that do not compress: the pack spans several packets of the largest size.
    const blob = noise(200_000, 42);
    writeFileSync(join(path, 'noise.bin'), blob);
    await git(['add', 'noise.bin'], { cwd: path });
    await git(['commit', '-q', '-m', 'B'], { cwd: path });
    await git(['branch', 'feature', 'HEAD~1'], { cwd: path });
    await git(['tag', 'v1', 'HEAD~1'], { cwd: path });
    await git(['tag', '-a', '-m', 'two', 'v2', 'HEAD'], { cwd: path });
    repo = {
      root,
      path,
      a: await gitLine(['rev-parse', 'HEAD~1'], path),
      b: await gitLine(['rev-parse', 'HEAD'], path),
      v2: await gitLine(['rev-parse', 'v2'], path),
      blob,
      blobId: await gitLine(['rev-parse', 'HEAD:noise.bin'], path),
    };
  });

  after(() => {
    if (repo !== undefined) rmSync(repo.root, { recursive: true, force: true });
  });

  /** What ls-refs with peel and symrefs must list for the test repository. */
  const allRefs = (): string[] => [
    `${repo.b} HEAD symref-target:refs/heads/main\n`,
    `${repo.a} refs/heads/feature\n`,
    `${repo.b} refs/heads/main\n`,
    `${repo.a} refs/tags/v1\n`,
    `${repo.v2} refs/tags/v2 peeled:${repo.b}\n`,
  ];

  test('we decode the capability advertisement of upload-pack (protocol v2)', async () => {
    const { stdout } = await git(
      ['upload-pack', '--stateless-rpc', '--advertise-refs', repo.path],
      { env: V2 },
    );
    const lines = show(decodeEveryWay(stdout));
    assert.equal(lines[0], 'version 2\n');
    assert.equal(lines.at(-1), '[flush]');
    assert.ok(lines.some((l) => l.startsWith('agent=git/')));
    assert.ok(lines.some((l) => /^ls-refs(=|\n)/.test(l)));
    assert.ok(lines.some((l) => /^fetch(=|\n)/.test(l)));
    // Data packets then one flush: that is also one Simple-IPC message.
    const pieces: Buffer[] = [];
    const message = new MessageDecoder();
    assert.equal(message.push(stdout, { onPiece: (p) => pieces.push(p) }), stdout.length);
    assert.equal(Buffer.concat(pieces).toString('latin1'), lines.slice(0, -1).join(''));
  });

  test('Git answers an ls-refs request written by our encoder', async () => {
    const input = request('ls-refs', ['peel', 'symrefs'], ['agent=simple-ipc-test']);
    const result = await git(['upload-pack', '--stateless-rpc', repo.path], { input, env: V2 });
    assert.equal(result.stderr, '');
    assert.deepEqual(show(decodeEveryWay(result.stdout)), [...allRefs(), '[flush]']);
  });

  test('Git reads every argument packet, up to the largest one', async () => {
    const tags = await git(['upload-pack', '--stateless-rpc', repo.path], {
      input: request('ls-refs', ['peel', 'ref-prefix refs/tags/']),
      env: V2,
    });
    assert.deepEqual(show(decodeAll([tags.stdout])), [...allRefs().slice(3), '[flush]']);
    // A prefix that fills a packet of 65520 bytes (65516 of payload, `fff0`) matches nothing.
    const prefix = `ref-prefix refs/${'x'.repeat(65516 - 'ref-prefix refs/\n'.length)}`;
    const input = request('ls-refs', [prefix]);
    assert.ok(input.includes('fff0ref-prefix', 0, 'latin1'));
    const none = await git(['upload-pack', '--stateless-rpc', repo.path], { input, env: V2 });
    assert.equal(none.stdout.toString('latin1'), '0000');
    assert.throws(
      () => encodePacket(`${prefix}x\n`),
      (err: unknown) => err instanceof SimpleIpcError && err.code === 'ERR_PKT_LINE_TOO_LONG',
    );
    // Git's reader, like ours, takes uppercase hex digits (our writer never emits them).
    const upper = Buffer.from(input.toString('latin1').replace('fff0ref', 'FFF0ref'), 'latin1');
    const again = await git(['upload-pack', '--stateless-rpc', repo.path], {
      input: upper,
      env: V2,
    });
    assert.equal(again.stdout.toString('latin1'), '0000');
  });

  test('we decode a packet of the largest size written by Git', async () => {
    // A ref name long enough to make its ls-refs line fill one packet: `fff0`, 65516 bytes.
    const long = join(repo.root, 'long.git');
    await git(['clone', '-q', '--bare', repo.path, long]);
    const name = `refs/zz/${'y'.repeat(65516 - 40 - 1 - 1 - 'refs/zz/'.length)}`;
    const line = `${repo.b} ${name}\n`;
    assert.equal(line.length, 65516);
    // Loose ref files cannot have such a name; packed-refs can (it sorts last there).
    appendFileSync(join(long, 'packed-refs'), line);
    const { stdout } = await git(['upload-pack', '--stateless-rpc', long], {
      input: request('ls-refs', []),
      env: V2,
    });
    assert.ok(stdout.includes(`fff0${repo.b} refs/zz/`, 0, 'latin1'));
    const lines = show(decodeEveryWay(stdout));
    assert.deepEqual(lines.slice(-2), [line, '[flush]']);
  });

  test("we decode Git's fetch response: a delim, and a pack in sideband packets, intact", async () => {
    const input = request('fetch', [`want ${repo.b}`, `have ${repo.a}`, 'no-progress']);
    const { stdout } = await git(['upload-pack', '--stateless-rpc', repo.path], {
      input,
      env: V2,
    });
    const packets = decodeEveryWay(stdout);
    assert.deepEqual(show(packets.slice(0, 5)), [
      'acknowledgments\n',
      `ACK ${repo.a}\n`,
      'ready\n',
      '[delim]',
      'packfile\n',
    ]);
    assert.equal(packets.at(-1)?.kind, 'flush');
    const band: Buffer[] = [];
    for (const p of packets.slice(5, -1)) {
      assert.equal(p.kind, 'data');
      if (p.kind !== 'data') continue;
      assert.equal(p.payload[0], 1, 'sideband 1: pack data');
      band.push(p.payload.subarray(1));
    }
    // How Git cuts the pack depends on its pipe reads; 200 kB need at least four packets.
    assert.ok(band.length >= 4, `${band.length} packets`);
    // The pack went through our decoder: Git must be able to index it and give the blob back.
    const pack = Buffer.concat(band);
    assert.equal(pack.toString('latin1', 0, 4), 'PACK');
    const fresh = join(repo.root, 'fresh.git');
    await git(['init', '-q', '--bare', fresh]);
    await git(['index-pack', '--stdin'], { cwd: fresh, input: pack });
    const blob = await git(['cat-file', 'blob', repo.blobId], { cwd: fresh });
    assert.ok(blob.stdout.equals(repo.blob));
    // A delim is not allowed inside a Simple-IPC message.
    const message = new MessageDecoder();
    assert.throws(
      () => message.push(stdout, { onPiece() {} }),
      (err: unknown) => err instanceof SimpleIpcError && err.code === 'ERR_PKT_LINE_UNEXPECTED',
    );
  });

  test('we decode the response-end of git remote-http, which forwards our request', async (t) => {
    const port = await httpBackend(t, repo.root);
    const helper = spawn('git', ['remote-http', 'origin', `http://127.0.0.1:${port}/r`], {
      env: GIT_ENV,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    t.after(() => helper.kill('SIGKILL'));
    let stderr = '';
    helper.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const exited = new Promise<number | null>((resolve) => helper.on('close', resolve));
    helper.stdin.on('error', () => {});
    // Text commands first (the transport-helper protocol), then pkt-lines both ways.
    helper.stdin.write('capabilities\nstateless-connect git-upload-pack\n');
    let text = Buffer.alloc(0);
    let decoder: PktLineDecoder | undefined;
    const packets: Packet[] = [];
    let flushes = 0;
    const done = new Promise<void>((resolve, reject) => {
      helper.stdout.on('data', (chunk: Buffer) => {
        try {
          if (decoder === undefined) {
            text = Buffer.concat([text, chunk]);
            // The capability list ends with an empty line; stateless-connect answers with one.
            const end = text.indexOf('\n\n');
            if (end < 0 || text.length < end + 3) return;
            assert.ok(text.subarray(0, end).toString().split('\n').includes('stateless-connect'));
            assert.equal(text[end + 2], 0x0a, `stateless-connect refused: ${text.toString()}`);
            decoder = new PktLineDecoder();
            chunk = text.subarray(end + 3);
          }
          decoder.push(chunk);
          for (let p = decoder.next(); p !== undefined; p = decoder.next()) {
            packets.push(p.kind === 'data' ? { kind: 'data', payload: Buffer.from(p.payload) } : p);
            if (p.kind === 'flush' && ++flushes === 1) {
              // The advertisement is complete: now our request goes through to upload-pack.
              helper.stdin.write(request('ls-refs', ['peel', 'symrefs']));
            }
            if (p.kind === 'response-end') {
              helper.stdin.end();
              resolve();
            }
          }
        } catch (err) {
          reject(err);
        }
      });
      helper.on('close', () => reject(new Error(`git remote-http exited early: ${stderr}`)));
    });
    await done;
    assert.equal(await exited, 0, stderr);
    const lines = show(packets);
    const advert = lines.indexOf('[flush]');
    assert.equal(lines[0], 'version 2\n');
    assert.deepEqual(lines.slice(advert + 1), [...allRefs(), '[flush]', '[response-end]']);
  });
});

/**
 * An HTTP server that runs `git http-backend` as a CGI program for every request (the smart
 * HTTP protocol), for repositories under `root`. Resolves with its port; stopped after the test.
 */
async function httpBackend(t: TestContext, root: string): Promise<number> {
  const server = createServer((req, res) => {
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const input = Buffer.concat(body);
      const header = (name: string): string => {
        const value = req.headers[name];
        return Array.isArray(value) ? value.join(', ') : (value ?? '');
      };
      const cgi = spawn('git', ['http-backend'], {
        env: {
          ...GIT_ENV,
          GIT_PROJECT_ROOT: root,
          GIT_HTTP_EXPORT_ALL: '1',
          REQUEST_METHOD: req.method ?? 'GET',
          PATH_INFO: url.pathname,
          QUERY_STRING: url.search.slice(1),
          CONTENT_TYPE: header('content-type'),
          CONTENT_LENGTH: String(input.length),
          HTTP_CONTENT_ENCODING: header('content-encoding'),
          HTTP_GIT_PROTOCOL: header('git-protocol'),
          REMOTE_ADDR: '127.0.0.1',
        },
      });
      const out: Buffer[] = [];
      cgi.stdout.on('data', (c: Buffer) => out.push(c));
      cgi.stderr.resume();
      cgi.stdin.on('error', () => {});
      cgi.on('close', () => {
        const all = Buffer.concat(out);
        const split = all.indexOf('\r\n\r\n');
        let status = 200;
        for (const line of all.subarray(0, Math.max(0, split)).toString('latin1').split('\r\n')) {
          const colon = line.indexOf(':');
          if (colon < 0) continue;
          const name = line.slice(0, colon);
          const value = line.slice(colon + 1).trim();
          if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
          else res.setHeader(name, value);
        }
        res.writeHead(status);
        res.end(split < 0 ? all : all.subarray(split + 4));
      });
      cgi.stdin.end(input);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

// ---------------------------------------------------------------------------------------------
// Optional: Git's C test tool.

// From SIMPLE_IPC_GIT_TEST_TOOL, or the Git build beside the project (test/git-build.ts).
const SKIP = TEST_TOOL_SKIP;

/** Runs Git's test tool. */
function testTool(args: string[], options: { input?: Buffer; cwd?: string } = {}) {
  // start-daemon finds `test-tool` through PATH.
  return runProcess(TEST_TOOL!, args, { env: gitEnv(), timeoutMs: 120_000, ...options });
}

/** Waits (up to 10 s) until a server listens at `path`. */
function waitListening(path: string): Promise<void> {
  const listening = async () => (await getActiveState(path)) === ActiveState.LISTENING;
  return until(`a server at ${path}`, listening, 10_000, 50);
}

/** The lines `multiple --threads=N` prints (before its summary), sorted. */
function multipleLines(threads: number, bytecount = 1024, batchsize = 10): string[] {
  const lines: string[] = [];
  for (let k = 0; k < threads; k++) {
    const letter = String.fromCharCode(0x41 + (k % 26));
    for (let j = 0; j < batchsize; j++) {
      const count = String(bytecount + batchsize * Math.floor(k / 26) + j).padStart(8, '0');
      lines.push(`sent:${letter}${count} rcvd:${letter}${count}`);
    }
  }
  return lines.sort();
}

/** Checks the output of `multiple`: every line once, each sender's lines in order. */
function checkMultiple(result: RunResult, threads: number): void {
  assert.equal(result.stderr, '');
  assert.equal(result.code, 0);
  const lines = result.stdout.toString('latin1').split('\n');
  assert.equal(lines.pop(), '');
  assert.equal(lines.pop(), `client (good ${threads * 10}) (join 0), (errors 0)`);
  assert.deepEqual([...lines].sort(), multipleLines(threads));
  for (let k = 0; k < threads; k++) {
    const letter = String.fromCharCode(0x41 + (k % 26));
    const base = 1024 + 10 * Math.floor(k / 26);
    const mine = lines
      .filter((l) => l[5] === letter)
      .map((l) => Number.parseInt(l.slice(6, 14), 10))
      .filter((n) => n >= base && n < base + 10);
    assert.deepEqual(
      mine,
      [...mine].sort((x, y) => x - y),
      `sender ${k} in order`,
    );
  }
}

/** What `send --token=X` must print, from the recordings of Git's client. */
const SENDS: [token: string, stdout: () => Buffer][] = [
  ['ping', () => recording('stdout.ping.txt')],
  ['big', () => recording('stdout.big.txt')],
  ['chunk', () => recording('stdout.chunk.txt')],
  ['slow', () => recording('stdout.slow.txt')],
  ['nosuchcommand', () => recording('stdout.unknown.txt')],
  ['', () => Buffer.from('unhandled command: (no-command)\n')],
];

const FIFTY_MB = 50 * 1000 * 1000;

describe("Git's C test tool (optional)", { concurrency: true, skip: SKIP }, () => {
  test('its pkt-line reader takes what our encoder writes', async () => {
    const input = Buffer.concat([
      encodePacket('hello\n'),
      encodePacket('a'.repeat(65516)),
      DELIM_PKT,
      encodeMessage('b'.repeat(200_000)),
      RESPONSE_END_PKT,
      FLUSH_PKT,
    ]);
    const result = await testTool(['pkt-line', 'unpack'], { input });
    assert.equal(result.code, 0, result.stderr);
    const expected = [
      'hello',
      'a'.repeat(65516),
      '0001',
      'b'.repeat(65516),
      'b'.repeat(65516),
      'b'.repeat(65516),
      'b'.repeat(200_000 - 3 * 65516),
      '0000',
      '0002',
      '0000',
    ];
    assert.deepEqual(result.stdout.toString('latin1').split('\n').slice(0, -1), expected);
  });

  test('we read what its pkt-line writer writes', async () => {
    const result = await testTool(['pkt-line', 'pack'], {
      input: Buffer.from('hello\n0001\nworld\n0000\n'),
    });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(show(decodeEveryWay(result.stdout)), [
      'hello\n',
      '[delim]',
      'world\n',
      '[flush]',
    ]);
  });

  /** Runs Git's client on every command against one of our servers, ending with stop-daemon. */
  async function itsClientAgainst(path: string): Promise<void> {
    const name = `--name=${path}`;
    const active = await testTool(['simple-ipc', 'is-active', name]);
    assert.equal(active.code, 0, active.stderr);
    await Promise.all(
      SENDS.map(async ([token, stdout]) => {
        const args = ['simple-ipc', 'send', name, ...(token === '' ? [] : [`--token=${token}`])];
        const result = await testTool(args);
        assert.equal(result.stderr, '', token);
        assert.equal(result.code, 0, token);
        assert.ok(result.stdout.equals(stdout()), `send ${token}`);
      }),
    );
    const sendbytes = (count: number, byte: string) =>
      testTool(['simple-ipc', 'sendbytes', name, `--bytecount=${count}`, `--byte=${byte}`]);
    const bytes = await sendbytes(100_000, 'A');
    assert.ok(bytes.stdout.equals(recording('stdout.sendbytes.txt')));
    const big = await sendbytes(FIFTY_MB, 'Z');
    assert.equal(big.stdout.toString(), 'sent:Z50000000 rcvd:Z50000000\n', big.stderr);
    checkMultiple(await testTool(['simple-ipc', 'multiple', name, '--threads=30']), 30);
    const stop = await testTool(['simple-ipc', 'stop-daemon', name, '--max-wait=20']);
    assert.equal(stop.code, 0, stop.stderr);
  }

  test('its Simple-IPC client against our server (startServer), on every command', async (t) => {
    const path = join(tempDir(t), 'ipc');
    const server = await startServer(path, testDaemon, { threads: 8 });
    t.after(() => server.destroy());
    await itsClientAgainst(path);
    await server.closed;
    assert.equal(server.stopReason?.kind, 'quit');
  });

  test('its Simple-IPC client against our run-daemon, on every command', async (t) => {
    const path = join(tempDir(t), 'ipc');
    const daemon = spawn(process.execPath, [CLI, 'run-daemon', `--name=${path}`, '--threads=8'], {
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => daemon.on('close', resolve));
    t.after(() => daemon.kill('SIGKILL'));
    await waitListening(path);
    await itsClientAgainst(path);
    assert.equal(await exited, 0);
  });

  test('our client and CLI against its server, on every test-daemon command', async (t) => {
    const path = join(tempDir(t), 'ipc');
    const name = `--name=${path}`;
    const daemon: ChildProcess = spawn(
      TEST_TOOL!,
      ['simple-ipc', 'run-daemon', name, '--threads=8'],
      {
        env: gitEnv(),
        stdio: 'ignore',
      },
    );
    const exited = new Promise<number | null>((resolve) => daemon.on('close', resolve));
    t.after(() => daemon.kill('SIGKILL'));
    await waitListening(path);
    assert.equal((await runCli(['is-active', name])).code, 0);
    await Promise.all([
      ...SENDS.map(async ([token, stdout]) => {
        const result = await runCli(['send', name, ...(token === '' ? [] : [`--token=${token}`])]);
        assert.equal(result.stderr, '', token);
        assert.equal(result.code, 0, token);
        assert.ok(result.stdout.equals(stdout()), `send ${token}`);
      }),
      ...SENDS.map(async ([token, stdout]) => {
        const answer = await sendCommand(path, token || '(no-command)', {
          waitIfBusy: true,
          timeout: 30_000,
        });
        assert.ok(answer.equals(stdout().subarray(0, -1)), `sendCommand ${token}`);
      }),
    ]);
    const bytes = await runCli(['sendbytes', name, '--bytecount=100000', '--byte=A']);
    assert.ok(bytes.stdout.equals(recording('stdout.sendbytes.txt')));
    const big = await runCli(['sendbytes', name, `--bytecount=${FIFTY_MB}`, '--byte=Z']);
    assert.equal(big.stdout.toString(), 'sent:Z50000000 rcvd:Z50000000\n', big.stderr);
    checkMultiple(await runCli(['multiple', name, '--threads=30']), 30);
    // Enough requests for our multiple to spread its senders over worker threads (where there
    // is more than one core): the same lines and summary as Git's own client prints.
    const spread = ['multiple', name, '--threads=8', '--batchsize=300', '--bytecount=1'];
    const [ours, its] = [await runCli(spread), await testTool(['simple-ipc', ...spread])];
    assert.equal(ours.stderr, '');
    assert.equal(ours.code, 0);
    assert.equal(its.code, 0, its.stderr);
    const sorted = (r: RunResult): string[] => r.stdout.toString('latin1').split('\n').sort();
    assert.deepEqual(sorted(ours), sorted(its));
    assert.match(ours.stdout.toString(), /\nclient \(good 2400\) \(join 0\), \(errors 0\)\n$/);
    const stop = await runCli(['stop-daemon', name, '--max-wait=20']);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(await exited, 0);
  });
});

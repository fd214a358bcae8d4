/**
 * Simple-IPC in the role Git built it for: `git fsmonitor--daemon` is a Simple-IPC server at
 * `<worktree>/.git/fsmonitor--daemon.ipc` and `git status` its client, speaking the filesystem
 * monitor protocol V2 (decoded by examples/git-fsmonitor/protocol.ts; the library carries
 * opaque bytes). With the Git build (test/git-build.ts; skipped with a message without it):
 * - our client against Git's daemon: active state, flush, the exact paths of scripted edits,
 *   a response of tens of thousands of paths, 20 queries at once, quit;
 * - Git's client against a server on our library: `git status` trusts its answer, rescans
 *   on a trivial one, 10 at once, and Git's own `status` and `stop` commands work against it.
 */

import assert from 'node:assert/strict';
import { linkSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, type TestContext } from 'node:test';
import {
  decodeResponse,
  encodeQuery,
  encodeResponse,
  encodeTrivialResponse,
  FLUSH_COMMAND,
  QUIT_COMMAND,
  type QueryResult,
} from '../examples/git-fsmonitor/protocol.js';
import { ActiveState, getActiveState, QUIT, sendCommand, startServer } from '../src/index.js';
import { GIT_BUILD_SKIP } from './git-build.js';
import { makeWorktree, until, type Worktree } from './git-worktree.js';
import { testWithDeadline } from './helpers.js';

// Each test runs Git.
const test = testWithDeadline(120_000);

/** Sends one request to the monitor of `wt` and decodes the answer. */
async function query(wt: Worktree, token: string): Promise<QueryResult> {
  return decodeResponse(await sendCommand(wt.ipc, encodeQuery(token), { timeout: 30_000 }));
}

/** The token of a fresh start (Git's `flush`), checking that its answer is trivial. */
async function flush(wt: Worktree): Promise<string> {
  const answer = await query(wt, FLUSH_COMMAND);
  assert.equal(answer.trivial, true, 'flush answers trivially');
  return answer.token;
}

/** The sorted paths changed since `token`; fails on a trivial answer. */
async function changedSince(wt: Worktree, token: string): Promise<string[]> {
  const answer = await query(wt, token);
  assert.equal(answer.trivial, false, `a trivial answer to ${token}`);
  return [...answer.paths].sort();
}

/**
 * Polls until the paths changed since `token` include all of `expected` (Git's daemon syncs
 * with a cookie file before it answers, so the first answer should be complete; polling keeps
 * a loaded machine from failing the test), then checks that they are exactly `expected`.
 */
async function expectChanged(wt: Worktree, token: string, expected: string[]): Promise<void> {
  let seen: string[] = [];
  await until(
    () => `the changes ${expected.join(', ')} (seen: ${seen.join(', ')})`,
    async () => {
      seen = await changedSince(wt, token);
      return expected.every((p) => seen.includes(p));
    },
    20_000,
  );
  assert.deepEqual(seen, [...expected].sort());
}

/** Starts Git's daemon in `wt` (stopped when the test ends, by makeWorktree). */
async function startGitDaemon(wt: Worktree): Promise<void> {
  await wt.git(['fsmonitor--daemon', 'start'], { timeoutMs: 30_000 });
  assert.equal(await getActiveState(wt.ipc), ActiveState.LISTENING);
}

describe("our client, Git's fsmonitor--daemon", { skip: GIT_BUILD_SKIP }, () => {
  test('listening; flush gives a new token and the trivial answer', async (t) => {
    const wt = await makeWorktree(t);
    await startGitDaemon(wt);
    const status = await wt.git(['fsmonitor--daemon', 'status']);
    assert.equal(status.stdout.toString(), `fsmonitor-daemon is watching '${wt.root}'\n`);
    const first = await flush(wt);
    const second = await flush(wt);
    assert.match(first, /^builtin:/);
    assert.notEqual(second, first);
    // Nothing happened since: an empty, non-trivial answer with a newer token.
    const answer = await query(wt, second);
    assert.deepEqual(answer, { token: answer.token, trivial: false, paths: [] });
    // A token from elsewhere gets the trivial answer.
    assert.equal((await query(wt, 'builtin:0.0.19700101T000000.000000Z:0')).trivial, true);
  });

  test('after edits, a query with the token lists exactly the changed paths', async (t) => {
    const wt = await makeWorktree(t, {
      'a.txt': 'a\n',
      'b.txt': 'b\n',
      'gone.txt': 'gone\n',
      'old.txt': 'old\n',
      'keep.txt': 'keep\n',
    });
    await startGitDaemon(wt);
    const token = await flush(wt);
    writeFileSync(join(wt.root, 'a.txt'), 'a changed\n');
    // Git's Linux daemon watches a new folder once it hears of it, and then reports the files
    // it finds in it but not the folders: a folder made inside a brand-new one before that
    // watch is in place is not listed itself (the outer folder, which is, covers it for Git).
    // A query between the two makes the daemon catch up, so the answer is the same each run.
    mkdirSync(join(wt.root, 'new'));
    await query(wt, token);
    mkdirSync(join(wt.root, 'new', 'deep'));
    writeFileSync(join(wt.root, 'new', 'deep', 'file.txt'), 'new\n');
    rmSync(join(wt.root, 'gone.txt'));
    renameSync(join(wt.root, 'old.txt'), join(wt.root, 'renamed.txt'));
    await expectChanged(wt, token, [
      'a.txt',
      'gone.txt',
      'new',
      'new/deep',
      'new/deep/file.txt',
      'old.txt',
      'renamed.txt',
    ]);
    // A later token sees only what came after it.
    const later = (await query(wt, token)).token;
    writeFileSync(join(wt.root, 'b.txt'), 'b changed\n');
    await expectChanged(wt, later, ['b.txt']);
  });

  test('a response of tens of thousands of paths arrives whole', async (t) => {
    const wt = await makeWorktree(t);
    await startGitDaemon(wt);
    // Each path is a new name (a hard link) for one empty file beside the worktree: the daemon
    // hears of a new name as of a new file (inotify's IN_CREATE, FSEvents' created), and a link
    // costs the file system far less than a file (about 0.01 against 0.7 CPU-milliseconds on
    // the ext4 of a test machine, where 20,000 new files took 14 CPU-seconds).
    const empty = join(dirname(wt.root), 'empty');
    writeFileSync(empty, '');
    const token = await flush(wt);
    const expected: string[] = [];
    // In batches, each followed by a query: the query makes the daemon catch up with its
    // events, so the kernel's event queue (16384 by default) never overflows, which would
    // make the daemon resync and answer trivially.
    for (let d = 0; d < 20; d++) {
      const dir = `dir${String(d).padStart(2, '0')}`;
      mkdirSync(join(wt.root, dir));
      expected.push(dir);
      for (let f = 0; f < 1000; f++) {
        const name = `${dir}/file-with-a-longer-name-${String(f).padStart(4, '0')}.txt`;
        linkSync(empty, join(wt.root, name));
        expected.push(name);
      }
      await query(wt, token);
    }
    const raw = await sendCommand(wt.ipc, encodeQuery(token), { timeout: 30_000 });
    assert.ok(raw.length > 10 * 65516, `${raw.length} bytes: many packets`);
    const answer = decodeResponse(raw);
    assert.equal(answer.trivial, false);
    if (answer.trivial) return;
    assert.equal(answer.paths.length, expected.length);
    assert.deepEqual([...answer.paths].sort(), expected.sort());
  });

  test('20 queries at once all complete', async (t) => {
    const wt = await makeWorktree(t, { 'a.txt': 'a\n' });
    await startGitDaemon(wt);
    const token = await flush(wt);
    writeFileSync(join(wt.root, 'a.txt'), 'a changed\n');
    await expectChanged(wt, token, ['a.txt']);
    const answers = await Promise.all(Array.from({ length: 20 }, () => query(wt, token)));
    for (const answer of answers) {
      assert.equal(answer.trivial, false);
      if (!answer.trivial) assert.deepEqual(answer.paths, ['a.txt']);
    }
  });

  test('quit stops it', async (t) => {
    const wt = await makeWorktree(t);
    await startGitDaemon(wt);
    const answer = await sendCommand(wt.ipc, encodeQuery(QUIT_COMMAND), { timeout: 10_000 });
    assert.equal(answer.length, 0);
    await until('the daemon stops', async () => {
      return (await getActiveState(wt.ipc)) !== ActiveState.LISTENING;
    });
    const status = await wt.gitAnyExit(['fsmonitor--daemon', 'status']);
    assert.equal(status.code, 1);
    assert.equal(status.stdout.toString(), `fsmonitor-daemon is not watching '${wt.root}'\n`);
  });
});

/** The lines of `git status --porcelain`. */
async function porcelain(wt: Worktree): Promise<string> {
  return (await wt.git(['status', '--porcelain'])).stdout.toString();
}

/**
 * A monitor on our library at `wt`'s `.git/fsmonitor--daemon.ipc` whose answers the test
 * chooses: `answer(request)` gives the paths to report, or 'trivial'. Every request is kept.
 */
async function ourMonitor(
  t: TestContext,
  wt: Worktree,
  answer: (request: string) => readonly string[] | 'trivial',
) {
  const requests: string[] = [];
  let generation = 0;
  const server = await startServer(wt.ipc, async (request, reply) => {
    const text = request.toString('utf8');
    requests.push(text);
    if (text === QUIT_COMMAND) return QUIT;
    const token = `test:${++generation}`;
    const paths = answer(text);
    if (paths === 'trivial') await reply(encodeTrivialResponse(token));
    else for (const piece of encodeResponse(token, paths)) await reply(piece);
    return undefined;
  });
  t.after(() => server.destroy());
  return { server, requests };
}

describe("Git's client, our server", { skip: GIT_BUILD_SKIP }, () => {
  test('git status trusts our answer, and rescans on a trivial one', async (t) => {
    const wt = await makeWorktree(t, { 'one.txt': '1\n', 'two.txt': '2\n' });
    let mode: 'trivial' | 'only-one' = 'trivial';
    const { requests } = await ourMonitor(t, wt, () =>
      mode === 'trivial' ? 'trivial' : ['one.txt'],
    );
    // The first status has no token of ours: it gets the trivial answer, looks at every file,
    // and keeps our token in the index.
    assert.equal(await porcelain(wt), '');
    assert.ok(requests.length >= 1);
    writeFileSync(join(wt.root, 'one.txt'), 'one changed\n');
    writeFileSync(join(wt.root, 'two.txt'), 'two changed\n');
    mode = 'only-one';
    // Git trusts us: two.txt changed too, but we did not say so.
    assert.equal(await porcelain(wt), ' M one.txt\n');
    assert.match(requests.at(-1)!, /^test:\d+$/, 'Git sends back our token');
    mode = 'trivial';
    assert.equal(await porcelain(wt), ' M one.txt\n M two.txt\n');
    // Without a monitor, Git sees the same.
    const plain = await wt.git(['-c', 'core.fsmonitor=false', 'status', '--porcelain']);
    assert.equal(plain.stdout.toString(), ' M one.txt\n M two.txt\n');
  });

  test('10 git status at once', async (t) => {
    const wt = await makeWorktree(t, { 'one.txt': '1\n', 'two.txt': '2\n' });
    const { requests } = await ourMonitor(t, wt, () => ['one.txt']);
    writeFileSync(join(wt.root, 'one.txt'), 'one changed\n');
    // Read-only status runs, so they do not race for the index lock.
    const runs = await Promise.all(
      Array.from({ length: 10 }, () =>
        wt.git(['--no-optional-locks', 'status', '--porcelain'], { timeoutMs: 60_000 }),
      ),
    );
    for (const run of runs) assert.equal(run.stdout.toString(), ' M one.txt\n');
    assert.ok(requests.length >= 10, `${requests.length} requests`);
  });

  test("Git's fsmonitor--daemon status and stop work against our server", async (t) => {
    const wt = await makeWorktree(t);
    const { server, requests } = await ourMonitor(t, wt, () => 'trivial');
    const status = await wt.git(['fsmonitor--daemon', 'status']);
    assert.equal(status.stdout.toString(), `fsmonitor-daemon is watching '${wt.root}'\n`);
    // Git refuses to start its own daemon where ours listens.
    const start = await wt.gitAnyExit(['fsmonitor--daemon', 'start']);
    assert.notEqual(start.code, 0);
    assert.match(start.stderr, /already running/);
    await wt.git(['fsmonitor--daemon', 'stop'], { timeoutMs: 20_000 });
    await server.closed;
    assert.equal(server.stopReason?.kind, 'quit');
    assert.deepEqual(requests, [QUIT_COMMAND]);
    assert.equal(await getActiveState(wt.ipc), ActiveState.NOT_LISTENING);
  });
});

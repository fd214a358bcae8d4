/**
 * What a new user of the API meets first: the error code of a connect to a file that is not a
 * socket, the reason an idle server gives for stopping, and a type guard that narrows.
 */

import assert from 'node:assert/strict';
import { chownSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  connect,
  ErrorCode,
  getActiveState,
  isSimpleIpcError,
  SimpleIpcError,
  startServer,
  stopWhenIdle,
  tryConnect,
} from '../src/index.js';
import { otherOwnerOrSkip, sharedDir, tempDir, test, unixOnly } from './helpers.js';

const UNIX_FILES = unixOnly('a regular file never stands in a named pipe’s way');

test(
  'connect() to a regular file is ERR_IPC_INVALID_PATH, as startServer and getActiveState say',
  { skip: UNIX_FILES },
  async (t) => {
    const file = join(tempDir(t), 'file');
    writeFileSync(file, 'precious');
    assert.equal(await getActiveState(file), 'invalid-path');
    await assert.rejects(connect(file), { code: 'ERR_IPC_INVALID_PATH', path: file });
    // Waiting could never help: no retries until the timeout.
    const started = performance.now();
    const result = await tryConnect(file, { waitIfBusy: true, timeout: 5000 });
    assert.equal(result.state, 'invalid-path');
    assert.ok(performance.now() - started < 2500, 'not retried');
    assert.equal(readFileSync(file, 'utf8'), 'precious');
  },
);

test("a server stopped by stopWhenIdle reports stopReason { kind: 'idle' }", async (t) => {
  const path = join(tempDir(t), 's');
  const server = await startServer(path, () => undefined);
  t.after(() => server.destroy());
  stopWhenIdle(server, 50, { checkInterval: 10 });
  await server.closed;
  assert.deepEqual(server.stopReason, { kind: 'idle' });
});

test('isSimpleIpcError(err, code) narrows err.code to that code', () => {
  const err: unknown = new SimpleIpcError(ErrorCode.TIMEOUT, 'late');
  if (isSimpleIpcError(err, 'ERR_IPC_TIMEOUT')) {
    // Compiles only when the code is narrowed to the literal type.
    const code: 'ERR_IPC_TIMEOUT' = err.code;
    assert.equal(code, 'ERR_IPC_TIMEOUT');
  } else {
    assert.fail('not recognised');
  }
  if (isSimpleIpcError(err)) {
    const code: ErrorCode = err.code;
    assert.equal(code, 'ERR_IPC_TIMEOUT');
  }
  assert.equal(isSimpleIpcError(err, 'ERR_IPC_TRUNCATED'), false);
});

test(
  "a file in the server's way: the error says whose it is and whether to remove it",
  { skip: UNIX_FILES },
  async (t) => {
    const dir = sharedDir(t); // as /tmp: other users put files here too
    const mine = join(dir, 'mine');
    writeFileSync(mine, 'x');
    await assert.rejects(
      startServer(mine, () => undefined),
      (err: SimpleIpcError) => {
        assert.equal(err.code, 'ERR_IPC_INVALID_PATH');
        assert.match(
          err.message,
          /is a regular file of yours, not a socket; it is left alone \(remove it if nothing of yours needs it/,
        );
        return true;
      },
    );
    const owner = otherOwnerOrSkip(t);
    if (owner === undefined) return;
    const theirs = join(dir, 'theirs');
    writeFileSync(theirs, 'x');
    chownSync(theirs, owner.uid, owner.gid);
    await assert.rejects(
      startServer(theirs, () => undefined),
      (err: SimpleIpcError) => {
        // Another user's file is refused before anything else is looked at.
        assert.equal(err.code, 'ERR_IPC_UNTRUSTED_OWNER');
        assert.match(err.message, new RegExp(`is a regular file of user ${owner.uid}, not yours`));
        assert.match(err.message, /it is not yours to remove: choose another path/);
        assert.doesNotMatch(err.message, /posing as your server|remove it if/);
        return true;
      },
    );
    assert.equal(readFileSync(theirs, 'utf8'), 'x');
  },
);

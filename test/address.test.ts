/**
 * Socket path rules: Git's named-pipe mapping (pure, so tested on every platform) and long Unix
 * socket paths (never truncated: an exact alias, a change of directory, or a clear error).
 */

import assert from 'node:assert/strict';
import { mkdirSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  checkedPipeName,
  checkSocketPath,
  PIPE_NAME_MAX,
  pipeNameFor,
  SOCKET_PATH_MAX,
  withSocketAddress,
} from '../src/address.js';
import { tempDir, test, unixOnly } from './helpers.js';

const same = (p: string): string => p;

test('pipeNameFor: Git mapping of a drive path (C: -> C_, / -> \\)', () => {
  assert.equal(
    pipeNameFor('C:\\Users\\me\\repo\\.git\\fsmonitor--daemon.ipc', same),
    '\\\\.\\pipe\\C_\\Users\\me\\repo\\.git\\fsmonitor--daemon.ipc',
  );
  assert.equal(pipeNameFor('C:/Users/me/repo/ipc', same), '\\\\.\\pipe\\C_\\Users\\me\\repo\\ipc');
  assert.equal(pipeNameFor('d:/work/x', same), '\\\\.\\pipe\\d_\\work\\x');
});

test('pipeNameFor: the path is made absolute and the real path is used', () => {
  const seen: string[] = [];
  const realpath = (p: string): string => {
    seen.push(p);
    return p.replace('C:\\link', 'E:\\real');
  };
  assert.equal(pipeNameFor('C:\\link\\sub\\..\\ipc', realpath), '\\\\.\\pipe\\E_\\real\\ipc');
  assert.deepEqual(seen, ['C:\\link\\ipc']);
});

test('pipeNameFor: a path with no drive letter keeps its characters', () => {
  // Git changes the second character only when it is ':'.
  assert.equal(pipeNameFor('\\\\server\\share\\ipc', same), '\\\\.\\pipe\\\\\\server\\share\\ipc');
  assert.equal(
    pipeNameFor('C:\\a:b\\c', (p) => p.replace('C:', 'Z:')),
    '\\\\.\\pipe\\Z_\\a:b\\c',
  );
});

test('checkedPipeName: a pipe name longer than Windows allows is an error, never shortened', () => {
  const fits = `C:\\${'a'.repeat(PIPE_NAME_MAX - '\\\\.\\pipe\\C_\\'.length)}`;
  assert.equal(checkedPipeName(fits, same).length, PIPE_NAME_MAX);
  assert.throws(() => checkedPipeName(`${fits}b`, same), { code: 'ERR_IPC_NAME_TOO_LONG' });
});

/** A directory under `base` whose path is exactly `length` bytes long. */
function dirOfLength(base: string, length: number): string {
  let dir = base;
  while (dir.length < length) dir = join(dir, 'd'.repeat(Math.min(100, length - dir.length - 1)));
  mkdirSync(dir, { recursive: true });
  assert.equal(Buffer.byteLength(dir), length);
  return dir;
}

test(
  'withSocketAddress: a path that fits is used as it is',
  { skip: unixOnly('Unix socket-address length rules (a named pipe takes the whole name)') },
  () => {
    const path = `/tmp/${'s'.repeat(SOCKET_PATH_MAX - 5)}`;
    assert.equal(Buffer.byteLength(path), SOCKET_PATH_MAX);
    assert.equal(
      withSocketAddress(path, {}, (a) => a),
      path,
    );
    assert.equal(
      withSocketAddress('relative.sock', { disallowChdir: true }, (a) => a),
      'relative.sock',
    );
  },
);

test(
  'withSocketAddress: a long path goes through its directory, exactly',
  {
    skip: process.platform !== 'linux' && 'the /proc/self/fd alias is Linux only',
  },
  (t) => {
    const dir = dirOfLength(tempDir(t), 140);
    const path = join(dir, 'long.sock');
    assert.ok(Buffer.byteLength(path) > SOCKET_PATH_MAX);
    const cwd = process.cwd();
    const seen = withSocketAddress(path, { disallowChdir: true }, (address) => {
      assert.ok(Buffer.byteLength(address) <= SOCKET_PATH_MAX);
      assert.match(address, /^\/proc\/self\/fd\/[0-9]+\/long\.sock$/);
      // The alias names the very directory, not a shortened path.
      assert.equal(realpathSync(dirname(address)), realpathSync(dir));
      return address;
    });
    assert.ok(seen.endsWith('/long.sock'));
    assert.equal(process.cwd(), cwd);
  },
);

test(
  'withSocketAddress: the chdir route binds the bare name and restores the directory',
  { skip: unixOnly('Unix socket-address length rules (a named pipe takes the whole name)') },
  (t) => {
    const dir = dirOfLength(tempDir(t), 140);
    const path = join(dir, 'long.sock');
    const cwd = process.cwd();
    const address = withSocketAddress(path, { longPath: 'chdir' }, (a) => {
      assert.equal(realpathSync(process.cwd()), realpathSync(dir));
      return a;
    });
    assert.equal(address, 'long.sock');
    assert.equal(process.cwd(), cwd);
    // The directory is restored when the bind or connect throws, too.
    const failed = new Error('bind failed');
    assert.throws(
      () =>
        withSocketAddress(path, { longPath: 'chdir' }, () => {
          throw failed;
        }),
      (err) => err === failed,
    );
    assert.equal(process.cwd(), cwd);
  },
);

test(
  'withSocketAddress: no chdir allowed and no alias: ERR_IPC_NAME_TOO_LONG',
  { skip: unixOnly('Unix socket-address length rules (a named pipe takes the whole name)') },
  (t) => {
    const dir = dirOfLength(tempDir(t), 140);
    let called = false;
    assert.throws(
      () =>
        withSocketAddress(join(dir, 's'), { longPath: 'chdir', disallowChdir: true }, () => {
          called = true;
        }),
      { code: 'ERR_IPC_NAME_TOO_LONG' },
    );
    assert.equal(called, false);
  },
);

test(
  'withSocketAddress: a file name too long for any address is an error, never truncated',
  { skip: unixOnly('Unix socket-address length rules (a named pipe takes the whole name)') },
  (t) => {
    const dir = tempDir(t);
    const name = 'n'.repeat(SOCKET_PATH_MAX + 1);
    for (const longPath of ['auto', 'chdir'] as const) {
      let called = false;
      assert.throws(
        () =>
          withSocketAddress(join(dir, name), { longPath }, () => {
            called = true;
          }),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_IPC_NAME_TOO_LONG');
          assert.match(err.message, /shorter path/);
          return true;
        },
      );
      assert.equal(called, false);
    }
    assert.throws(() => checkSocketPath(join(dir, name)), { code: 'ERR_IPC_NAME_TOO_LONG' });
  },
);

test(
  'withSocketAddress: a name too long for the alias but not on its own uses the chdir route',
  { skip: unixOnly('Unix socket-address length rules (a named pipe takes the whole name)') },
  (t) => {
    const dir = tempDir(t);
    // /proc/self/fd/N/ takes 16+ bytes: this name fits only on its own.
    const name = 'm'.repeat(SOCKET_PATH_MAX - 5);
    const cwd = process.cwd();
    const address = withSocketAddress(join(dir, name), {}, (a) => {
      assert.equal(realpathSync(process.cwd()), realpathSync(dir));
      return a;
    });
    assert.equal(address, name);
    assert.equal(process.cwd(), cwd);
    assert.doesNotThrow(() => checkSocketPath(join(dir, name)));
    assert.throws(() => withSocketAddress(join(dir, name), { disallowChdir: true }, () => 0), {
      code: 'ERR_IPC_NAME_TOO_LONG',
    });
  },
);

test(
  'withSocketAddress: the directory of a long path does not exist: ERR_IPC_PATH_NOT_FOUND',
  { skip: unixOnly('Unix socket-address length rules (a named pipe takes the whole name)') },
  (t) => {
    const missing = join(tempDir(t), 'x'.repeat(120), 'sock');
    for (const longPath of ['auto', 'chdir'] as const) {
      assert.throws(() => withSocketAddress(missing, { longPath }, () => 0), {
        code: 'ERR_IPC_PATH_NOT_FOUND',
      });
    }
  },
);

test('withSocketAddress: empty paths and NUL bytes are invalid', () => {
  for (const bad of ['', 'a\0b', '\0abstract']) {
    assert.throws(() => withSocketAddress(bad, {}, () => 0), { code: 'ERR_IPC_INVALID_PATH' });
    assert.throws(() => checkSocketPath(bad), { code: 'ERR_IPC_INVALID_PATH' });
  }
});

test(
  'withSocketAddress: a worker thread never changes directory',
  { skip: unixOnly('process.chdir() for a long Unix socket path') },
  async (t) => {
    const dir = dirOfLength(tempDir(t), 140);
    const module = new URL('../src/address.js', import.meta.url).href;
    const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.module).then((m) => {
      try {
        m.withSocketAddress(workerData.path, { longPath: 'chdir' }, () => 0);
        parentPort.postMessage('no error');
      } catch (err) {
        parentPort.postMessage(err.code);
      }
    });`;
    const worker = new Worker(code, { eval: true, workerData: { module, path: join(dir, 's') } });
    t.after(() => worker.terminate());
    const answer = await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    assert.equal(answer, 'ERR_IPC_NAME_TOO_LONG');
  },
);

test(
  'withSocketAddress on Windows: the pipe name of the real path, whole or refused',
  { skip: process.platform !== 'win32' && 'Windows only: named pipes' },
  (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'ipc');
    const address = withSocketAddress(path, {}, (a) => a);
    assert.equal(address, pipeNameFor(path));
    assert.match(address, /^\\\\\.\\pipe\\[A-Za-z]_\\/);
    // The real path: the directory's links resolved, as Git's strbuf_realpath() does.
    assert.ok(address.endsWith(`${realpathSync.native(dir).slice(2)}\\ipc`), address);
    // A long path is never shortened: refused with the code a Unix path too long gets.
    const long = join(dir, 'x'.repeat(PIPE_NAME_MAX));
    assert.throws(() => withSocketAddress(long, {}, () => 0), { code: 'ERR_IPC_NAME_TOO_LONG' });
    assert.doesNotThrow(() => checkSocketPath(long), 'checked when the pipe is made');
  },
);

/**
 * The per-user socket directory (src/socket-dir.ts): XDG_RUNTIME_DIR when it is safe, else a
 * directory of our own in the temp dir, created 0700 and checked; anything unsafe is refused
 * with ERR_IPC_UNSAFE_DIRECTORY.
 */

import assert from 'node:assert/strict';
import {
  chmodSync,
  chownSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { type SimpleIpcError, userSocketDirectory } from '../src/index.js';
import {
  otherOwnerOrSkip,
  otherUserOrSkip,
  runCli,
  runProcess,
  sharedDir,
  tempDir,
  test,
  unixOnly,
} from './helpers.js';

const UNIX = unixOnly('directory owners and modes (a pipe name has no directory)');

/** The fallback's name for this user below `base`. */
function fallback(base: string): string {
  return join(base, `simple-ipc-${process.geteuid!()}`);
}

function unsafe(pattern: RegExp) {
  return (err: SimpleIpcError): boolean => {
    assert.equal(err.code, 'ERR_IPC_UNSAFE_DIRECTORY');
    assert.match(err.message, pattern);
    return true;
  };
}

test('XDG_RUNTIME_DIR that is ours with mode 0700 is the directory', { skip: UNIX }, (t) => {
  const runtime = tempDir(t); // mkdtemp: ours, 0700
  assert.equal(userSocketDirectory({ env: { XDG_RUNTIME_DIR: runtime } }), runtime);
});

test(
  'XDG_RUNTIME_DIR is normalised, and a relative one is ignored as an unset one is',
  { skip: UNIX },
  (t) => {
    const runtime = tempDir(t);
    for (const variant of [`${runtime}/`, `${runtime}//`, `${runtime}/.`, `${runtime}/./`]) {
      assert.equal(userSocketDirectory({ env: { XDG_RUNTIME_DIR: variant } }), runtime, variant);
    }
    // The XDG specification: a relative path is invalid and ignored.
    const base = tempDir(t);
    assert.equal(
      userSocketDirectory({ env: { XDG_RUNTIME_DIR: 'relative/dir' }, tempDir: base }),
      fallback(base),
    );
  },
);

test('XDG_RUNTIME_DIR through another user symbolic link, with a trailing slash, is refused', (t) => {
  const owner = otherOwnerOrSkip(t);
  if (owner === undefined) return;
  const shared = sharedDir(t);
  const mine = join(shared, 'mine');
  mkdirSync(mine, { mode: 0o700 });
  // The other user's link, which they may point elsewhere at any time.
  const link = join(shared, 'link');
  symlinkSync(mine, link);
  lchownSync(link, owner.uid, owner.gid);
  // Without the slash it is refused ("is a symbolic link"); with it, lstat followed the link.
  assert.throws(
    () => userSocketDirectory({ env: { XDG_RUNTIME_DIR: link } }),
    unsafe(/is a symbolic link/),
  );
  for (const variant of [`${link}/`, `${link}/.`]) {
    assert.throws(
      () => userSocketDirectory({ env: { XDG_RUNTIME_DIR: variant } }),
      unsafe(/is a symbolic link/),
      `XDG_RUNTIME_DIR=${variant} goes through another user symbolic link`,
    );
  }
});

test('XDG_RUNTIME_DIR owned by another user is refused', { skip: UNIX }, (t) => {
  const other = otherOwnerOrSkip(t);
  if (other === undefined) return;
  const runtime = tempDir(t);
  chownSync(runtime, other.uid, other.gid);
  assert.throws(
    () => userSocketDirectory({ env: { XDG_RUNTIME_DIR: runtime }, tempDir: tempDir(t) }),
    unsafe(/XDG_RUNTIME_DIR .* belongs to user \d+, not to you .*unset XDG_RUNTIME_DIR/),
  );
});

test('XDG_RUNTIME_DIR with a mode other than 0700 is refused', { skip: UNIX }, (t) => {
  const runtime = tempDir(t);
  chmodSync(runtime, 0o755);
  assert.throws(
    () => userSocketDirectory({ env: { XDG_RUNTIME_DIR: runtime } }),
    unsafe(/has mode 0755, not 0700: group or others may reach your sockets/),
  );
  chmodSync(runtime, 0o500);
  assert.throws(
    () => userSocketDirectory({ env: { XDG_RUNTIME_DIR: runtime } }),
    unsafe(/has mode 0500/),
  );
});

test(
  'a missing XDG_RUNTIME_DIR is refused with a message that names it and says what to do',
  { skip: UNIX },
  async (t) => {
    // A stale XDG_RUNTIME_DIR (after `su`, `sudo -E`, in a container, after logout) is common.
    // The message must say so as the other XDG_RUNTIME_DIR refusals do, not blame a parent.
    const missing = join(tempDir(t), 'run-user-1000');
    assert.throws(
      () => userSocketDirectory({ env: { XDG_RUNTIME_DIR: missing } }),
      (err: SimpleIpcError) => {
        assert.equal(err.code, 'ERR_IPC_INVALID_PATH');
        assert.equal(err.path, missing);
        assert.match(err.message, /^XDG_RUNTIME_DIR '.*run-user-1000' does not exist/);
        assert.match(err.message, /unset XDG_RUNTIME_DIR, or set it to a directory of your own/);
        assert.doesNotMatch(err.message, /its directory does not exist/);
        return true;
      },
    );
    // The CLI's help: "1 when it is not safe (the message says why and what to do)".
    const cli = await runCli(['socket-dir'], { env: { ...process.env, XDG_RUNTIME_DIR: missing } });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /^error: XDG_RUNTIME_DIR .* does not exist.*unset XDG_RUNTIME_DIR/);
    assert.equal(cli.stdout.length, 0);
  },
);

test(
  'without XDG_RUNTIME_DIR: a directory of ours in the temp dir, made 0700',
  { skip: UNIX },
  (t) => {
    const base = tempDir(t);
    chmodSync(base, 0o1777); // shared, as /tmp is
    const previous = process.umask(0); // a lax umask must not widen it
    let dir: string;
    try {
      dir = userSocketDirectory({ env: { XDG_RUNTIME_DIR: '' }, tempDir: base });
    } finally {
      process.umask(previous);
    }
    assert.equal(dir, fallback(base));
    const stats = lstatSync(dir);
    assert.ok(stats.isDirectory());
    assert.equal(stats.mode & 0o7777, 0o700);
    assert.equal(stats.uid, process.geteuid!());
    // Found again, checked, and used as it is.
    assert.equal(userSocketDirectory({ env: {}, tempDir: base }), dir);
  },
);

test('a symbolic link or a file in its place is refused', { skip: UNIX }, (t) => {
  const base = tempDir(t);
  const target = join(base, 'elsewhere');
  mkdirSync(target, { mode: 0o700 });
  symlinkSync(target, fallback(base));
  assert.throws(
    () => userSocketDirectory({ env: {}, tempDir: base }),
    unsafe(/per-user socket directory .* is a symbolic link/),
  );
  const other = tempDir(t);
  writeFileSync(fallback(other), '');
  assert.throws(
    () => userSocketDirectory({ env: {}, tempDir: other }),
    unsafe(/is not a directory/),
  );
});

test('a directory of ours open to group or others is refused', { skip: UNIX }, (t) => {
  const base = tempDir(t);
  mkdirSync(fallback(base));
  for (const mode of [0o750, 0o705, 0o777]) {
    chmodSync(fallback(base), mode);
    assert.throws(
      () => userSocketDirectory({ env: {}, tempDir: base }),
      unsafe(new RegExp(`has mode 0${mode.toString(8)}, not 0700: group or others`)),
    );
  }
});

test('a directory another user made there first is refused, and left alone', async (t) => {
  const user = otherUserOrSkip(t);
  if (user === undefined) return;
  if (user.spawn.uid === undefined) {
    t.skip('needs root, to act as another user who squats our name');
    return;
  }
  const base = tempDir(t);
  chmodSync(base, 0o1777); // shared, as /tmp is
  const squatted = fallback(base);
  // The squatter, as itself: a directory 0700 under our name, as if it were ours.
  const r = await runProcess(
    user.node,
    ['-e', `require('node:fs').mkdirSync(process.argv[1], { mode: 0o700 })`, squatted],
    user.spawn,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(lstatSync(squatted).uid, user.spawn.uid);
  assert.throws(
    () => userSocketDirectory({ env: {}, tempDir: base }),
    (err: SimpleIpcError) => {
      assert.equal(err.code, 'ERR_IPC_UNSAFE_DIRECTORY');
      assert.equal(err.path, squatted);
      assert.match(
        err.message,
        new RegExp(`belongs to user ${user.spawn.uid}, not to you .*someone else may have made it`),
      );
      assert.match(err.message, /ask an administrator|XDG_RUNTIME_DIR or TMPDIR/);
      return true;
    },
  );
  assert.equal(lstatSync(squatted).uid, user.spawn.uid, 'left alone');
});

test('bad options are ERR_IPC_INVALID_ARGUMENT', () => {
  assert.throws(() => userSocketDirectory({ tempDir: '' }), { code: 'ERR_IPC_INVALID_ARGUMENT' });
  assert.throws(() => userSocketDirectory({ env: 3 as never }), {
    code: 'ERR_IPC_INVALID_ARGUMENT',
  });
});

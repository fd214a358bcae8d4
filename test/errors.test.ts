import assert from 'node:assert/strict';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import {
  encodePacket,
  ErrorCode,
  isSimpleIpcError,
  SimpleIpcError,
  tryConnect,
} from '../src/index.js';
import { tempDir, test } from './helpers.js';

type Library = typeof import('../src/index.js');

/** A second copy of the built library, as two installed copies of the package would be. */
async function secondCopy(dir: string): Promise<Library> {
  const copy = join(dir, 'copy');
  cpSync(fileURLToPath(new URL('../src/', import.meta.url)), copy, { recursive: true });
  writeFileSync(join(copy, 'package.json'), '{ "type": "module" }\n');
  return (await import(pathToFileURL(join(copy, 'index.js')).href)) as Library;
}

function thrown(run: () => unknown): unknown {
  try {
    run();
  } catch (err) {
    return err;
  }
  assert.fail('nothing was thrown');
}

test('instanceof SimpleIpcError holds across two copies of the package, both ways', async (t) => {
  const other = await secondCopy(tempDir(t));
  assert.notEqual(other.SimpleIpcError, SimpleIpcError, 'a real second copy');
  const theirs = thrown(() => other.encodePacket(''));
  const ours = thrown(() => encodePacket(''));
  assert.ok(theirs instanceof SimpleIpcError);
  assert.ok(ours instanceof other.SimpleIpcError);
  assert.ok(isSimpleIpcError(theirs, ErrorCode.PKT_LINE_LENGTH));
  assert.ok(other.isSimpleIpcError(ours, 'ERR_PKT_LINE_LENGTH'));
  // An error from the other copy's client, as a dependency would let one through.
  await assert.rejects(other.connect(join(tempDir(t), 'missing')), (err: unknown) => {
    assert.ok(err instanceof SimpleIpcError);
    assert.equal(err.code, 'ERR_IPC_PATH_NOT_FOUND');
    return true;
  });
});

test('instanceof SimpleIpcError is false for everything else; subclasses keep their own check', () => {
  for (const value of [
    new Error('x'),
    { code: 'ERR_IPC_TRUNCATED', name: 'SimpleIpcError' },
    null,
    undefined,
    'SimpleIpcError',
    Object.create(Error.prototype) as Error,
  ]) {
    assert.equal(value instanceof SimpleIpcError, false, inspect(value));
    assert.equal(isSimpleIpcError(value), false);
  }
  class Special extends SimpleIpcError {}
  const special = new Special(ErrorCode.OTHER, 'special');
  assert.ok(special instanceof Special);
  assert.ok(special instanceof SimpleIpcError);
  assert.ok(special instanceof Error);
  assert.equal(new SimpleIpcError(ErrorCode.OTHER, 'plain') instanceof Special, false);
});

test('an abort is named AbortError, as Node names its own, with the reason as cause', async (t) => {
  const controller = new AbortController();
  const reason = new Error('the user gave up');
  controller.abort(reason);
  const err = await tryConnect(join(tempDir(t), 'missing'), {
    waitIfNotFound: true,
    signal: controller.signal,
  }).then(
    () => assert.fail('not aborted'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof SimpleIpcError);
  assert.equal(err.name, 'AbortError');
  assert.equal(err.code, 'ABORT_ERR');
  assert.equal(err.cause, reason);
  // The same shape as Node's own abort errors.
  const nodes = await import('node:timers/promises')
    .then(({ setTimeout: sleep }) => sleep(1, undefined, { signal: controller.signal }))
    .then(
      () => assert.fail('not aborted'),
      (e: Error & { code?: string }) => e,
    );
  assert.equal(err.name, nodes.name);
  assert.equal(err.code, nodes.code);
  // Every other error keeps its class's name.
  assert.equal(new SimpleIpcError(ErrorCode.TIMEOUT, 'slow').name, 'SimpleIpcError');
});

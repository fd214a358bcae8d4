import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type Reply, SimpleIpcError, sendCommand, startServer } from '../src/index.js';
import { rawExchange, tempDir, test } from './helpers.js';

// Every kind of value a handler can throw: an Error must not be the only one taken as failure.
const THROWN: readonly unknown[] = [
  undefined,
  null,
  'x',
  0,
  false,
  { some: 'object' },
  new Error('e'),
];

type Mode = 'sync' | 'async' | 'sync-after-reply' | 'async-after-reply';
const MODES: readonly Mode[] = ['sync', 'async', 'sync-after-reply', 'async-after-reply'];

// A handler that fails as `mode` says with THROWN[index]: the request is `mode:index`.
function failing(request: Buffer | string, reply: Reply): Promise<void> | void {
  const [mode, index] = request.toString().split(':') as [Mode, string];
  const thrown = THROWN[Number(index)];
  switch (mode) {
    case 'sync':
      throw thrown;
    case 'sync-after-reply':
      void reply('partial');
      throw thrown;
    case 'async':
      return Promise.reject(thrown);
    case 'async-after-reply':
      return reply('partial').then(() => {
        throw thrown;
      });
  }
}

test('a handler that throws anything, sync or async, after a partial reply or not, fails: no flush, counted, reported', async (t) => {
  const path = join(tempDir(t), 's');
  const reported: unknown[] = [];
  const server = await startServer(path, failing, {
    onHandlerError: (err) => reported.push(err),
  });
  t.after(() => server.destroy());
  let failures = 0;
  for (const mode of MODES) {
    for (let i = 0; i < THROWN.length; i++) {
      const what = `${mode} throw ${String(THROWN[i])}`;
      // The client is told the answer is cut short, never given `partial` as a whole answer.
      await assert.rejects(
        sendCommand(path, `${mode}:${i}`),
        (err: SimpleIpcError) => err.code === 'ERR_IPC_TRUNCATED',
        what,
      );
      // On the wire: at most the partial packet, and never the flush that ends a message.
      const raw = await rawExchange(
        path,
        Buffer.from(`${(mode.length + 6).toString(16).padStart(4, '0')}${mode}:${i}0000`),
      );
      assert.ok(
        ['', '000bpartial'].includes(raw.response.toString('latin1')),
        `${what}: ${raw.response.toString('latin1')}`,
      );
      failures += 2;
      assert.equal(server.stats().handlerErrors, failures, what);
      assert.equal(reported.length, failures, what);
      for (const err of reported.slice(-2)) {
        assert.ok(err instanceof Error, `${what}: onHandlerError gets an Error`);
        if (THROWN[i] instanceof Error) assert.equal(err, THROWN[i], what);
        else {
          assert.ok(err instanceof SimpleIpcError, what);
          assert.equal(err.code, 'ERR_IPC_HANDLER_FAILED', what);
          assert.ok('cause' in err, `${what}: the thrown value is kept as cause`);
          assert.equal(err.cause, THROWN[i], what);
        }
      }
    }
  }
  assert.equal(server.stats().responses, 0);
});

test('a streaming handler that throws a non-Error after a partial reply fails the same way', async (t) => {
  const path = join(tempDir(t), 's');
  const reported: unknown[] = [];
  const server = await startServer(
    path,
    {
      stream(_request, reply) {
        void reply('partial');
        // eslint-disable-next-line @typescript-eslint/only-throw-error
        throw undefined;
      },
    },
    { onHandlerError: (err) => reported.push(err) },
  );
  t.after(() => server.destroy());
  await assert.rejects(sendCommand(path, 'x'), { code: 'ERR_IPC_TRUNCATED' });
  assert.equal(server.stats().handlerErrors, 1);
  assert.equal(reported.length, 1);
  assert.ok(reported[0] instanceof SimpleIpcError);
  assert.equal(reported[0].code, 'ERR_IPC_HANDLER_FAILED');
});

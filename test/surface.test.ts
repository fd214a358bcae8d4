import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Connection, type RequestContext, Server, sendCommand, startServer } from '../src/index.js';
import { tempDir } from './helpers.js';

test('a handler gets a context of its own: the signal and the server, nothing of the connection', async (t) => {
  const path = join(tempDir(t), 's');
  const seen: RequestContext[] = [];
  const server = await startServer(path, async (_request, reply, context) => {
    seen.push(context);
    await reply('ok');
  });
  t.after(() => server.destroy());
  await sendCommand(path, 'a');
  await sendCommand(path, 'b');
  const [context, other] = seen as [RequestContext, RequestContext];
  assert.notEqual(context, other, 'one per request');
  assert.equal(context.server, server);
  assert.ok(context.signal instanceof AbortSignal);
  const record = context as unknown as Record<string, unknown>;
  for (const name of [
    'socket',
    'fail',
    'inbound',
    'outbound',
    'phase',
    'finish',
    'reply',
    'closed',
  ]) {
    assert.equal(name in context, false, `context.${name} is not reachable`);
    assert.equal(record[name], undefined);
  }
  assert.deepEqual(Object.keys(context), ['server']);
});

test('Server and Connection are made only by startServer and connect', () => {
  const NewServer = Server as unknown as new (...args: unknown[]) => unknown;
  const NewConnection = Connection as unknown as new (...args: unknown[]) => unknown;
  assert.throws(() => new NewServer('/tmp/x', () => {}, {}), { code: 'ERR_IPC_INVALID_ARGUMENT' });
  assert.throws(() => new NewConnection({}, '/tmp/x'), { code: 'ERR_IPC_INVALID_ARGUMENT' });
});

test('the published types hold only the public API', () => {
  // What `npm run build` emits for the package (tsconfig.json has stripInternal).
  const server = readFileSync(new URL('../src/server.d.ts', import.meta.url), 'utf8');
  const client = readFileSync(new URL('../src/client.d.ts', import.meta.url), 'utf8');
  assert.match(server, /private constructor\(\);/);
  assert.match(client, /private constructor\(\);/);
  for (const internal of [
    'start(',
    'attach(',
    'setGroup(',
    'stopFor(',
    'sweep(',
    'requestProgress(',
    'conversationClosed(',
    'get listener',
    'get tick',
    'requestLimits',
    'static create',
    'ServerSettings',
    'serverSettings',
    'checkHandler',
    'ServerGroup',
  ]) {
    assert.equal(server.includes(internal), false, `server.d.ts has ${internal}`);
  }
  assert.equal(client.includes('static create'), false);
});

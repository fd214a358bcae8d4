import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ROOT, runProcess, test } from './helpers.js';

interface ExportedSpan {
  name: string;
  kind: string;
  id: string;
  parent?: string;
  status: string;
  attributes: Record<string, unknown>;
}

test('examples/opentelemetry.ts turns the tracing channels into a tree of spans', async () => {
  const run = await runProcess(process.execPath, [
    join(ROOT, 'dist', 'examples', 'opentelemetry.js'),
  ]);
  assert.equal(run.code, 0, run.stderr);
  const spans = run.stdout
    .toString()
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as ExportedSpan);
  const byId = new Map(spans.map((span) => [span.id, span]));
  const app = spans.find((span) => span.name === 'app')!;
  const clients = spans.filter((span) => span.kind === 'CLIENT');
  const servers = spans.filter((span) => span.kind === 'SERVER');
  const handles = spans.filter((span) => span.name === 'handle');
  assert.equal(clients.length, 2);
  assert.equal(servers.length, 2);
  // The client spans are children of the span active where the requests were made.
  for (const span of clients) assert.equal(span.parent, app.id);
  // The handler's own spans are children of their server request's span: its context was
  // active in the handler.
  for (const span of handles) assert.equal(byId.get(span.parent!)?.kind, 'SERVER');
  assert.deepEqual(
    servers.map((span) => [span.status, span.attributes['simple-ipc.outcome']]).sort(),
    [
      ['ERROR', 'handler-error'],
      ['UNSET', 'ok'],
    ],
  );
  assert.deepEqual(
    clients.map((span) => [span.status, span.attributes['simple-ipc.outcome']]).sort(),
    [
      ['ERROR', 'error'],
      ['UNSET', 'ok'],
    ],
  );
  const ok = servers.find((span) => span.status === 'UNSET')!;
  assert.equal(ok.attributes['simple-ipc.request.bytes'], 12);
  assert.equal(typeof ok.attributes['simple-ipc.queue_wait_ms'], 'number');
});

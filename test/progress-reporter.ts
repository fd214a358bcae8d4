/**
 * A `node:test` reporter that writes a line as each test begins and as it ends, when that
 * happens (the spec reporter writes a test only once it has ended, so a test that hangs never
 * shows in it). When a file hangs, the last `begin` line without its end names the test.
 * scripts/test-windows.sh runs every file with it beside the spec reporter.
 */

import type { TestEvent } from 'node:test/reporters';

export default async function* progress(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  for await (const event of source) {
    // Dequeued: the test is about to run (its `test:start` comes only when it is reported).
    if (event.type === 'test:dequeue') yield `begin ${event.data.name}\n`;
    else if (event.type === 'test:pass') yield `pass  ${event.data.name}\n`;
    else if (event.type === 'test:fail') yield `fail  ${event.data.name}\n`;
  }
}

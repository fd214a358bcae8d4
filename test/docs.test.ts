import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode } from '../src/index.js';
import { ROOT, test } from './helpers.js';

const api = readFileSync(join(ROOT, 'docs', 'api.md'), 'utf8');

test('docs/api.md documents every public export', () => {
  const index = readFileSync(join(ROOT, 'src', 'index.ts'), 'utf8');
  const names = [...index.matchAll(/export \{([^}]*)\}/g)].flatMap((m) =>
    m[1]!
      .split(',')
      .map((name) => name.replace(/^\s*type\s+/, '').trim())
      .filter((name) => name !== ''),
  );
  assert.ok(names.length > 40, `found ${names.length} exports`);
  const missing = names.filter((name) => !api.includes(name));
  assert.deepEqual(missing, [], 'exports missing from docs/api.md');
});

test('docs/api.md names every export of simple-ipc/client where it describes that entry', () => {
  const client = readFileSync(join(ROOT, 'src', 'client.ts'), 'utf8');
  const names = [...client.matchAll(/export \{([^}]*)\}/g)].flatMap((m) =>
    m[1]!
      .split(',')
      .map((name) => name.trim().replace(/^type /, ''))
      .filter((name) => name !== ''),
  );
  const start = api.indexOf("### The client entry: `import { ... } from 'simple-ipc/client'`");
  assert.notEqual(start, -1, 'docs/api.md has a section on the client entry');
  const section = api.slice(start, api.indexOf('\n### ', start + 1));
  assert.deepEqual(
    names.filter((name) => !section.includes(`\`${name}\``)),
    [],
    'exports of simple-ipc/client not named in its section',
  );
});

test('docs/api.md lists every error code', () => {
  const missing = Object.values(ErrorCode).filter((code) => !api.includes(`\`${code}\``));
  assert.deepEqual(missing, []);
});

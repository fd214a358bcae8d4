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

test('docs/api.md lists every error code', () => {
  const missing = Object.values(ErrorCode).filter((code) => !api.includes(`\`${code}\``));
  assert.deepEqual(missing, []);
});

/**
 * The lint step's import-cycle check (scripts/import-cycles.mjs): it must see the loops that
 * ESLint's import plugins skip (type-only imports, dynamic `import()`), and pass a tree
 * without loops.
 */

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, runProcess, tempDir, test } from './helpers.js';

const SCRIPT = join(ROOT, 'scripts', 'import-cycles.mjs');

function writeTree(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
}

function check(cwd: string, ...dirs: string[]): ReturnType<typeof runProcess> {
  return runProcess(process.execPath, [SCRIPT, ...dirs], { cwd });
}

test('finds loops of type-only imports, dynamic imports and re-exports; passes a tree without', async (t) => {
  const dir = tempDir(t);
  writeTree(dir, {
    'types/x.ts': "import type { Y } from './y.js';\nexport type X = Y | number;\n",
    'types/y.ts': "import { type X } from './x.js';\nexport type Y = X[];\n",
    'dynamic/p.ts': "export async function load() {\n  return import('./q.js');\n}\n",
    'dynamic/q.ts': "export { load } from './p.js';\n",
    'deep/a.ts': "import './b.js';\n",
    'deep/b.ts': "import './c.js';\n",
    'deep/c.ts': "import type {} from './a.js';\n",
    'clean/top.ts': "import { leaf } from './leaf.js';\nexport const top = leaf + 1;\n",
    'clean/leaf.ts': 'export const leaf = 1;\n',
  });
  const looped = await check(dir, 'types', 'dynamic', 'deep', 'clean');
  const out = looped.stdout.toString();
  assert.equal(looped.code, 1, out + looped.stderr.toString());
  const lines = out.split('\n').filter((line) => line.startsWith('import cycle:'));
  assert.equal(lines.length, 3, out);
  assert.match(out, /x\.ts -> \S*y\.ts -> \S*x\.ts/);
  assert.match(out, /p\.ts -> \S*q\.ts -> \S*p\.ts/);
  assert.match(out, /a\.ts -> \S*b\.ts -> \S*c\.ts -> \S*a\.ts/);
  assert.doesNotMatch(out, /top\.ts|leaf\.ts/);
  assert.match(out, /^3 import cycle\(s\)/m);

  const clean = await check(dir, 'clean');
  assert.equal(clean.code, 0, clean.stdout.toString() + clean.stderr.toString());
  assert.equal(clean.stdout.toString(), '');
});

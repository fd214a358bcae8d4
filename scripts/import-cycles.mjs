#!/usr/bin/env node
// The lint step's check for import cycles: modules that import each other, directly or through
// others, whatever the kind of import (static, `import type`, `export ... from`, dynamic
// `import()`). ESLint's import plugins skip type-only imports, but a loop of types is still two
// modules that cannot be understood, moved or tested apart: the shared piece belongs below both.
//
//   node scripts/import-cycles.mjs [DIR...]    (default: src cli bench examples test)
//
// Reads each .ts file under the folders (dist/ and node_modules/ aside), takes its relative
// imports with TypeScript's own pre-processor (which sees every kind above), resolves `./x.js`
// to `./x.ts` as the compiler does, and prints each cycle as `a.ts -> b.ts -> a.ts`. Exits 1 if
// there is one, 0 otherwise.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import process from 'node:process';
import ts from 'typescript';

const roots =
  process.argv.length > 2 ? process.argv.slice(2) : ['src', 'cli', 'bench', 'examples', 'test'];
const files = roots.flatMap((root) => tsFilesUnder(resolve(root)));
const known = new Set(files);

/** @type {Map<string, string[]>} each file and the files it imports */
const graph = new Map();
for (const file of files) {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  const targets = [];
  for (const { fileName } of info.importedFiles) {
    if (!fileName.startsWith('.')) continue;
    const target = resolveModule(dirname(file), fileName);
    if (target !== undefined) targets.push(target);
  }
  graph.set(file, targets);
}

const cycles = stronglyConnected(graph).map(cycleThrough);
for (const cycle of cycles) {
  const names = cycle.map((file) => relative(process.cwd(), file));
  process.stdout.write(`import cycle: ${names.join(' -> ')}\n`);
}
if (cycles.length > 0) {
  process.stdout.write(
    `${cycles.length} import cycle(s): move what the modules share into a module below them both\n`,
  );
  process.exit(1);
}

function tsFilesUnder(dir) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return statSync(dir, { throwIfNoEntry: false })?.isFile() && dir.endsWith('.ts') ? [dir] : [];
  }
  return entries.flatMap((entry) => {
    if (entry.name === 'node_modules' || entry.name === 'dist') return [];
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return tsFilesUnder(path);
    return entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')
      ? [path]
      : [];
  });
}

// `./x.js` names `./x.ts` (NodeNext resolution); `./x` or `./x.ts` are taken as written.
function resolveModule(from, specifier) {
  const base = resolve(from, specifier);
  const candidates = [
    base,
    base.replace(/\.(m|c)?js$/, '.$1ts'),
    `${base}.ts`,
    join(base, 'index.ts'),
  ];
  return candidates.find((candidate) => known.has(candidate));
}

// Tarjan's algorithm: the groups of files that reach each other (a file alone counts only if it
// imports itself).
function stronglyConnected(edges) {
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const groups = [];
  let next = 0;
  const visit = (file) => {
    index.set(file, next);
    low.set(file, next);
    next++;
    stack.push(file);
    onStack.add(file);
    for (const target of edges.get(file) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(file, Math.min(low.get(file), low.get(target)));
      } else if (onStack.has(target)) {
        low.set(file, Math.min(low.get(file), index.get(target)));
      }
    }
    if (low.get(file) === index.get(file)) {
      const group = [];
      let member;
      do {
        member = stack.pop();
        onStack.delete(member);
        group.push(member);
      } while (member !== file);
      if (group.length > 1 || (edges.get(file) ?? []).includes(file)) groups.push(group);
    }
  };
  for (const file of edges.keys()) if (!index.has(file)) visit(file);
  return groups;
}

// One loop through a group, as a path that ends where it starts: from its first file (by name),
// follow imports that stay in the group, breadth first, back to that file.
function cycleThrough(group) {
  const members = new Set(group);
  const start = [...group].sort()[0];
  const previous = new Map();
  const queue = [start];
  while (queue.length > 0) {
    const file = queue.shift();
    for (const target of graph.get(file) ?? []) {
      if (!members.has(target)) continue;
      if (target === start) {
        const path = [start];
        for (let at = file; at !== start; at = previous.get(at)) path.splice(1, 0, at);
        return [...path, start];
      }
      if (!previous.has(target)) {
        previous.set(target, file);
        queue.push(target);
      }
    }
  }
  return [...group, start];
}

// The last step of the build: the client's modules in one file. A process that asks a daemon
// one question loads the client entry and what it imports; each ES module costs Node's loader a
// resolution, a read, a compile and a link whatever its size (about 1.2 million instructions on
// Node 26, docs/benchmarks.md), and the client is 16 of them. So after tsc:
//
// 1. the modules that dist/src/client.js imports, followed through, are bundled into one file,
//    dist/src/client-core.js, which exports every export of every one of them (with a source
//    map that leads to the TypeScript sources, as tsc's own maps do);
// 2. each of those modules (client.js too) becomes one line that re-exports its own names from
//    that file.
//
// The sources stay modules; only the build output changes. A module of the server that imports
// ./errors.js gets the same SimpleIpcError as the client entry: every class exists once.
// Re-exports are live bindings, so exports that are assigned later (`export let`) still work.
//
//   node scripts/bundle-client.mjs      (run by `npm run build`, after tsc)
import { rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import process from 'node:process';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const SRC = join('dist', 'src');
const ENTRY = join(SRC, 'client.js');
const CORE = 'client-core.js';

/** Stops the build with a message that says what went wrong. */
function fail(message) {
  process.stderr.write(`bundle-client: ${message}\n`);
  process.exit(1);
}

// The client's modules, as esbuild follows them from the entry.
const probe = await build({
  entryPoints: [ENTRY],
  bundle: true,
  write: false,
  metafile: true,
  platform: 'node',
  format: 'esm',
  logLevel: 'silent',
});
const modules = Object.keys(probe.metafile.inputs).map((input) => basename(input));
for (const input of Object.keys(probe.metafile.inputs)) {
  if (join(input) !== join(SRC, basename(input))) {
    fail(`the client imports ${input}, outside ${SRC}: only the library's own modules are bundled`);
  }
}

// What each module exports, read by loading it as it is (before anything is rewritten). A name
// exported by two modules must be one binding (a re-export), or the bundle could not say which.
const exported = new Map();
const owner = new Map();
for (const module of modules) {
  const namespace = await import(pathToFileURL(join(SRC, module)).href);
  const names = Object.keys(namespace);
  exported.set(module, { names, namespace });
  for (const name of names) {
    const first = owner.get(name);
    if (first === undefined) owner.set(name, module);
    else if (exported.get(first).namespace[name] !== namespace[name]) {
      fail(`${first} and ${module} both export '${name}', as different things`);
    }
  }
}
if (exported.get('client.js').names.includes('default')) fail('a default export is not supported');

// 1. The bundle: every module's exports, under their own names.
const entry = modules
  .filter((module) => exported.get(module).names.length > 0)
  .map((module) => `export * from './${module}';`)
  .join('\n');
await build({
  stdin: { contents: entry, resolveDir: SRC, sourcefile: 'client-core-entry.js', loader: 'js' },
  bundle: true,
  outfile: join(SRC, CORE),
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  keepNames: true,
  banner: {
    js: `// The client's modules in one file (scripts/bundle-client.mjs). Sources: src/*.ts.`,
  },
  logLevel: 'warning',
});

// The bundle must give every name, and give functions and classes their own names (a class
// renamed to avoid a clash would show the new name in stack traces and constructor.name).
const core = await import(pathToFileURL(join(SRC, CORE)).href);
for (const [module, { names, namespace }] of exported) {
  for (const name of names) {
    if (!(name in core)) fail(`the bundle lacks '${name}' of ${module}`);
    const value = namespace[name];
    if (typeof value === 'function' && core[name].name !== value.name) {
      fail(`the bundle renamed ${module}'s '${name}' (${value.name} -> ${core[name].name})`);
    }
  }
}

// 2. Each module becomes a re-export of its own names from the bundle.
for (const [module, { names }] of exported) {
  const file = join(SRC, module);
  const body =
    names.length === 0
      ? `import './${CORE}';\n`
      : `export { ${names.join(', ')} } from './${CORE}';\n`;
  writeFileSync(
    file,
    `// Built into ./${CORE} with the rest of the client (scripts/bundle-client.mjs).\n${body}`,
  );
  rmSync(`${file}.map`, { force: true });
}

#!/usr/bin/env node
// The simple-ipc command. The implementation is compiled to dist/ by `npm run build`.
/* global process */

// Node 22.1 and later can keep the compiled code of the modules on disk (in the system's temp
// directory, or NODE_COMPILE_CACHE; NODE_DISABLE_COMPILE_CACHE=1 turns it off), so that later
// starts skip parsing and compiling them. Older Node has no such function and compiles as ever.
// The implementation is imported only after this, so that its modules go through the cache.
// node:module is taken, not imported: its import would load a module (and source maps) more.
process.getBuiltinModule?.('node:module').enableCompileCache?.();
const { runCli } = await import('../dist/cli/main.js');
await runCli(process.argv.slice(2));

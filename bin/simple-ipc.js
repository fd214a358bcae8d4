#!/usr/bin/env node
// The simple-ipc command. The implementation is compiled to dist/ by `npm run build`.
import process from 'node:process';
import { runCli } from '../dist/cli/main.js';

await runCli(process.argv.slice(2));

#!/usr/bin/env node
// The API reports (etc/*.api.md) of the package's two entries, made by API Extractor from the
// built .d.ts files, in one process: the two `api-extractor run` commands this replaces each
// started Node, loaded API Extractor with its TypeScript and compiled the same declaration
// files. Here the TypeScript program is made once, for both entries, and each report is checked
// against it as `api-extractor run -c CONFIG` would.
//
//   node scripts/api-reports.mjs            (lint: a report that differs is a failure)
//   node scripts/api-reports.mjs --local    (npm run api: writes the reports that differ)
//
// Exits 1 if either run has an error or a warning (with --local, an error), 0 otherwise.

import { CompilerState, Extractor, ExtractorConfig } from '@microsoft/api-extractor';
import process from 'node:process';

const CONFIGS = ['api-extractor.json', 'api-extractor.client.json'];

const args = process.argv.slice(2);
const unknown = args.filter((arg) => arg !== '--local');
if (unknown.length > 0) {
  process.stderr.write(`api-reports: unknown argument ${unknown[0]}; the only one is --local\n`);
  process.exit(2);
}
const localBuild = args.includes('--local');

const configs = CONFIGS.map((file) => ExtractorConfig.loadFileAndPrepare(file));
// One program that holds both entry points; API Extractor analyses each report from its own
// entry point's exports, so the other entry in the program changes nothing in it. That holds
// while the configurations compile alike, from one tsconfig.
for (const [index, config] of configs.entries()) {
  if (config.tsconfigFilePath !== configs[0].tsconfigFilePath || config.overrideTsconfig) {
    throw new Error(`${CONFIGS[index]} compiles differently from ${CONFIGS[0]}`);
  }
}
const compilerState = CompilerState.create(configs[0], {
  additionalEntryPoints: configs.slice(1).map((config) => config.mainEntryPointFilePath),
});

let failed = false;
for (const [index, config] of configs.entries()) {
  process.stdout.write(`API report from ${CONFIGS[index]}\n`);
  const result = Extractor.invoke(config, { localBuild, compilerState });
  if (result.succeeded) {
    process.stdout.write('API Extractor completed successfully\n\n');
  } else {
    failed = true;
    process.stdout.write(
      `API Extractor completed with ${result.errorCount} error(s) and ${result.warningCount} warning(s)\n\n`,
    );
  }
}
process.exit(failed ? 1 : 0);

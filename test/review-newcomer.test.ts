/**
 * Review findings from a newcomer's angle: someone who has only the installed package (its
 * README, its shipped files, its types and its `simple-ipc` bin) and follows the README from the
 * top. Each test states what the README, the CLI's help or the TSDoc promises, and fails where
 * the installed package does otherwise.
 */

import assert from 'node:assert/strict';
import { runCli, test } from './helpers.js';

test("'simple-ipc help help' shows the help of the help command it lists", async () => {
  // `simple-ipc --help` lists `help [COMMAND]  show the help of a command` among the commands
  // and ends "Run 'simple-ipc help COMMAND' for the options and examples of a command".
  const r = await runCli(['help', 'help']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.toString(), /help/);
});

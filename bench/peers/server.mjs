// One contender's server, forked by run.mjs: `node server.mjs <contender> <socket path>`.
// Says 'ready' over the IPC channel once it listens; closes and exits on 'exit' (or when run.mjs
// goes away).
import process from 'node:process';
import { setTimeout } from 'node:timers';
import { load } from './contenders.mjs';

const [name, path] = process.argv.slice(2);
const contender = await load(name);
const close = await contender.serve(path);
process.send('ready');

async function exit() {
  setTimeout(() => process.exit(0), 2000).unref();
  try {
    await close();
  } finally {
    process.exit(0);
  }
}
process.on('message', (message) => {
  if (message === 'exit') void exit();
});
process.on('disconnect', () => void exit());

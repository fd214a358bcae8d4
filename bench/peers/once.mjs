// The fresh-process scenario: `node once.mjs <contender> <socket path>` loads one contender,
// sends one 'ping', checks the 'pong' and exits. run.mjs times it from spawn to exit.
import process from 'node:process';
import { checked, request } from './answer.mjs';
import { load } from './contenders.mjs';

const [name, path] = process.argv.slice(2);
const contender = await load(name);
const client = await contender.connect(path);
checked({ kind: 'ping' }, await client.call(request(contender.kind, { kind: 'ping' })));
await client.close();
process.exit(0);

/* global process */
// The server the start-up pairs talk to: the library's, with the benchmark's ping handler, in a
// process of its own. Prints `ready` when it listens and stops when its standard input closes.
import { startServer } from 'simple-ipc';
import ping from '../../dist/bench/ping-handler.js';
const server = await startServer(process.argv[2], ping);
process.stdout.write('ready\n');
process.stdin.on('end', () => void server.stop()).resume();

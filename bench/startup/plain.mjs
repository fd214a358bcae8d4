/* global process, Buffer */
// The floor for one request: a plain `node:net` client sending the bytes `simple-ipc call PATH
// ping` sends (`ping` and a flush) and printing the answer's payload (one packet, then a flush).
import { connect } from 'node:net';
const chunks = [];
const socket = connect(process.argv[2], () => socket.write('0008ping0000'));
socket.on('data', (chunk) => chunks.push(chunk));
socket.on('end', () => process.stdout.write(Buffer.concat(chunks).subarray(4, -4)));

// One request from a script that imports the client entry (resolved by the package's name).
/* global process */
import { sendCommand } from 'simple-ipc/client';
process.stdout.write(await sendCommand(process.argv[2], 'ping'));

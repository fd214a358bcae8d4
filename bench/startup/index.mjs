// One request from a script that imports the package's main entry.
/* global process */
import { sendCommand } from 'simple-ipc';
process.stdout.write(await sendCommand(process.argv[2], 'ping'));

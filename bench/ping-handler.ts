/**
 * The benchmark's ping handler as a module of its own, so that every process of a clustered
 * server (`startClusteredServer`) can load it: `pong` for `ping`, `?` for anything else.
 */

import type { RequestHandler } from '../src/index.js';

const PING = Buffer.from('ping', 'latin1');
const PONG = Buffer.from('pong', 'latin1');
const UNKNOWN = Buffer.from('?', 'latin1');

const ping: RequestHandler = async (request, reply) => {
  await reply(request.equals(PING) ? PONG : UNKNOWN);
};

export default ping;

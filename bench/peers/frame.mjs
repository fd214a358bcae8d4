// The plain node:net contenders' framing: a 4-byte big-endian length, then the payload. The
// reader keeps the pieces as they come and joins a payload once (the one copy every contender
// makes to hand over a whole message); a payload inside one piece is a view, not a copy.
import { Buffer } from 'node:buffer';

/** Writes one frame (header and payload in one corked write). */
export function writeFrame(socket, payload) {
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(payload.length, 0);
  socket.cork();
  socket.write(header);
  socket.write(payload);
  socket.uncork();
}

/** Calls `onFrame(payload)` for each frame that arrives on `socket`. */
export function readFrames(socket, onFrame) {
  let pieces = [];
  let have = 0;
  let need = -1;
  socket.on('data', (data) => {
    pieces.push(data);
    have += data.length;
    for (;;) {
      if (need < 0) {
        if (have < 4) return;
        if (pieces[0].length < 4) pieces = [Buffer.concat(pieces, have)];
        need = pieces[0].readUInt32BE(0);
        pieces[0] = pieces[0].subarray(4);
        have -= 4;
      }
      if (have < need) return;
      let payload;
      if (pieces[0].length >= need) {
        payload = pieces[0].subarray(0, need);
        pieces[0] = pieces[0].subarray(need);
      } else {
        const all = Buffer.concat(pieces, have);
        payload = all.subarray(0, need);
        pieces = [all.subarray(need)];
      }
      have -= need;
      need = -1;
      if (pieces[0].length === 0) pieces = [];
      onFrame(payload);
      if (have === 0) return;
    }
  });
}

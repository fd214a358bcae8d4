// Plain node:net over one connection kept open: requests go one after another on it (a caller
// that wants 8 in flight opens 8 connections).
import { connect as netConnect } from 'node:net';
import { readFrames, writeFrame } from '../frame.mjs';
import { serveFrames } from './net-server.mjs';

export const kind = 'buffer';
export const serve = serveFrames;

export async function connect(path) {
  const socket = netConnect(path);
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const waiting = [];
  const fail = (err) => {
    for (const w of waiting.splice(0)) w.reject(err);
  };
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('closed before the answer')));
  readFrames(socket, (response) => waiting.shift()?.resolve(response));
  return {
    call: (request) =>
      new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        writeFrame(socket, request);
      }),
    close: async () => {
      socket.end();
      await new Promise((resolve) => socket.once('close', resolve));
    },
  };
}

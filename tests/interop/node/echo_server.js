#!/usr/bin/env node
// Node `ws` echo server used as a peer we did not write.
//
// Usage: node echo_server.js (--deflate | --no-deflate) [--port N]
//
// Prints exactly `listening on ws://127.0.0.1:PORT` when ready, echoes every
// message with its type, prints `open extensions=E` and `closed code=C` per
// connection. Exits when its stdin reaches end of file or when killed.
'use strict';

let WebSocket;
try {
  WebSocket = require('ws');
} catch (e) {
  console.error(
    `FAIL: cannot load the \`ws\` package (${e.message}); install it with ` +
      '`cd tests/interop/node && npm ci`'
  );
  process.exit(3);
}

const args = process.argv.slice(2);
const deflate = args.includes('--deflate');
if (deflate === args.includes('--no-deflate')) {
  console.error('usage: node echo_server.js (--deflate | --no-deflate) [--port N]');
  process.exit(2);
}
const portIdx = args.indexOf('--port');
const port = portIdx >= 0 ? Number(args[portIdx + 1]) : 0;

const wss = new WebSocket.Server({
  host: '127.0.0.1',
  port,
  perMessageDeflate: deflate ? { threshold: 0 } : false,
  maxPayload: 64 << 20,
});

wss.on('listening', () => {
  console.log(`listening on ws://127.0.0.1:${wss.address().port}`);
});

wss.on('connection', (ws) => {
  console.log(`open extensions=${ws.extensions || 'none'}`);
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('close', (code, reason) => console.log(`closed code=${code} reason=${reason.toString()}`));
  ws.on('error', (e) => console.log(`error ${e.message}`));
});

process.stdin.on('data', () => {});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

#!/usr/bin/env node
// Node `ws` client that checks an echo server byte for byte.
//
// Usage: node echo_client.js URL (--deflate | --no-deflate)
//
// For every size in SIZES it sends a text message (rich in non-ASCII) and a
// binary message and checks that the echo has the same type and the same
// bytes. Then a ping (checks the pong payload), then close 1000 (checks that
// the server answered with 1000).
//
// Prints `extensions: <negotiated header or none>`, one `ok ...` line per
// check and `all ok`; exits 0 only if everything passed, otherwise prints
// `FAIL: ...` on stderr and exits 1.
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
const { SIZES, textPayload, binaryPayload } = require('./payloads');

const TIMEOUT_MS = 60000;

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

function main() {
  const args = process.argv.slice(2);
  const url = args.find((a) => !a.startsWith('--'));
  const deflate = args.includes('--deflate');
  if (!url || deflate === args.includes('--no-deflate')) {
    console.error('usage: node echo_client.js URL (--deflate | --no-deflate)');
    process.exit(2);
  }

  const ws = new WebSocket(url, {
    perMessageDeflate: deflate ? { threshold: 0 } : false,
    maxPayload: 64 << 20,
    handshakeTimeout: 10000,
  });

  // Messages arrive in order; each check awaits the next one.
  const inbox = [];
  let waiting = null;
  ws.on('message', (data, isBinary) => {
    const item = { data, isBinary };
    if (waiting) {
      const w = waiting;
      waiting = null;
      w(item);
    } else {
      inbox.push(item);
    }
  });
  const nextMessage = () =>
    inbox.length
      ? Promise.resolve(inbox.shift())
      : new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('timed out waiting for an echo')), TIMEOUT_MS);
          waiting = (item) => {
            clearTimeout(t);
            resolve(item);
          };
        });

  let closeInfo = null;
  const closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      closeInfo = { code, reason: reason.toString() };
      resolve();
    });
  });
  ws.on('error', (e) => fail(`socket error: ${e.message}`));
  let extHeader = null;
  ws.on('upgrade', (res) => {
    extHeader = res.headers['sec-websocket-extensions'] || null;
  });

  ws.on('open', async () => {
    try {
      // ws.extensions lists the extensions ws accepted and set up.
      const ext = ws.extensions;
      console.log(`extensions: ${extHeader || 'none'}`);
      if (deflate && ext !== 'permessage-deflate') {
        fail(`permessage-deflate not negotiated (header: ${JSON.stringify(extHeader)})`);
      }
      if (!deflate && (ext || extHeader)) {
        fail(`unexpected extensions negotiated: ${JSON.stringify(extHeader)}`);
      }

      for (const size of SIZES) {
        for (const kind of ['text', 'binary']) {
          const sent = kind === 'text' ? textPayload(size) : binaryPayload(size);
          const sentBytes = kind === 'text' ? Buffer.from(sent, 'utf8') : sent;
          if (sentBytes.length !== size) fail(`payload generator bug: ${kind} ${size}`);
          await new Promise((resolve, reject) =>
            ws.send(sent, { binary: kind === 'binary' }, (err) => (err ? reject(err) : resolve()))
          );
          const got = await nextMessage();
          if (got.isBinary !== (kind === 'binary')) {
            fail(`${kind} ${size}: echo came back as ${got.isBinary ? 'binary' : 'text'}`);
          }
          if (!sentBytes.equals(got.data)) {
            let i = 0;
            const n = Math.min(sentBytes.length, got.data.length);
            while (i < n && sentBytes[i] === got.data[i]) i++;
            fail(
              `${kind} ${size}: echo differs: sent ${sentBytes.length} bytes, got ` +
                `${got.data.length} bytes, first difference at byte ${i}`
            );
          }
          console.log(`ok ${kind} ${size}`);
        }
      }

      const pingData = Buffer.from('ping \u03ba\u0000', 'utf8');
      const pong = new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no pong within 10 s')), 10000);
        ws.once('pong', (data) => {
          clearTimeout(t);
          resolve(data);
        });
      });
      ws.ping(pingData);
      const pongData = await pong;
      if (!pingData.equals(pongData)) {
        fail(`pong payload ${pongData.toString('hex')} != ping payload ${pingData.toString('hex')}`);
      }
      console.log('ok ping');

      ws.close(1000, 'bye');
      const t = setTimeout(() => fail('close handshake did not finish within 10 s'), 10000);
      await closed;
      clearTimeout(t);
      if (closeInfo.code !== 1000) {
        fail(`server answered close 1000 with code ${closeInfo.code} reason ${JSON.stringify(closeInfo.reason)}`);
      }
      console.log(`ok close ${closeInfo.code}`);
      console.log('all ok');
      process.exit(0);
    } catch (e) {
      fail(e.stack || String(e));
    }
  });
}

main();

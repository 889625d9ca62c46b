#!/usr/bin/env node
// WebSockets over HTTP/2 (RFC 8441) with Node's built-in `http2` client.
//
// Usage: node h2_ws.js URL [--streams N] [--ca FILE] [--gateway]
//   URL: http://HOST:PORT (cleartext HTTP/2 with prior knowledge) or
//        https://HOST:PORT (TLS, ALPN h2): the server's certificate is
//        verified against the PEM in --ca FILE, or not at all without it.
//
// Opens ONE HTTP/2 session, waits for the server's SETTINGS (which must
// enable the extended CONNECT), then opens N (default 10) WebSocket streams
// on it at once: `:method CONNECT`, `:protocol websocket`, `:scheme`,
// `:authority`, `:path /h2/<i>`, `sec-websocket-version: 13`, each answered
// `:status 200`. Only when all N are open does it send, on every stream, a
// text message, a text message rich in non-ASCII, an empty text, a 100 KB
// binary message (its first bytes name the stream, so crossed streams show),
// an empty binary message and a 125-byte ping; each echo (and the pong) is
// checked byte for byte and in order. Then every stream is closed with a
// code (1000 for stream 0, 4000 + i for the others) and a reason, and the
// server's close frame must carry the same code; after it the server must
// end its side of the stream (END_STREAM, its "TCP FIN"), the client ends
// its own and the stream must close without an error code. All N streams
// must have been on the same session.
//
// With --gateway the server is `wshub serve`: the streams open
// `/connection/websocket`, each connects and subscribes to one channel with
// the Centrifugo JSON protocol (answering the server's `{}` pings), stream 0
// publishes, every stream must receive that publication, then each closes
// with 1000 and the server's close frame must carry 1000.
//
// The RFC 6455 framing is written here by hand: client frames are masked,
// server frames must not be; fragmented server messages are reassembled.
//
// Prints one JSON line (the summary) and exits 0 when every check passed;
// on a failure prints `FAIL: ...` on stderr and exits 1. The whole run is
// bounded by TIMEOUT_MS.
'use strict';

const fs = require('fs');
const http2 = require('http2');
const crypto = require('crypto');
const { textPayload, binaryPayload } = require('./payloads');

const TIMEOUT_MS = 30000;
const BIG = 100000;

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

const OP = { cont: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa };

/** One masked client frame (FIN set). */
function frame(opcode, payload) {
  const n = payload.length;
  let head;
  if (n < 126) {
    head = Buffer.from([0x80 | opcode, 0x80 | n]);
  } else if (n < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 126;
    head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  const key = crypto.randomBytes(4);
  const body = Buffer.alloc(n);
  for (let i = 0; i < n; i++) body[i] = payload[i] ^ key[i & 3];
  return Buffer.concat([head, key, body]);
}

function closePayload(code, reason) {
  const r = Buffer.from(reason, 'utf8');
  const p = Buffer.alloc(2 + r.length);
  p.writeUInt16BE(code, 0);
  r.copy(p, 2);
  return p;
}

/**
 * Parses server frames out of a byte stream; hands out whole messages
 * (`{opcode, data}`, fragments joined) and control frames as they come.
 */
class FrameReader {
  constructor(label, onMessage) {
    this.label = label;
    this.buf = Buffer.alloc(0);
    this.onMessage = onMessage;
    this.fragments = null; // {opcode, parts}
  }

  push(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      if (b[0] & 0x70) fail(`${this.label}: server frame with RSV bits set (${b[0].toString(16)})`);
      const opcode = b[0] & 0x0f;
      if (b[1] & 0x80) fail(`${this.label}: server sent a masked frame`);
      let n = b[1] & 0x7f;
      let off = 2;
      if (n === 126) {
        if (b.length < 4) return;
        n = b.readUInt16BE(2);
        off = 4;
      } else if (n === 127) {
        if (b.length < 10) return;
        n = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + n) return;
      const payload = b.subarray(off, off + n);
      this.buf = b.subarray(off + n);
      if (opcode >= 0x8) {
        if (!fin) fail(`${this.label}: fragmented control frame`);
        this.onMessage({ opcode, data: Buffer.from(payload) });
      } else if (opcode === OP.cont) {
        if (!this.fragments) fail(`${this.label}: continuation frame without a message`);
        this.fragments.parts.push(Buffer.from(payload));
        if (fin) {
          const m = { opcode: this.fragments.opcode, data: Buffer.concat(this.fragments.parts) };
          this.fragments = null;
          this.onMessage(m);
        }
      } else if (opcode === OP.text || opcode === OP.binary) {
        if (this.fragments) fail(`${this.label}: new data frame inside a fragmented message`);
        if (fin) this.onMessage({ opcode, data: Buffer.from(payload) });
        else this.fragments = { opcode, parts: [Buffer.from(payload)] };
      } else {
        fail(`${this.label}: reserved opcode ${opcode}`);
      }
    }
  }
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** Opens one extended-CONNECT WebSocket stream; resolves once `:status 200`. */
function openWebSocket(session, url, i, path) {
  const label = `stream ${i}`;
  const req = session.request(
    {
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':scheme': url.protocol.slice(0, -1),
      ':authority': url.host,
      ':path': path || `/h2/${i}`,
      'sec-websocket-version': '13',
      origin: `${url.protocol}//${url.host}`,
    },
    { endStream: false }
  );
  const inbox = [];
  let waiting = null;
  let ended = false;
  let endWaiter = null;
  const reader = new FrameReader(label, (m) => {
    if (m.opcode === OP.ping) {
      req.write(frame(OP.pong, m.data));
      return;
    }
    if (waiting) {
      const w = waiting;
      waiting = null;
      w(m);
    } else inbox.push(m);
  });
  req.on('data', (chunk) => reader.push(chunk));
  req.on('end', () => {
    ended = true;
    if (endWaiter) endWaiter();
    if (waiting) {
      const w = waiting;
      waiting = null;
      w(null);
    }
  });
  req.on('error', (e) => fail(`${label}: stream error ${e.code || ''} ${e.message}`));
  const ws = {
    i,
    label,
    req,
    next: (what) =>
      withTimeout(
        inbox.length
          ? Promise.resolve(inbox.shift())
          : ended
            ? Promise.resolve(null)
            : new Promise((resolve) => {
                waiting = resolve;
              }),
        TIMEOUT_MS,
        `${label}: ${what}`
      ),
    send: (opcode, payload) => req.write(frame(opcode, payload)),
    end: () =>
      withTimeout(
        ended ? Promise.resolve() : new Promise((resolve) => (endWaiter = resolve)),
        TIMEOUT_MS,
        `${label}: end of stream after the close handshake`
      ),
  };
  return withTimeout(
    new Promise((resolve, reject) => {
      req.on('response', (headers) => {
        const status = headers[':status'];
        if (status !== 200) reject(new Error(`${label}: extended CONNECT answered ${status}`));
        else resolve(ws);
      });
      req.on('close', () => reject(new Error(`${label}: stream closed before a response (rst ${req.rstCode})`)));
    }),
    TIMEOUT_MS,
    `${label}: response to the extended CONNECT`
  );
}

function describe(buf) {
  return `${buf.length} bytes (${buf.subarray(0, 16).toString('hex')}${buf.length > 16 ? '...' : ''})`;
}

async function exchange(ws, stats) {
  const big = binaryPayload(BIG);
  big.writeUInt32BE(0xa5a50000 + ws.i, 0);
  const messages = [
    [OP.text, Buffer.from(`hello from stream ${ws.i}`, 'utf8'), 'text'],
    [OP.text, Buffer.from(textPayload(4000 + ws.i), 'utf8'), 'utf-8 text'],
    [OP.text, Buffer.alloc(0), 'empty text'],
    [OP.binary, big, `binary ${BIG}`],
    [OP.binary, Buffer.alloc(0), 'empty binary'],
  ];
  // Everything is written first, then the echoes are read in order.
  for (const [op, data] of messages) ws.send(op, data);
  const pingData = Buffer.alloc(125, 0x30 + (ws.i % 10));
  ws.send(OP.ping, pingData);
  for (const [op, data, what] of messages) {
    const m = await ws.next(`echo of ${what}`);
    if (!m) fail(`${ws.label}: stream ended before the echo of ${what}`);
    if (m.opcode !== op) fail(`${ws.label}: echo of ${what} has opcode ${m.opcode}, want ${op}`);
    if (!m.data.equals(data)) fail(`${ws.label}: echo of ${what} differs: sent ${describe(data)}, got ${describe(m.data)}`);
    stats.messages += 1;
    stats.bytes += data.length;
  }
  const pong = await ws.next('pong');
  if (!pong || pong.opcode !== OP.pong || !pong.data.equals(pingData)) {
    fail(`${ws.label}: expected a pong with the ping's 125 bytes, got ${pong ? `opcode ${pong.opcode}, ${describe(pong.data)}` : 'the end'}`);
  }
  stats.pongs += 1;

  const code = ws.i === 0 ? 1000 : 4000 + ws.i;
  const reason = `bye from stream ${ws.i}`;
  ws.send(OP.close, closePayload(code, reason));
  const c = await ws.next('close frame');
  if (!c) fail(`${ws.label}: stream ended without a close frame`);
  if (c.opcode !== OP.close) fail(`${ws.label}: expected a close frame, got opcode ${c.opcode} (${describe(c.data)})`);
  if (c.data.length < 2) fail(`${ws.label}: close frame without a code`);
  const got = c.data.readUInt16BE(0);
  if (got !== code) fail(`${ws.label}: sent close ${code}, server answered ${got}`);
  // The server ends its side after its close frame (its TCP FIN, RFC 8441
  // §5); the client then ends its own, and the stream must be closed.
  await ws.end();
  ws.req.end();
  await withTimeout(
    ws.req.closed ? Promise.resolve() : new Promise((resolve) => ws.req.once('close', resolve)),
    TIMEOUT_MS,
    `${ws.label}: stream close after both ends`
  );
  if (ws.req.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
    fail(`${ws.label}: stream ended with RST_STREAM code ${ws.req.rstCode}`);
  }
  return { code: got, reason: c.data.subarray(2).toString('utf8') };
}

/** Waits for text lines until `done(lines)`; answers server pings `{}`. */
async function readLines(ws, what, done) {
  const lines = [];
  while (!done(lines)) {
    const m = await ws.next(what);
    if (!m) fail(`${ws.label}: stream ended while waiting for ${what}`);
    if (m.opcode !== OP.text) continue;
    for (const line of m.data.toString('utf8').split('\n')) {
      if (line === '{}') ws.send(OP.text, Buffer.from('{}'));
      else if (line) lines.push(line);
    }
  }
  return lines;
}

/** The Centrifugo protocol on one stream: connect and subscribe. */
async function gatewayJoin(ws, channel) {
  ws.send(
    OP.text,
    Buffer.from(
      `${JSON.stringify({ id: 1, connect: { name: 'node-h2' } })}\n${JSON.stringify({ id: 2, subscribe: { channel } })}`
    )
  );
  const lines = await readLines(ws, 'connect and subscribe replies', (ls) =>
    [1, 2].every((id) => ls.some((l) => JSON.parse(l).id === id))
  );
  for (const l of lines) {
    if (JSON.parse(l).error) fail(`${ws.label}: ${l}`);
  }
}

async function gatewayClose(ws) {
  ws.send(OP.close, closePayload(1000, 'bye'));
  for (;;) {
    const c = await ws.next('close frame');
    if (!c) fail(`${ws.label}: stream ended without a close frame`);
    if (c.opcode !== OP.close) continue;
    const got = c.data.length >= 2 ? c.data.readUInt16BE(0) : null;
    if (got !== 1000) fail(`${ws.label}: sent close 1000, server answered ${got}`);
    await ws.end();
    ws.req.end();
    return got;
  }
}

async function gateway(session, url, n) {
  const channel = `h2room${process.pid}`;
  const sockets = await Promise.all(
    Array.from({ length: n }, (_, i) => openWebSocket(session, url, i, '/connection/websocket'))
  );
  if (new Set(sockets.map((s) => s.req.session)).size !== 1) fail('the streams were spread over several sessions');
  await Promise.all(sockets.map((ws) => gatewayJoin(ws, channel)));
  const text = `hello over h2 from node ${process.pid}`;
  sockets[0].send(OP.text, Buffer.from(JSON.stringify({ id: 3, publish: { channel, data: { text } } })));
  let received = 0;
  await Promise.all(
    sockets.map(async (ws) => {
      await readLines(ws, 'the publication', (ls) => ls.some((l) => l.includes(text)));
      received += 1;
    })
  );
  const codes = await Promise.all(sockets.map((ws) => gatewayClose(ws)));
  return { streams: n, received, close_codes: codes, stream_ids: sockets.map((s) => s.req.id) };
}

async function main() {
  const args = process.argv.slice(2);
  const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const n = opt('--streams') !== undefined ? parseInt(opt('--streams'), 10) : 10;
  const ca = opt('--ca');
  const gatewayMode = args.includes('--gateway');
  const urlArg = args.find((a, i) => !a.startsWith('--') && !['--streams', '--ca'].includes(args[i - 1]));
  if (!urlArg || !(n > 0)) {
    console.error('usage: node h2_ws.js (http|https)://HOST:PORT [--streams N] [--ca FILE]');
    process.exit(2);
  }
  const url = new URL(urlArg);
  const started = Date.now();
  const tls = ca ? { ca: fs.readFileSync(ca), rejectUnauthorized: true } : { rejectUnauthorized: false };
  const session = http2.connect(url.origin, tls);
  session.on('error', (e) => fail(`session error: ${e.code || ''} ${e.message}`));
  let closing = false;
  session.on('goaway', (code) => {
    if (!closing) fail(`the server sent GOAWAY ${code} during the test`);
  });
  await withTimeout(
    new Promise((resolve, reject) => {
      session.once('remoteSettings', resolve);
      session.once('close', () => reject(new Error('the session closed before the server sent its SETTINGS')));
    }),
    TIMEOUT_MS,
    "the server's SETTINGS"
  );
  const settings = session.remoteSettings;
  if (settings.enableConnectProtocol !== true) {
    fail(`the server did not enable the extended CONNECT: ${JSON.stringify(settings)}`);
  }
  const alpn = session.alpnProtocol;
  const wantAlpn = url.protocol === 'https:' ? 'h2' : 'h2c';
  if (alpn !== wantAlpn) fail(`session protocol is ${alpn}, want ${wantAlpn}`);

  if (gatewayMode) {
    const g = await gateway(session, url, n);
    closing = true;
    await withTimeout(new Promise((resolve) => session.close(resolve)), TIMEOUT_MS, 'closing the session');
    console.log(JSON.stringify({ ok: true, mode: 'gateway', url: url.origin, alpn, sessions: 1, ...g, ms: Date.now() - started }));
    return;
  }
  // All N CONNECTs go out at once; all must be open before any message.
  const sockets = await Promise.all(
    Array.from({ length: n }, (_, i) => openWebSocket(session, url, i))
  );
  const sessions = new Set(sockets.map((s) => s.req.session));
  const ids = sockets.map((s) => s.req.id);
  if (sessions.size !== 1 || !sessions.has(session)) {
    fail(`the streams were spread over ${sessions.size} sessions`);
  }
  if (new Set(ids).size !== n) fail(`stream ids are not distinct: ${ids}`);
  const openAtOnce = sockets.filter((s) => !s.req.closed && !s.req.destroyed).length;
  if (openAtOnce !== n) fail(`only ${openAtOnce} of ${n} streams were open at once`);

  const stats = { messages: 0, bytes: 0, pongs: 0 };
  const closes = await Promise.all(sockets.map((ws) => exchange(ws, stats)));
  const sessionStillOpen = !session.closed && !session.destroyed;
  if (!sessionStillOpen) fail('the session closed before the client ended it');
  closing = true;
  await withTimeout(
    new Promise((resolve) => session.close(resolve)),
    TIMEOUT_MS,
    'closing the session'
  );
  const summary = {
    ok: true,
    url: url.origin,
    alpn,
    certificate_verified: url.protocol === 'https:' ? Boolean(ca) : null,
    enable_connect_protocol: settings.enableConnectProtocol,
    max_concurrent_streams: settings.maxConcurrentStreams,
    initial_window_size: settings.initialWindowSize,
    streams: n,
    open_at_once: openAtOnce,
    sessions: sessions.size,
    stream_ids: ids,
    messages: stats.messages,
    bytes: stats.bytes,
    pongs: stats.pongs,
    close_codes: closes.map((c) => c.code),
    close_reasons: closes.map((c) => c.reason),
    ms: Date.now() - started,
  };
  console.log(JSON.stringify(summary));
}

const guard = setTimeout(() => fail(`the whole run took more than ${2 * TIMEOUT_MS} ms`), 2 * TIMEOUT_MS);
guard.unref();
main().then(
  () => process.exit(0),
  (e) => fail(e && e.stack ? e.stack : String(e))
);

#!/usr/bin/env node
// A load client for bench/multiplex.sh that is not built on wshub: Node's
// built-in `http2` client opens N WebSockets (RFC 8441 extended CONNECT) as
// streams of ONE HTTP/2 session to an echo server, then runs a closed loop
// on each (one 100-byte text message in flight per stream, the echo starts
// the next) for DURATION seconds.
//
//   node h2_multiplex.js URL N DURATION_S [SERVER_PID]
//
// URL is http://HOST:PORT (cleartext HTTP/2, prior knowledge). Prints one
// JSON line with the same fields as `wshub bench multiplex`: sockets,
// server_bytes_per_socket (VmRSS growth of SERVER_PID from before the
// session to 0.5 s after the last stream opened), messages_per_s,
// rtt_p50_ms, rtt_p99_ms, server_cpu_pct, errors. The RFC 6455 framing is written here by
// hand (client frames masked). Bounded: the whole run stops by itself.
'use strict';

const fs = require('fs');
const http2 = require('http2');
const crypto = require('crypto');

const [url, nArg, durArg, pidArg] = process.argv.slice(2);
if (!url || !nArg || !durArg) {
  console.error('usage: node h2_multiplex.js URL N DURATION_S [SERVER_PID]');
  process.exit(2);
}
const N = parseInt(nArg, 10);
const DURATION = parseFloat(durArg) * 1000;
const PID = pidArg ? parseInt(pidArg, 10) : null;
setTimeout(() => { console.error('FAIL: out of time'); process.exit(1); }, DURATION + 60000).unref();

/** The server's CPU time in seconds (utime + stime, USER_HZ = 100). */
function cpu() {
  if (!PID) return null;
  const f = fs.readFileSync(`/proc/${PID}/stat`, 'utf8').split(') ')[1].split(' ');
  return (parseInt(f[11], 10) + parseInt(f[12], 10)) / 100;
}

function rss() {
  if (!PID) return null;
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${PID}/status`, 'utf8'));
  return m ? parseInt(m[1], 10) * 1024 : null;
}

/** One masked client text frame (payload under 126 bytes). */
function textFrame(payload) {
  const mask = crypto.randomBytes(4);
  const out = Buffer.alloc(6 + payload.length);
  out[0] = 0x81;
  out[1] = 0x80 | payload.length;
  mask.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i] ^ mask[i & 3];
  return out;
}

/** Complete unmasked server frames in `buf`: count of text frames, rest. */
function parse(buf) {
  let frames = 0;
  let off = 0;
  for (;;) {
    if (buf.length - off < 2) break;
    let len = buf[off + 1] & 0x7f;
    let head = 2;
    if (len === 126) {
      if (buf.length - off < 4) break;
      len = buf.readUInt16BE(off + 2);
      head = 4;
    } else if (len === 127) {
      if (buf.length - off < 10) break;
      len = Number(buf.readBigUInt64BE(off + 2));
      head = 10;
    }
    if (buf.length - off < head + len) break;
    if ((buf[off] & 0x0f) === 0x1) frames++;
    off += head + len;
  }
  return { frames, rest: buf.subarray(off) };
}

const payload = Buffer.alloc(100, 0x61);
const before = rss();
const session = http2.connect(url, { settings: { enableConnectProtocol: false } });
session.on('error', (e) => { console.error(`FAIL: session: ${e.message}`); process.exit(1); });
const u = new URL(url);
let errors = 0;
let messages = 0;
let running = false;
const rtts = [];

function open(i) {
  return new Promise((resolve) => {
    const req = session.request({
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':scheme': 'http',
      ':authority': u.host,
      ':path': `/m/${i}`,
      'sec-websocket-version': '13',
    }, { endStream: false });
    const s = { req, buf: Buffer.alloc(0), sent: 0 };
    req.on('response', (h) => {
      if (h[':status'] !== 200) { errors++; resolve(null); return; }
      resolve(s);
    });
    req.on('error', () => { errors++; resolve(null); });
    req.on('data', (chunk) => {
      s.buf = s.buf.length ? Buffer.concat([s.buf, chunk]) : chunk;
      const { frames, rest } = parse(s.buf);
      s.buf = rest;
      for (let k = 0; k < frames; k++) {
        if (!running) continue;
        messages++;
        if (rtts.length < 2000000) rtts.push(Number(process.hrtime.bigint() - s.sent) / 1e6);
        s.sent = process.hrtime.bigint();
        req.write(textFrame(payload));
      }
    });
  });
}

session.on('remoteSettings', async (settings) => {
  if (!settings.enableConnectProtocol) {
    console.error('FAIL: the server does not enable extended CONNECT');
    process.exit(1);
  }
  if (session.started) return;
  session.started = true;
  const streams = (await Promise.all(Array.from({ length: N }, (_, i) => open(i)))).filter(Boolean);
  await new Promise((r) => setTimeout(r, 500));
  const after = rss();
  running = true;
  const t0 = Date.now();
  const cpu0 = cpu();
  for (const s of streams) {
    s.sent = process.hrtime.bigint();
    s.req.write(textFrame(payload));
  }
  setTimeout(() => {
    running = false;
    const secs = (Date.now() - t0) / 1000;
    const cpu1 = cpu();
    rtts.sort((a, b) => a - b);
    const q = (p) => (rtts.length ? rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))] : null);
    console.log(JSON.stringify({
      mode: 'h2-node',
      sockets: streams.length,
      server_bytes_per_socket: before && after ? Math.round((after - before) / Math.max(1, streams.length)) : null,
      messages_per_s: Math.round(messages / secs),
      rtt_p50_ms: q(0.5),
      rtt_p99_ms: q(0.99),
      server_cpu_pct: cpu0 !== null ? Math.round(((cpu1 - cpu0) / secs) * 1000) / 10 : null,
      errors: errors + (N - streams.length),
    }));
    session.destroy();
    process.exit(0);
  }, DURATION);
});

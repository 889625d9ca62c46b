#!/usr/bin/env node
// Idle connections holding one subscription, opened by a client that is not
// built on wshub (the Node.js `ws` package), for bench/pusher.sh:
//
//   node pusher_idle.js centrifugo|pusher URL CHANNEL N [SOURCE_IPS] [HOLD_S=600] [KEY=wshub-demo]
//
// centrifugo: URL is the gateway's `ws://HOST:PORT/connection/websocket`;
//   each connection sends `{"id":1,"connect":{}}`, then after its reply
//   `{"id":2,"subscribe":{"channel":CHANNEL}}` and waits for that reply;
//   server pings (`{}`) are answered with `{}`.
// pusher: URL is `ws://HOST:PORT` (or the full `/app/KEY?protocol=7`);
//   each connection waits for `pusher:connection_established`, sends
//   `pusher:subscribe` for the public channel CHANNEL and waits for
//   `pusher_internal:subscription_succeeded`; `pusher:ping` is answered
//   with `pusher:pong`.
//
// SOURCE_IPS: `A-B` (an IPv4 range) or a comma-separated list of local
// addresses the connections bind to, round-robin (each has its own
// ephemeral port range). At most 64 handshakes are in flight at once.
// Prints progress on stderr ("all N connections open" once every one is
// subscribed or failed), holds them for HOLD_S seconds or until SIGINT, then
// prints one JSON line on stdout.
'use strict';

const WebSocket = require('ws');

const [protocol, urlArg, channel, nArg, ipsArg, holdArg, keyArg] = process.argv.slice(2);
if (!['centrifugo', 'pusher'].includes(protocol) || !urlArg || !channel || !nArg) {
  console.error('usage: pusher_idle.js centrifugo|pusher URL CHANNEL N [SOURCE_IPS] [HOLD_S] [KEY]');
  process.exit(2);
}
const n = Number(nArg);
const holdS = Number(holdArg || 600);
const key = keyArg || 'wshub-demo';
const CONCURRENCY = 64;
const SETUP_TIMEOUT_MS = 10000;

function pusherUrl(u) {
  const parsed = new URL(u);
  if (parsed.pathname.startsWith('/app/')) return u;
  return `${parsed.protocol}//${parsed.host}/app/${key}?protocol=7`;
}
const url = protocol === 'pusher' ? pusherUrl(urlArg) : urlArg;

function parseIps(spec) {
  if (!spec || spec === '-') return [undefined];
  if (spec.includes('-')) {
    const [a, b] = spec.split('-').map((s) => s.trim().split('.').map(Number));
    const toInt = (q) => ((q[0] << 24) >>> 0) + (q[1] << 16) + (q[2] << 8) + q[3];
    const out = [];
    for (let x = toInt(a); x <= toInt(b); x++) {
      out.push([x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255].join('.'));
    }
    return out;
  }
  return spec.split(',').map((s) => s.trim());
}
const ips = parseIps(ipsArg);

const stats = { opened: 0, failed: 0, dropped: 0, firstError: null };
const sockets = [];

// Opens connection i; resolves once it is subscribed (true) or failed (false).
function open(i) {
  return new Promise((resolve) => {
    const opts = { perMessageDeflate: false };
    const local = ips[i % ips.length];
    if (local) opts.localAddress = local;
    const ws = new WebSocket(url, opts);
    let ready = false;
    let settled = false;
    const done = (ok, err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ok) {
        stats.opened++;
        sockets.push(ws);
      } else {
        stats.failed++;
        if (!stats.firstError) stats.firstError = String(err);
        ws.terminate();
      }
      resolve(ok);
    };
    const timer = setTimeout(() => done(false, 'setup timed out'), SETUP_TIMEOUT_MS);
    ws.on('error', (e) => done(false, e.message || e));
    ws.on('close', () => {
      if (!settled) done(false, 'closed during setup');
      else if (ready) {
        ready = false;
        stats.dropped++;
      }
    });
    if (protocol === 'centrifugo') {
      ws.on('open', () => ws.send('{"id":1,"connect":{}}'));
      ws.on('message', (data) => {
        for (const line of data.toString().split('\n')) {
          if (line === '{}') { ws.send('{}'); continue; }
          if (!line || ready) continue;
          const m = JSON.parse(line);
          if (m.error) { done(false, line); return; }
          if (m.id === 1) ws.send(JSON.stringify({ id: 2, subscribe: { channel } }));
          else if (m.id === 2) { ready = true; done(true); }
        }
      });
    } else {
      ws.on('message', (data) => {
        const text = data.toString();
        if (text.startsWith('{"event":"pusher:ping"')) {
          ws.send('{"event":"pusher:pong","data":{}}');
          return;
        }
        if (ready) return;
        const m = JSON.parse(text);
        if (m.event === 'pusher:connection_established') {
          ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
        } else if (m.event === 'pusher_internal:subscription_succeeded' && m.channel === channel) {
          ready = true;
          done(true);
        } else if (m.event === 'pusher:error' || m.event === 'pusher:subscription_error') {
          done(false, text);
        }
      });
    }
  });
}

async function main() {
  const started = performance.now();
  console.error(`pusher_idle.js: opening ${n} ${protocol} connections to ${url} from ${ips.length} source address(es)`);
  let next = 0;
  let lastPrint = started;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      await open(i);
      if (performance.now() - lastPrint >= 1000) {
        lastPrint = performance.now();
        console.error(`opened ${stats.opened}/${n}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, n) }, worker));
  const openS = (performance.now() - started) / 1000;
  if (stats.firstError) console.error(`warning: ${stats.failed} connections failed, the first with: ${stats.firstError}`);
  console.error(`all ${stats.opened} connections open after ${openS.toFixed(1)}s; holding`);
  const heldFrom = performance.now();
  await new Promise((resolve) => {
    const t = setTimeout(resolve, holdS * 1000);
    process.once('SIGINT', () => { clearTimeout(t); resolve(); });
    process.once('SIGTERM', () => { clearTimeout(t); resolve(); });
  });
  const heldS = (performance.now() - heldFrom) / 1000;
  console.log(JSON.stringify({
    bench: 'node-idle',
    client: `node ${process.version} ws`,
    protocol,
    url,
    connections: n,
    opened: stats.opened,
    failed: stats.failed,
    dropped: stats.dropped,
    errors: stats.failed + stats.dropped,
    source_ips: ips.length,
    open_s: Math.round(openS * 1000) / 1000,
    held_s: Math.round(heldS * 10) / 10,
    client_rss_kib: Math.round(process.memoryUsage().rss / 1024),
  }));
  for (const ws of sockets) ws.terminate();
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

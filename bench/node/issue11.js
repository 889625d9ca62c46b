#!/usr/bin/env node
// Load clients for bench/issue11.sh that are not built on wshub: the Node.js
// `ws` package speaking the Centrifugo JSON protocol directly.
//
//   node issue11.js small    URL CHANNEL [RATE=20] [DURATION_S=10]
//     one subscriber and one publisher on CHANNEL: publish-to-deliver
//     latency of RATE publications/s (publish time stamped in the data).
//   node issue11.js commands URL CHANNEL [RATE=100] [DURATION_S=10]
//     one connection subscribed to CHANNEL: per tick one `publish`, then one
//     `presence`, each waiting for its reply; round-trip percentiles.
//
// Prints progress on stderr and one JSON line on stdout; latencies in µs.
// 1 s of warm-up is not measured.
'use strict';

const WebSocket = require('ws');

const [mode, url, channel, rateArg, durArg] = process.argv.slice(2);
if (!mode || !url || !channel) {
  console.error('usage: issue11.js small|commands URL CHANNEL [RATE] [DURATION_S]');
  process.exit(2);
}
const rate = Number(rateArg || (mode === 'small' ? 20 : 100));
const durationMs = Number(durArg || 10) * 1000;
const WARMUP_MS = 1000;
const now = () => performance.now();

function percentiles(xs) {
  const s = Float64Array.from(xs).sort();
  const q = (p) => (s.length ? Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))] * 1000) : 0);
  return { n: s.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: s.length ? Math.round(s[s.length - 1] * 1000) : 0 };
}

// A Centrifugo client connection: `command(obj)` resolves with the reply of
// that id; every other line goes to `onPush`; server pings are answered.
function client(onPush) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const waiting = new Map();
    let next = 1;
    ws.on('error', reject);
    ws.on('message', (data) => {
      for (const line of data.toString().split('\n')) {
        if (line === '{}') { ws.send('{}'); continue; }
        if (!line) continue;
        const m = JSON.parse(line);
        if (m.id !== undefined && waiting.has(m.id)) {
          const w = waiting.get(m.id);
          waiting.delete(m.id);
          w(m);
        } else if (onPush) {
          onPush(m);
        }
      }
    });
    const c = {
      ws,
      command(body) {
        const id = next++;
        return new Promise((res) => {
          waiting.set(id, res);
          ws.send(JSON.stringify({ id, ...body }));
        });
      },
    };
    ws.on('open', async () => {
      const r = await c.command({ connect: { name: 'node-bench' } });
      if (r.error) reject(new Error(`connect: ${JSON.stringify(r.error)}`));
      else resolve(c);
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function small() {
  const lat = [];
  let measureFrom = Infinity;
  const sub = await client((m) => {
    const d = m.push && m.push.pub && m.push.pub.data;
    if (d && typeof d.t === 'number' && d.t >= measureFrom) lat.push(now() - d.t);
  });
  const s = await sub.command({ subscribe: { channel } });
  if (s.error) throw new Error(`subscribe: ${JSON.stringify(s.error)}`);
  const pub = await client(null);
  const pad = 'x'.repeat(60);
  const start = now();
  let published = 0, acked = 0, refused = 0;
  const acks = [];
  for (let i = 0; ; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - now();
    if (wait > 0) await sleep(wait);
    const t = now();
    if (t - start >= WARMUP_MS + durationMs) break;
    const measured = t - start >= WARMUP_MS;
    if (measured && measureFrom === Infinity) measureFrom = t;
    const p = pub.command({ publish: { channel, data: { t, p: pad } } });
    if (measured) {
      published++;
      acks.push(p.then((r) => { if (r.error) refused++; else acked++; }));
    }
  }
  await Promise.race([Promise.all(acks), sleep(2000)]);
  await sleep(200);
  const out = { bench: 'node-small', rate, duration_s: durationMs / 1000, published, acknowledged: acked, refused, deliveries: lat.length, latency_us: percentiles(lat) };
  console.log(JSON.stringify(out));
  sub.ws.terminate();
  pub.ws.terminate();
}

async function commands() {
  const c = await client(null);
  const s = await c.command({ subscribe: { channel } });
  if (s.error) throw new Error(`subscribe: ${JSON.stringify(s.error)}`);
  const pubLat = [], presLat = [];
  let errors = 0;
  const pad = 'x'.repeat(60);
  const start = now();
  for (let i = 0; ; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - now();
    if (wait > 0) await sleep(wait);
    if (now() - start >= WARMUP_MS + durationMs) break;
    const measured = now() - start >= WARMUP_MS;
    let t = now();
    const r1 = await c.command({ publish: { channel, data: { n: i, p: pad } } });
    const d1 = now() - t;
    t = now();
    const r2 = await c.command({ presence: { channel } });
    const d2 = now() - t;
    if (measured) {
      pubLat.push(d1);
      presLat.push(d2);
      errors += (r1.error ? 1 : 0) + (r2.error ? 1 : 0);
    }
  }
  console.log(JSON.stringify({ bench: 'node-commands', rate, duration_s: durationMs / 1000, round_trips: pubLat.length, errors, publish_us: percentiles(pubLat), presence_us: percentiles(presLat) }));
  c.ws.terminate();
}

(mode === 'small' ? small() : mode === 'commands' ? commands() : Promise.reject(new Error(`unknown mode ${mode}`)))
  .then(() => process.exit(0))
  .catch((e) => { console.error(`issue11.js: ${e.stack || e}`); process.exit(1); });

#!/usr/bin/env node
// Interop scenario: the official `centrifuge` npm SDK (centrifuge-js, with the
// `ws` package as its WebSocket) against `wshub serve`.
//
// Usage: node centrifuge_js.js [--url http://ADDR] [--api-key KEY] [--secret S]
// (else $WSHUB_URL, $WSHUB_API_KEY, $WSHUB_HMAC_SECRET). The server must have
// the `chat` namespace with presence, join_leave, history, force_recovery and
// the allow_*_for_subscriber/client options (see crates/cli/tests/it/sdk_interop.rs).
//
// Prints `ok ...` per check; on any mismatch prints `FAIL: ...` on stderr and
// exits 1. Every wait is bounded.
'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');

const WAIT_MS = 10000;
const CHANNEL = 'chat:room';

function arg(name, env) {
  const i = process.argv.indexOf(name);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  return process.env[env] || '';
}

const baseUrl = arg('--url', 'WSHUB_URL').replace(/\/+$/, '');
const apiKey = arg('--api-key', 'WSHUB_API_KEY');
const secret = arg('--secret', 'WSHUB_HMAC_SECRET');
if (!baseUrl.startsWith('http://') || !secret) {
  console.error('usage: centrifuge_js.js --url http://ADDR --api-key KEY --secret HMAC_SECRET');
  process.exit(2);
}
const wsUrl = baseUrl.replace(/^http/, 'ws') + '/connection/websocket';
// --transport websocket (default) | http_stream | sse: the SDK's HTTP
// fallbacks, with no WebSocket given to it at all (as where it is blocked).
const transport = arg('--transport', 'WSHUB_TRANSPORT') || 'websocket';
if (!['websocket', 'http_stream', 'sse'].includes(transport)) {
  console.error(`unknown --transport ${transport}`);
  process.exit(2);
}
function transportOptions() {
  if (transport === 'websocket') return { endpoint: wsUrl, options: { websocket: WebSocket } };
  const endpoint = [{ transport, endpoint: `${baseUrl}/connection/${transport}` }];
  // In Node the emulation endpoint must be absolute; SSE needs an EventSource.
  const options = { emulationEndpoint: `${baseUrl}/emulation` };
  if (transport === 'sse') options.eventsource = require('eventsource').EventSource;
  return { endpoint, options };
}

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}
function ok(msg) {
  console.log('ok ' + msg);
}
function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) fail(`${what}: expected ${e}, got ${a}`);
}
function check(cond, what) {
  if (!cond) fail(what);
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}
function token(user, key) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = b64url(JSON.stringify({ sub: user, iat: now, exp: now + 3600 }));
  const sig = b64url(crypto.createHmac('sha256', key).update(`${header}.${claims}`).digest());
  return `${header}.${claims}.${sig}`;
}

function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// An event queue: push from SDK handlers, await the next item (bounded).
class Queue {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = [];
  }
  push(item) {
    const w = this.waiters.shift();
    if (w) w(item);
    else this.items.push(item);
  }
  next(what) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return within(new Promise((resolve) => this.waiters.push(resolve)), `${this.name}: ${what}`);
  }
  drain() {
    const items = this.items;
    this.items = [];
    return items;
  }
}

async function api(method, body, key = apiKey) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers['X-API-Key'] = key;
  const resp = await within(
    fetch(`${baseUrl}/api/${method}`, { method: 'POST', headers, body: JSON.stringify(body) }),
    `HTTP API ${method}`,
  );
  const text = await resp.text();
  if (resp.status !== 200) fail(`POST /api/${method} ${JSON.stringify(body)}: HTTP ${resp.status} ${text}`);
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    fail(`POST /api/${method}: not JSON: ${text}`);
  }
  if (v.error) fail(`POST /api/${method} ${JSON.stringify(body)}: error ${JSON.stringify(v.error)}`);
  return v.result;
}

function newClient(user, extra = {}) {
  const events = {
    connected: new Queue(`${user} connected`),
    connecting: new Queue(`${user} connecting`),
    disconnected: new Queue(`${user} disconnected`),
    errors: [],
    mustStayUp: false,
  };
  const t = transportOptions();
  const client = new Centrifuge(t.endpoint, {
    token: token(user, secret),
    ...t.options,
    timeout: 5000,
    name: 'wshub-interop',
    ...extra,
  });
  client.on('connected', (ctx) => {
    if (ctx.transport !== transport) fail(`${user} connected over ${ctx.transport}, not ${transport}`);
    events.connected.push(ctx);
  });
  client.on('connecting', (ctx) => events.connecting.push(ctx));
  client.on('disconnected', (ctx) => {
    // A client that must stay up fails the run at once, with the server's reason.
    if (events.mustStayUp) fail(`${user} disconnected unexpectedly: code ${ctx.code} (${ctx.reason})`);
    events.disconnected.push(ctx);
  });
  client.on('error', (ctx) => events.errors.push(ctx));
  return { client, events, user };
}

function subscribe(c, channel) {
  const ev = {
    subscribed: new Queue(`${c.user} subscribed ${channel}`),
    publication: new Queue(`${c.user} publication ${channel}`),
    join: new Queue(`${c.user} join ${channel}`),
    leave: new Queue(`${c.user} leave ${channel}`),
    errors: [],
    unsubscribed: [],
  };
  // joinLeave: ask for join/leave pushes (the namespace emits them).
  const sub = c.client.newSubscription(channel, { joinLeave: true });
  sub.on('subscribed', (ctx) => ev.subscribed.push(ctx));
  sub.on('publication', (ctx) => ev.publication.push(ctx));
  sub.on('join', (ctx) => ev.join.push(ctx));
  sub.on('leave', (ctx) => ev.leave.push(ctx));
  sub.on('error', (ctx) => ev.errors.push(ctx));
  sub.on('unsubscribed', (ctx) => ev.unsubscribed.push(ctx));
  sub.subscribe();
  return { sub, ev };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function badToken() {
  const c = newClient('mallory');
  c.client.setToken(token('mallory', secret + '-wrong'));
  c.client.connect();
  const ctx = await c.events.disconnected.next('disconnected after a bad token');
  eq(ctx.code, 3500, 'bad token: disconnected code');
  // It must stay disconnected (no reconnect attempts).
  await sleep(1500);
  eq(c.client.state, 'disconnected', 'bad token: client state 1.5 s later');
  eq(c.events.connected.drain().length, 0, 'bad token: connected events');
  ok(`bad token -> disconnected code 3500 (${JSON.stringify(ctx.reason)}), no reconnect`);
}

// Channel authorization as Centrifugo answers it: an unknown namespace is
// error 102, a namespace without allow_subscribe_for_client is 103, a client
// publish without a subscription (allow_publish_for_subscriber) is 103.
async function permissions() {
  const d = newClient('dave');
  d.events.mustStayUp = true;
  d.client.connect();
  await d.events.connected.next('connect');
  for (const [channel, code] of [['nosuchns:x', 102], ['private', 103]]) {
    const unsub = new Queue(`dave unsubscribed ${channel}`);
    const sub = d.client.newSubscription(channel);
    sub.on('unsubscribed', (ctx) => unsub.push(ctx));
    sub.subscribe();
    const ctx = await unsub.next('unsubscribed after a rejected subscribe');
    eq(ctx.code, code, `subscribe to ${channel}: unsubscribed code`);
    eq(sub.state, 'unsubscribed', `subscribe to ${channel}: state`);
    d.client.removeSubscription(sub);
  }
  let err = null;
  try {
    await within(d.client.publish(CHANNEL, { text: 'not subscribed' }), 'publish reply');
  } catch (e) {
    err = e;
  }
  check(err && err.code === 103, `client publish without a subscription: expected error 103, got ${JSON.stringify(err)}`);
  eq(d.client.state, 'connected', 'dave still connected after the rejections');
  d.events.mustStayUp = false;
  d.client.disconnect();
  ok('unknown namespace -> 102, subscribe not allowed -> 103, publish without subscription -> 103');
}

async function main() {
  // A reconnects no sooner than 1.5 s after a disconnect: the API publishes in
  // between happen while it is away.
  const a = newClient('alice', { minReconnectDelay: 1500, maxReconnectDelay: 2000 });
  const b = newClient('bob');
  a.events.mustStayUp = true;
  b.events.mustStayUp = true;
  a.client.connect();
  b.client.connect();
  const aConn = await a.events.connected.next('first connect');
  const bConn = await b.events.connected.next('first connect');
  check(aConn.client && bConn.client && aConn.client !== bConn.client, `client ids ${aConn.client} ${bConn.client}`);
  eq(aConn.transport, transport, 'alice transport');
  ok(`connected with JWT: alice=${aConn.client} bob=${bConn.client}`);

  const sa = subscribe(a, CHANNEL);
  const first = await sa.ev.subscribed.next('first subscribe');
  eq(first.channel, CHANNEL, 'subscribed channel');
  eq(first.recoverable, true, 'subscribed.recoverable (force_recovery namespace)');
  eq(first.wasRecovering, false, 'first subscribed.wasRecovering');
  check(first.streamPosition && typeof first.streamPosition.epoch === 'string' && first.streamPosition.epoch !== '',
    `first subscribed.streamPosition has an epoch: ${JSON.stringify(first.streamPosition)}`);
  eq(first.streamPosition.offset, 0, 'first subscribed.streamPosition.offset of a new channel');
  const epoch = first.streamPosition.epoch;
  const sb = subscribe(b, CHANNEL);
  await sb.ev.subscribed.next('subscribe');
  let joined = await sa.ev.join.next('a join');
  if (joined.info.user === 'alice') joined = await sa.ev.join.next('join of bob'); // its own join first
  eq([joined.info.user, joined.info.client], ['bob', bConn.client], 'join info seen by alice');
  ok(`subscribed both to ${CHANNEL} (recoverable, epoch ${epoch}); alice saw bob join`);

  // Publish from B, receive in A with the offset and publisher info.
  await sb.sub.publish({ text: 'hello', n: 1 });
  const p1 = await sa.ev.publication.next('publication 1');
  eq(p1.data, { text: 'hello', n: 1 }, 'publication data');
  eq(p1.offset, 1, 'publication offset');
  check(p1.info && p1.info.user === 'bob' && p1.info.client === bConn.client,
    `publication info (client publish carries the publisher): ${JSON.stringify(p1.info)}`);
  ok('bob -> alice publication with offset 1 and publisher info');

  const pr = await sa.sub.presence();
  const users = Object.values(pr.clients).map((i) => i.user).sort();
  eq(users, ['alice', 'bob'], 'presence users');
  eq(Object.keys(pr.clients).sort(), [aConn.client, bConn.client].sort(), 'presence client ids');
  const ps = await sa.sub.presenceStats();
  eq([ps.numClients, ps.numUsers], [2, 2], 'presenceStats [numClients, numUsers]');
  ok('presence shows both clients; presenceStats 2 clients / 2 users');

  for (let n = 2; n <= 5; n++) await sb.sub.publish({ text: 'hello', n });
  for (let n = 2; n <= 5; n++) {
    const p = await sa.ev.publication.next(`publication ${n}`);
    eq([p.offset, p.data.n], [n, n], `live publication ${n} [offset, n]`);
  }
  const pos = await sa.sub.history({ limit: 0 });
  eq([pos.offset, pos.epoch, pos.publications.length], [5, epoch, 0], 'history limit 0 [offset, epoch, #pubs]');
  const h1 = await sa.sub.history({ limit: 3 });
  eq(h1.publications.map((p) => p.offset), [1, 2, 3], 'history limit 3 (oldest first) offsets');
  eq(h1.publications.map((p) => p.data.n), [1, 2, 3], 'history limit 3 data');
  eq([h1.offset, h1.epoch], [5, epoch], 'history limit 3 stream position');
  const h2 = await sa.sub.history({ limit: 3, since: { offset: 2, epoch } });
  eq(h2.publications.map((p) => p.offset), [3, 4, 5], 'history since offset 2 limit 3: the last 3 in order');
  eq(h2.publications.map((p) => p.data.n), [3, 4, 5], 'history since data');
  const h3 = await sa.sub.history({ limit: 3, reverse: true });
  eq(h3.publications.map((p) => p.offset), [5, 4, 3], 'history limit 3 reverse offsets');
  check(h2.publications[0].info && h2.publications[0].info.user === 'bob', `history keeps publisher info: ${JSON.stringify(h2.publications[0].info)}`);
  ok('history: position, limit, since, reverse');

  // Recovery: force A off through the HTTP API (a reconnect code), publish 3
  // while it is away, and check A gets exactly those, in order, on return.
  sa.ev.subscribed.drain();
  sb.ev.publication.drain();
  a.events.connecting.drain();
  await api('disconnect', { user: 'alice', disconnect: { code: 4000, reason: 'interop: reconnect' } });
  const cing = await a.events.connecting.next('connecting after /api/disconnect');
  eq(cing.code, 4000, 'connecting code after /api/disconnect with code 4000');
  const t0 = Date.now();
  const offsets = [];
  for (let i = 1; i <= 3; i++) {
    const r = await api('publish', { channel: CHANNEL, data: { text: 'missed', i } });
    offsets.push(r.offset);
    check(r.epoch === epoch, `publish result epoch ${r.epoch} (expected ${epoch})`);
  }
  eq(offsets, [6, 7, 8], '/api/publish result offsets');
  check(a.client.state === 'connecting', `alice should still be away after the publishes (state ${a.client.state}, ${Date.now() - t0} ms)`);
  // B (still connected) gets them live.
  for (let i = 1; i <= 3; i++) {
    const p = await sb.ev.publication.next(`bob live ${i}`);
    eq([p.offset, p.data], [5 + i, { text: 'missed', i }], `bob live publication ${i}`);
  }
  const aReconn = await a.events.connected.next('reconnect');
  check(aReconn.client !== aConn.client, 'a reconnect gets a new client id');
  const rec = await sa.ev.subscribed.next('resubscribe with recovery');
  eq([rec.wasRecovering, rec.recovered], [true, true], 'resubscribed [wasRecovering, recovered]');
  eq(rec.streamPosition && [rec.streamPosition.offset, rec.streamPosition.epoch], [8, epoch], 'resubscribed stream position');
  const got = [];
  for (let i = 1; i <= 3; i++) {
    const p = await sa.ev.publication.next(`recovered publication ${i}`);
    got.push([p.offset, p.data]);
  }
  eq(got, [[6, { text: 'missed', i: 1 }], [7, { text: 'missed', i: 2 }], [8, { text: 'missed', i: 3 }]], 'recovered publications');
  await sleep(300);
  const extra = sa.ev.publication.drain();
  eq(extra.map((p) => p.offset), [], 'publications after the recovered ones (duplicates?)');
  ok(`recovery after /api/disconnect: exactly offsets 6,7,8 in order (recovered=true, away ${Date.now() - t0} ms)`);

  // Live delivery still works after recovery.
  await sb.sub.publish({ text: 'after', n: 9 });
  const p9 = await sa.ev.publication.next('publication after recovery');
  eq([p9.offset, p9.data], [9, { text: 'after', n: 9 }], 'publication after recovery');
  ok('live publications continue after recovery');

  // Recovery that cannot succeed: while A is away, publications are made and
  // the history is removed, so the missed ones are gone. The server must say
  // so (recovered: false) instead of silently skipping them.
  sa.ev.subscribed.drain();
  a.events.connecting.drain();
  await api('disconnect', { user: 'alice', disconnect: { code: 4000, reason: 'interop: reconnect' } });
  await a.events.connecting.next('connecting after the second /api/disconnect');
  for (let i = 1; i <= 2; i++) await api('publish', { channel: CHANNEL, data: { text: 'lost', i } });
  await api('history_remove', { channel: CHANNEL });
  const r12 = await api('publish', { channel: CHANNEL, data: { text: 'kept' } });
  check(a.client.state === 'connecting', `alice should still be away (state ${a.client.state})`);
  await a.events.connected.next('second reconnect');
  const rec2 = await sa.ev.subscribed.next('resubscribe after history was removed');
  eq([rec2.wasRecovering, rec2.recovered], [true, false], 'resubscribe after lost history [wasRecovering, recovered]');
  await sleep(300);
  const after = sa.ev.publication.drain().map((p) => [p.offset, p.data.text]);
  check(after.every(([off, text]) => off > 9 && text !== 'lost'),
    `after an unrecoverable gap, publications ${JSON.stringify(after)} (none of the removed ones, none before offset 10)`);
  ok(`unrecoverable gap (history removed while away) -> recovered=false (then got ${JSON.stringify(after)}, top offset ${r12.offset})`);

  const errs = sa.ev.errors.concat(sb.ev.errors);
  eq(errs.map((e) => `${e.type}: ${e.error && e.error.message}`), [], 'subscription error events');

  a.events.mustStayUp = false;
  b.events.mustStayUp = false;
  sb.ev.leave.drain();
  a.client.disconnect();
  const left = await sb.ev.leave.next('leave of alice');
  eq(left.info.user, 'alice', 'leave seen by bob after alice disconnect()');
  const ps2 = await sb.sub.presenceStats();
  eq([ps2.numClients, ps2.numUsers], [1, 1], 'presenceStats after alice left');
  ok('alice disconnect() -> bob sees her leave; presenceStats 1/1');
  b.client.disconnect();
  await permissions();
  await badToken();
  ok('all centrifuge-js checks passed');
  process.exit(0);
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));

// pusher-js (the official Pusher Channels client, Node build) and the
// official `pusher` server SDK against `wshub serve` with the Pusher front.
// Prints `ok ...` per check; exits 1 with `FAIL: ...` on the first mismatch.
//
//   node pusher_js.js --url http://127.0.0.1:PORT --app-id ID --key KEY \
//        --secret SECRET --key2 KEY2
//
// The server has two apps: (ID, KEY, SECRET) with client events enabled,
// and KEY2 (another app) for the isolation check.
'use strict';

const crypto = require('crypto');
const PusherClient = require('pusher-js');
const PusherServer = require('pusher');

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`missing ${name}`);
  return process.argv[i + 1];
}

const url = new URL(arg('--url'));
const APP_ID = arg('--app-id');
const KEY = arg('--key');
const SECRET = arg('--secret');
const KEY2 = arg('--key2');
const HOST = url.hostname;
const PORT = Number(url.port);

function fail(msg) {
  console.log(`FAIL: ${msg}`);
  process.exit(1);
}
function ok(msg) {
  console.log(`ok ${msg}`);
}
function check(cond, msg) {
  if (!cond) fail(msg);
  ok(msg);
}

const WAIT = 5000;
function within(ms, what, promise) {
  return Promise.race([
    promise,
    new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out: ${what}`)), ms)),
  ]);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const server = new PusherServer({ appId: APP_ID, key: KEY, secret: SECRET, host: HOST, port: String(PORT), useTLS: false });
const wrongSecret = new PusherServer({ appId: APP_ID, key: KEY, secret: 'not-the-secret', host: HOST, port: String(PORT), useTLS: false });

const clients = [];
function client(key, user, opts = {}) {
  const c = new PusherClient(key, {
    cluster: 'local',
    wsHost: HOST,
    wsPort: PORT,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: (params, cb) => {
        const signer = opts.signer || server;
        try {
          if (params.channelName.startsWith('presence-')) {
            cb(null, signer.authorizeChannel(params.socketId, params.channelName, user));
          } else {
            cb(null, signer.authorizeChannel(params.socketId, params.channelName));
          }
        } catch (e) {
          cb(e, null);
        }
      },
    },
  });
  clients.push(c);
  return c;
}

function connected(c) {
  return within(WAIT, 'connected', new Promise((resolve) => {
    if (c.connection.state === 'connected') return resolve();
    c.connection.bind('connected', () => resolve());
  }));
}

function subscribed(c, name) {
  const ch = c.subscribe(name);
  return within(WAIT, `subscribed ${name}`, new Promise((resolve, reject) => {
    ch.bind('pusher:subscription_succeeded', (data) => resolve([ch, data]));
    ch.bind('pusher:subscription_error', (e) => reject(new Error(`subscription_error ${JSON.stringify(e)}`)));
  }));
}

function next(ch, event) {
  return within(WAIT, `event ${event} on ${ch.name}`, new Promise((resolve) => {
    const f = (data, meta) => {
      ch.unbind(event, f);
      resolve([data, meta]);
    };
    ch.bind(event, f);
  }));
}

// Resolves true if `event` arrives on `ch` within `ms`, false otherwise.
function arrives(ch, event, ms) {
  return new Promise((resolve) => {
    const f = () => {
      ch.unbind(event, f);
      resolve(true);
    };
    ch.bind(event, f);
    setTimeout(() => {
      ch.unbind(event, f);
      resolve(false);
    }, ms);
  });
}

// A raw signed API request, to control the timestamp.
async function raw(method, path, body, { timestamp, secret = SECRET } = {}) {
  const params = {
    auth_key: KEY,
    auth_timestamp: String(timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
  };
  if (body) params.body_md5 = crypto.createHash('md5').update(body).digest('hex');
  const q = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&');
  const sig = crypto.createHmac('sha256', secret).update(`${method}\n${path}\n${q}`).digest('hex');
  const res = await fetch(`http://${HOST}:${PORT}${path}?${q}&auth_signature=${sig}`, {
    method,
    body,
    headers: body ? { 'content-type': 'application/json' } : {},
  });
  return { status: res.status, text: await res.text() };
}

async function main() {
  // Unknown app key: pusher:error 4001 during the handshake (pusher-js
  // reports it inside a WebSocketError), and pusher-js does not retry.
  {
    const c = client('no-such-key', null);
    const states = [];
    c.connection.bind('state_change', (s) => states.push(s.current));
    const err = await within(WAIT, 'error for an unknown key', new Promise((resolve) => {
      c.connection.bind('error', (e) => resolve(e));
    }));
    const data = (err && (err.data || (err.error && err.error.data))) || {};
    check(data.code === 4001, `unknown app key refused with 4001 (${JSON.stringify(err)})`);
    await sleep(1500);
    check(states.filter((s) => s === 'connecting').length <= 1 && c.connection.state !== 'connected',
      `and pusher-js does not reconnect (${states.join(' -> ')})`);
    c.disconnect();
  }

  const a = client(KEY, { user_id: 'alice', user_info: { name: 'Alice' } });
  const b = client(KEY, { user_id: 'bob', user_info: { name: 'Bob' } });
  await connected(a);
  await connected(b);
  check(/^\d+\.\d+$/.test(a.connection.socket_id), `connection_established gives a socket_id (${a.connection.socket_id})`);

  // Public channel, triggered by the server SDK.
  const [pa] = await subscribed(a, 'my-channel');
  const [pb] = await subscribed(b, 'my-channel');
  let got = next(pa, 'my-event');
  await server.trigger('my-channel', 'my-event', { message: 'hello "world"\n' });
  let [data] = await got;
  check(data && data.message === 'hello "world"\n', 'server SDK trigger reaches a public channel, data intact');

  // socket_id exclusion.
  const toB = next(pb, 'excl');
  const toA = arrives(pa, 'excl', 700);
  await server.trigger('my-channel', 'excl', { n: 1 }, { socket_id: a.connection.socket_id });
  await toB;
  check(!(await toA), 'trigger with socket_id skips that connection and reaches the others');

  // Several channels at once, and info attributes.
  const [pa2] = await subscribed(a, 'other-channel');
  got = next(pa2, 'multi');
  const res = await server.trigger(['my-channel', 'other-channel'], 'multi', 'plain string', { info: 'subscription_count' });
  await got;
  const body = await res.json();
  check(body.channels && body.channels['my-channel'].subscription_count === 2, `trigger info subscription_count (${JSON.stringify(body)})`);

  // Batch.
  got = next(pa2, 'b2');
  await server.triggerBatch([
    { channel: 'my-channel', name: 'b1', data: '1' },
    { channel: 'other-channel', name: 'b2', data: '2' },
  ]);
  await got;
  ok('triggerBatch delivers');

  // Private channel: authorized with the app secret; a wrong signature is refused.
  const [xa] = await subscribed(a, 'private-room');
  const [xb] = await subscribed(b, 'private-room');
  ok('private channel subscribe with a server SDK signature');
  {
    const bad = client(KEY, null, { signer: wrongSecret });
    await connected(bad);
    const ch = bad.subscribe('private-room');
    const e = await within(WAIT, 'subscription_error', new Promise((resolve) => ch.bind('pusher:subscription_error', resolve)));
    check(e.status === 401, `private channel with a bad signature: subscription_error ${JSON.stringify(e)}`);
    bad.disconnect();
  }

  // Client events: relayed to the others, not echoed to the sender.
  got = next(xb, 'client-typing');
  const echo = arrives(xa, 'client-typing', 700);
  check(xa.trigger('client-typing', { who: 'alice' }), 'client event sent');
  [data] = await got;
  check(data.who === 'alice', 'client event on a private channel reaches the other subscriber');
  check(!(await echo), 'client event is not echoed to its sender');

  // Client events on a public channel are refused by the server.
  {
    const errs = [];
    a.connection.bind('error', (e) => errs.push(e));
    const leaked = arrives(pb, 'client-public', 700);
    a.send_event('client-public', { x: 1 }, 'my-channel');
    check(!(await leaked), 'client event on a public channel is not relayed');
    check(errs.some((e) => e.type === 'PusherError'), 'and the sender gets pusher:error');
  }

  // Presence: members, member_added / member_removed, user_id on client events.
  const [ra, aMembers] = await subscribed(a, 'presence-lobby');
  check(aMembers.count === 1 && aMembers.me.id === 'alice', `presence: alone at first (${aMembers.count})`);
  const added = next(ra, 'pusher:member_added');
  const [rb, bMembers] = await subscribed(b, 'presence-lobby');
  const [m] = await added;
  check(m.id === 'bob' && m.info.name === 'Bob', 'member_added with user_info');
  check(bMembers.count === 2 && bMembers.get('alice').info.name === 'Alice', 'the new member sees both members');
  got = next(rb, 'client-hi');
  ra.trigger('client-hi', { x: 1 });
  const [, meta] = await got;
  check(meta && meta.user_id === 'alice', `client event on presence carries user_id (${JSON.stringify(meta)})`);

  // Bob's second connection adds no member; only the last one leaving removes bob.
  const b2 = client(KEY, { user_id: 'bob', user_info: { name: 'Bob' } });
  await connected(b2);
  const noAdd = arrives(ra, 'pusher:member_added', 700);
  await subscribed(b2, 'presence-lobby');
  check(!(await noAdd), "a user's second connection adds no member");
  const noRemove = arrives(ra, 'pusher:member_removed', 700);
  b2.unsubscribe('presence-lobby');
  check(!(await noRemove), "one of a user's two connections leaving removes no member");
  const removed = next(ra, 'pusher:member_removed');
  b.unsubscribe('presence-lobby');
  const [r] = await removed;
  check(r.id === 'bob', 'the last connection of a user leaving removes the member');

  // HTTP API queries.
  {
    let res = await server.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } });
    let j = await res.json();
    check(j.channels['presence-lobby'] && j.channels['presence-lobby'].user_count === 1, `GET /channels?filter_by_prefix=presence-&info=user_count (${JSON.stringify(j)})`);
    res = await server.get({ path: '/channels/my-channel', params: { info: 'subscription_count' } });
    j = await res.json();
    check(j.occupied === true && j.subscription_count === 2, `GET /channels/my-channel (${JSON.stringify(j)})`);
    res = await server.get({ path: '/channels/presence-lobby/users' });
    j = await res.json();
    check(j.users.length === 1 && j.users[0].id === 'alice', `GET /channels/presence-lobby/users (${JSON.stringify(j)})`);
    res = await server.get({ path: '/channels/empty-channel' });
    j = await res.json();
    check(j.occupied === false, 'an empty channel is not occupied');
  }

  // Refused API requests: wrong secret, stale timestamp.
  {
    let status = 0;
    try {
      await wrongSecret.trigger('my-channel', 'x', {});
    } catch (e) {
      status = e.status;
    }
    check(status === 401, `a request signed with the wrong secret gets 401 (${status})`);
    const body = JSON.stringify({ name: 'x', channels: ['my-channel'], data: '{}' });
    const stale = await raw('POST', `/apps/${APP_ID}/events`, body, { timestamp: Math.floor(Date.now() / 1000) - 3600 });
    check(stale.status === 401, `a replayed request an hour old gets 401 (${stale.status}: ${stale.text.trim()})`);
    const fresh = await raw('POST', `/apps/${APP_ID}/events`, body);
    check(fresh.status === 200, `the same request signed now is accepted (${fresh.status})`);
    const big = JSON.stringify({ name: 'x', channels: ['my-channel'], data: 'x'.repeat(20000) });
    const tooBig = await raw('POST', `/apps/${APP_ID}/events`, big);
    check(tooBig.status === 413, `event data over 10 KB gets 413 (${tooBig.status})`);
  }

  // Cache channels: the last event on subscribe, or pusher:cache_miss.
  {
    await server.trigger('cache-prices', 'price', { v: 42 });
    const c = client(KEY, null);
    await connected(c);
    const ch = c.subscribe('cache-prices');
    const [d] = await next(ch, 'price');
    check(d.v === 42, 'a cache channel replays its last event on subscribe');
    const miss = c.subscribe('cache-empty');
    await next(miss, 'pusher:cache_miss');
    ok('a cache channel without an event sends pusher:cache_miss');
  }

  // Isolation: another app's client on the same channel name gets nothing.
  {
    const other = client(KEY2, null);
    await connected(other);
    const [och] = await subscribed(other, 'my-channel');
    const leak = arrives(och, 'iso', 700);
    const seen = next(pa, 'iso');
    await server.trigger('my-channel', 'iso', {});
    await seen;
    check(!(await leak), "another app's client never sees this app's events");
  }

  for (const c of clients) c.disconnect();
  console.log('done');
  process.exit(0);
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));

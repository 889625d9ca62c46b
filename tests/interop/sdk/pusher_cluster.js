// pusher-js (the official Pusher Channels client, Node build) and the
// official `pusher` server SDK against two `wshub serve` nodes that share a
// broker (crates/cli/tests/it/cluster/pusher.rs). Clients connect to one
// node or the other; API requests go to either. Prints `ok ...` per check
// (with the figures it measured); exits 1 with `FAIL: ...` on the first
// mismatch. Every wait is bounded.
//
//   node pusher_cluster.js --url1 http://127.0.0.1:P1 --url2 http://127.0.0.1:P2 \
//        --app-id ID --key KEY --secret SECRET
//
// The app (ID, KEY, SECRET) has client events enabled; every channel the
// script uses is new (the cluster is fresh).
'use strict';

const PusherClient = require('pusher-js');
const PusherServer = require('pusher');

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`missing ${name}`);
  return process.argv[i + 1];
}

const APP_ID = arg('--app-id');
const KEY = arg('--key');
const SECRET = arg('--secret');
const NODES = [arg('--url1'), arg('--url2')].map((u) => {
  const url = new URL(u);
  return { host: url.hostname, port: Number(url.port) };
});

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
// How long "nothing arrives" is watched for.
const QUIET = 700;
function within(ms, what, promise) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
const ms = (t0) => `${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1)} ms`;
const now = () => process.hrtime.bigint();

// The server SDK pointed at node 1 (sdk[0]) or node 2 (sdk[1]).
const sdk = NODES.map(({ host, port }) => new PusherServer({
  appId: APP_ID, key: KEY, secret: SECRET, host, port: String(port), useTLS: false,
}));

const clients = [];
// A pusher-js client on node `n` (1 or 2); `user` for presence channels.
function client(n, user = null) {
  const { host, port } = NODES[n - 1];
  const c = new PusherClient(KEY, {
    cluster: 'local',
    wsHost: host,
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: (params, cb) => {
        try {
          if (params.channelName.startsWith('presence-')) {
            cb(null, sdk[n - 1].authorizeChannel(params.socketId, params.channelName, user));
          } else {
            cb(null, sdk[n - 1].authorizeChannel(params.socketId, params.channelName));
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

async function connectedClient(n, user = null) {
  const c = client(n, user);
  await connected(c);
  return c;
}

function subscribed(c, name) {
  const ch = c.subscribe(name);
  return within(WAIT, `subscribed ${name}`, new Promise((resolve, reject) => {
    ch.bind('pusher:subscription_succeeded', (data) => resolve([ch, data]));
    ch.bind('pusher:subscription_error', (e) => reject(new Error(`subscription_error on ${name}: ${JSON.stringify(e)}`)));
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

// Resolves to the events named `event` that arrive on `ch` within QUIET ms.
function watch(ch, event) {
  return new Promise((resolve) => {
    const got = [];
    const f = (data) => got.push(data);
    ch.bind(event, f);
    setTimeout(() => {
      ch.unbind(event, f);
      resolve(got);
    }, QUIET);
  });
}

async function getJson(n, path, params = {}) {
  const res = await within(WAIT, `GET ${path} on node ${n}`, sdk[n - 1].get({ path, params }));
  return res.json();
}

const userIds = (j) => (j.users || []).map((u) => u.id).sort().join(',');
const memberIds = (members) => {
  const ids = [];
  members.each((m) => ids.push(m.id));
  return ids.sort().join(',');
};

async function publicChannel() {
  // 1. Public channel: a client on node 1, the trigger through node 2.
  const a1 = await connectedClient(1);
  const b1 = await connectedClient(1);
  const c2 = await connectedClient(2);
  const [pa] = await subscribed(a1, 'news');
  const [pb] = await subscribed(b1, 'news');
  const [pc] = await subscribed(c2, 'news');
  const payload = {
    message: 'hello "world"\n\ttab \\ backslash </script>',
    unicode: 'héllo ✓ 𝄞 日本',
    nested: { list: [1, 2.5, -3, null, true, false], empty: {}, s: '' },
    big: 'x'.repeat(4000),
  };
  const got = next(pa, 'story');
  const t0 = now();
  await sdk[1].trigger('news', 'story', payload);
  const [data] = await got;
  check(JSON.stringify(data) === JSON.stringify(payload),
    `an event triggered through node 2 reaches a pusher-js client on node 1, data intact (${JSON.stringify(payload).length} bytes JSON, ${ms(t0)} from trigger to delivery)`);

  // socket_id exclusion across nodes: the excluded socket is on node 1,
  // the request goes to node 2.
  const toA = watch(pa, 'excl');
  const toB = next(pb, 'excl');
  const toC = next(pc, 'excl');
  await sdk[1].trigger('news', 'excl', { n: 1 }, { socket_id: a1.connection.socket_id });
  const [[dc], [db]] = await Promise.all([toC, toB]);
  check(dc.n === 1 && db.n === 1, 'trigger through node 2 with socket_id reaches the client on node 2 and the other client on node 1');
  const leaked = await toA;
  check(leaked.length === 0, `and the excluded client on node 1 gets nothing (${leaked.length} events in ${QUIET} ms)`);

  // And the other way: the excluded socket on node 2, the request to node 1.
  const toC2 = watch(pc, 'excl2');
  const toA2 = next(pa, 'excl2');
  await sdk[0].trigger('news', 'excl2', { n: 2 }, { socket_id: c2.connection.socket_id });
  await toA2;
  const leaked2 = await toC2;
  check(leaked2.length === 0, `trigger through node 1 excluding a socket on node 2: it gets nothing (${leaked2.length}), node 1 gets it`);
}

async function clientEvents() {
  // 2. Private channel client events: A on node 1, B on node 2.
  const a = await connectedClient(1);
  const b = await connectedClient(2);
  const [xa] = await subscribed(a, 'private-chat');
  const [xb] = await subscribed(b, 'private-chat');
  let got = next(xb, 'client-typing');
  const echo = watch(xa, 'client-typing');
  const t0 = now();
  check(xa.trigger('client-typing', { who: 'alice', text: 'ça va? "yes"' }), 'client event sent by A on node 1');
  const [data] = await got;
  check(data.who === 'alice' && data.text === 'ça va? "yes"', `A's client event reaches B on node 2, data intact (${ms(t0)})`);
  const echoed = await echo;
  check(echoed.length === 0, `and is not echoed to A (${echoed.length} in ${QUIET} ms)`);
  got = next(xa, 'client-reply');
  const echoB = watch(xb, 'client-reply');
  xb.trigger('client-reply', { who: 'bob' });
  const [back] = await got;
  check(back.who === 'bob', "B's client event reaches A on node 1");
  check((await echoB).length === 0, 'and is not echoed to B');

  // A dotted name, as Laravel Echo makes them (a NATS subject separator).
  const [da] = await subscribed(a, 'private-App.Models.User.1');
  const [db] = await subscribed(b, 'private-App.Models.User.1');
  got = next(db, 'client-dot');
  da.trigger('client-dot', { n: 7 });
  const [dot] = await got;
  check(dot.n === 7, 'a client event on private-App.Models.User.1 crosses nodes 1 -> 2');
}

async function presence() {
  // 3. Presence is cluster-wide: alice on node 1, bob on node 2.
  const alice = await connectedClient(1, { user_id: 'alice', user_info: { name: 'Alice' } });
  const bob = await connectedClient(2, { user_id: 'bob', user_info: { name: 'Bob' } });
  const [ra, aMembers] = await subscribed(alice, 'presence-room');
  check(aMembers.count === 1 && aMembers.me.id === 'alice', `alice (node 1) is alone at first (${memberIds(aMembers)})`);
  const added = next(ra, 'pusher:member_added');
  const t0 = now();
  const [rb, bMembers] = await subscribed(bob, 'presence-room');
  check(bMembers.count === 2 && memberIds(bMembers) === 'alice,bob' && bMembers.get('alice').info.name === 'Alice',
    `bob (node 2) sees both members with alice's user_info (${memberIds(bMembers)})`);
  const [m] = await added;
  check(m.id === 'bob' && m.info.name === 'Bob', `member_added crosses nodes 2 -> 1 with user_info (${ms(t0)})`);
  check(ra.members.count === 2 && memberIds(ra.members) === 'alice,bob', `alice (node 1) now sees both members (${memberIds(ra.members)})`);

  for (const n of [1, 2]) {
    const j = await getJson(n, '/channels/presence-room/users');
    check(userIds(j) === 'alice,bob', `GET /channels/presence-room/users on node ${n} lists both (${JSON.stringify(j)})`);
  }
  for (const n of [1, 2]) {
    const j = await getJson(n, '/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
    const room = j.channels && j.channels['presence-room'];
    check(room && room.user_count === 2, `GET /channels?filter_by_prefix=presence-&info=user_count on node ${n} gives 2 (${JSON.stringify(j)})`);
  }

  // A client event on presence carries user_id across nodes.
  let got = next(rb, 'client-hi');
  ra.trigger('client-hi', { x: 1 });
  const [, meta] = await got;
  check(meta && meta.user_id === 'alice', `client event on presence from node 1 reaches node 2 with user_id (${JSON.stringify(meta)})`);

  // carol on node 1: member_added reaches bob on node 2; carol leaving
  // removes her there.
  const carol = await connectedClient(1, { user_id: 'carol', user_info: { name: 'Carol' } });
  // (alice, on carol's node, sees her come and go too: wait for both.)
  const addedCarol = [next(rb, 'pusher:member_added'), next(ra, 'pusher:member_added')];
  const [, cMembers] = await subscribed(carol, 'presence-room');
  check(cMembers.count === 3, `carol (node 1) sees three members (${memberIds(cMembers)})`);
  const [[mc], [mca]] = await Promise.all(addedCarol);
  check(mc.id === 'carol' && mc.info.name === 'Carol' && mca.id === 'carol', 'member_added crosses nodes 1 -> 2 with user_info');
  const removedCarol = [next(rb, 'pusher:member_removed'), next(ra, 'pusher:member_removed')];
  carol.unsubscribe('presence-room');
  const [[rc], [rca]] = await Promise.all(removedCarol);
  check(rc.id === 'carol' && rca.id === 'carol' && rb.members.count === 2,
    `member_removed crosses nodes 1 -> 2 (bob sees ${memberIds(rb.members)})`);

  // bob leaving (his connection closes): alice on node 1 sees him go.
  const removedBob = next(ra, 'pusher:member_removed');
  const t1 = now();
  bob.disconnect();
  const [rbob] = await removedBob;
  check(rbob.id === 'bob' && ra.members.count === 1, `member_removed crosses nodes 2 -> 1 when bob's connection closes (${rbob.id} removed, alice sees ${memberIds(ra.members)}, ${ms(t1)})`);
  for (const n of [1, 2]) {
    const j = await getJson(n, '/channels/presence-room/users');
    check(userIds(j) === 'alice', `after bob left, GET /channels/presence-room/users on node ${n} lists alice only (${JSON.stringify(j)})`);
    const c = await getJson(n, '/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
    check(c.channels['presence-room'] && c.channels['presence-room'].user_count === 1,
      `and user_count on node ${n} is 1 (${JSON.stringify(c)})`);
  }
}

async function cacheChannel() {
  // 4. Cache channels: the last event triggered through node 2 is replayed
  // to a new subscriber on node 1.
  await sdk[1].trigger('cache-x', 'price', { v: 41 });
  await sdk[1].trigger('cache-x', 'price', { v: 42, s: 'last "one"' });
  const c = await connectedClient(1);
  const ch = c.subscribe('cache-x');
  const [d] = await next(ch, 'price');
  check(d.v === 42 && d.s === 'last "one"', `a new client on node 1 subscribing to cache-x gets the last event triggered through node 2 (${JSON.stringify(d)})`);
  const miss = c.subscribe('cache-nothing-yet');
  await next(miss, 'pusher:cache_miss');
  ok('a cache channel never triggered on either node gives pusher:cache_miss on node 1');
}

async function subscriptionCount() {
  // 5. subscription_count sums over the nodes: 2 on node 1, 3 on node 2.
  const counts = { 1: 2, 2: 3 };
  for (const n of [1, 2]) {
    for (let i = 0; i < counts[n]; i++) await subscribed(await connectedClient(n), 'counted');
  }
  for (const n of [1, 2]) {
    const j = await getJson(n, '/channels/counted', { info: 'subscription_count' });
    check(j.occupied === true && j.subscription_count === 5,
      `GET /channels/counted?info=subscription_count on node ${n} sums both nodes: 2 + 3 = ${j.subscription_count} (${JSON.stringify(j)})`);
  }
  const res = await sdk[0].trigger('counted', 'x', {}, { info: 'subscription_count' });
  const body = await res.json();
  check(body.channels && body.channels.counted && body.channels.counted.subscription_count === 5,
    `trigger with info=subscription_count through node 1 gives 5 (${JSON.stringify(body)})`);
  const j = await getJson(2, '/channels', { filter_by_prefix: 'count', info: 'subscription_count' });
  check(j.channels && j.channels.counted && j.channels.counted.subscription_count === 5,
    `GET /channels?filter_by_prefix=count&info=subscription_count on node 2 gives 5 (${JSON.stringify(j)})`);
}

async function main() {
  const t0 = now();
  await publicChannel();
  await clientEvents();
  await presence();
  await cacheChannel();
  await subscriptionCount();
  for (const c of clients) c.disconnect();
  console.log(`done in ${ms(t0)}`);
  process.exit(0);
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));

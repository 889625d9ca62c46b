// Hostile Pusher protocol 7 clients against `wshub serve`: raw `ws`
// connections (every byte ours) and raw HTTP, plus the official `pusher`
// server SDK to sign and trigger, and `pusher-js` as the well-behaved
// client that must still work after each attack.
// Prints `ok ...` per check; exits 1 with `FAIL: ...` on the first mismatch.
//
//   node pusher_hostile.js --url http://MAIN --limits-url http://LIMITS \
//        --app-id ID --key KEY --secret SECRET --quota-key QKEY \
//        --channel-limit 100 --client-events 5 --presence-max 3 \
//        --max-connections 5 --size-limit 262144 --limits-size-limit 65536 \
//        --activity 2 --pong 1 --commands-burst 10 --flood 20 \
//        --zero-url http://ZERO [--warmup]
//
// MAIN has the app (ID, KEY, SECRET) with client events, a small
// `max_client_events_per_second` and `max_presence_members`, and the app
// QKEY with `max_connections`; its `limits.commands_*` are loose.
// LIMITS has the same app and small `limits.commands_per_second`,
// `commands_burst` (10) and `command_flood_disconnect` (20), and the
// default message size limit. ZERO has `limits.commands_per_second` 0,
// which the configuration documents as "no limit". `--warmup` only runs
// the well-behaved clients (the caller measures the servers after it).
//
// A check that shows a server bug prints `BUG: ...` instead of `ok ...`
// and the script goes on (the caller fails on any `BUG:` line at the end).
'use strict';

const crypto = require('crypto');
const net = require('net');
const WebSocket = require('ws');
const PusherClient = require('pusher-js');
const PusherServer = require('pusher');

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`missing ${name}`);
  return process.argv[i + 1];
}
const num = (name) => Number(arg(name));

const MAIN = new URL(arg('--url'));
const LIMITS = new URL(arg('--limits-url'));
const ZERO = new URL(arg('--zero-url'));
const APP_ID = arg('--app-id');
const KEY = arg('--key');
const SECRET = arg('--secret');
const QUOTA_KEY = arg('--quota-key');
const CHANNEL_LIMIT = num('--channel-limit');
const CLIENT_EVENTS = num('--client-events');
const PRESENCE_MAX = num('--presence-max');
const MAX_CONNECTIONS = num('--max-connections');
const SIZE_LIMIT = num('--size-limit');
const LIMITS_SIZE_LIMIT = num('--limits-size-limit');
const ACTIVITY_MS = num('--activity') * 1000;
const PONG_MS = num('--pong') * 1000;
const COMMANDS_BURST = num('--commands-burst');
const FLOOD = num('--flood');

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
/// A check that a known server bug fails: reported, not fatal.
function bug(cond, msg) {
  console.log(cond ? `ok ${msg}` : `BUG: ${msg}`);
}

const WAIT = 5000;
function within(ms, what, promise) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ev = (name) => (m) => m.event === name;
const short = (s, n = 160) => (s.length > n ? `${s.slice(0, n)}...` : s);

function sdk(base) {
  return new PusherServer({
    appId: APP_ID, key: KEY, secret: SECRET,
    host: base.hostname, port: base.port, useTLS: false,
  });
}
const apiMain = sdk(MAIN);
const apiLimits = sdk(LIMITS);
// Only to sign `private-encrypted-` channels (which need a shared secret).
const apiEncrypted = new PusherServer({
  appId: APP_ID, key: KEY, secret: SECRET,
  host: MAIN.hostname, port: MAIN.port, useTLS: false,
  encryptionMasterKeyBase64: Buffer.alloc(32, 7).toString('base64'),
});

/// `key:hmac` over `socket_id:channel[:channel_data]`, by hand (for
/// channel_data the SDK would not produce).
function signChannel(socketId, channel, channelData) {
  const text = channelData === undefined ? `${socketId}:${channel}` : `${socketId}:${channel}:${channelData}`;
  return `${KEY}:${crypto.createHmac('sha256', SECRET).update(text).digest('hex')}`;
}

/// A raw WebSocket: each message parsed into an inbox; `pusher:ping` from
/// the server answered unless `silent`.
class Raw {
  constructor(base, path, { silent = false } = {}) {
    this.t0 = Date.now();
    this.silent = silent;
    this.inbox = [];
    this.watchers = [];
    this.listeners = new Set();
    this.pings = [];
    this.ws = new WebSocket(`ws://${base.host}${path}`, { perMessageDeflate: false, maxPayload: 64 << 20 });
    this.ws.on('error', (e) => {
      this.err = e;
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() - this.t0 }));
    });
    this.ws.on('message', (data) => this.received(data));
  }

  static async connect(base, key = KEY, opts = {}) {
    const r = new Raw(base, `/app/${key}?protocol=7&client=hostile&version=0.1`, opts);
    await within(WAIT, 'WebSocket open', r.opened);
    const m = await r.take(ev('pusher:connection_established'), 'pusher:connection_established');
    r.socketId = JSON.parse(m.data).socket_id;
    return r;
  }

  received(data) {
    let m;
    try {
      m = JSON.parse(data.toString('utf8'));
    } catch {
      m = { event: '(not JSON)', raw: data.toString('utf8') };
    }
    if (m && m.event === 'pusher:ping') {
      this.pings.push(Date.now() - this.t0);
      if (!this.silent) this.send({ event: 'pusher:pong', data: {} });
      return;
    }
    for (const f of this.listeners) f(m);
    const i = this.watchers.findIndex((w) => w.pred(m));
    if (i >= 0) {
      const [w] = this.watchers.splice(i, 1);
      w.resolve(m);
      return;
    }
    this.inbox.push(m);
  }

  summary() {
    return short(JSON.stringify(this.inbox.slice(-5)), 600);
  }

  /// The first message matching `pred` (waiting at most `ms`), removed.
  take(pred, what, ms = WAIT) {
    const i = this.inbox.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      };
      const t = setTimeout(() => {
        const j = this.watchers.indexOf(w);
        if (j >= 0) this.watchers.splice(j, 1);
        reject(new Error(`timed out (${ms} ms) waiting for ${what}; last messages: ${this.summary()}`));
      }, ms);
      this.watchers.push(w);
    });
  }

  /// True if nothing matching `pred` arrives within `ms`.
  async quiet(pred, ms) {
    try {
      await this.take(pred, 'nothing', ms);
      return false;
    } catch {
      return true;
    }
  }

  send(m, opts) {
    this.ws.send(typeof m === 'string' || Buffer.isBuffer(m) ? m : JSON.stringify(m), opts);
  }

  /// A `pusher:ping` answered by a `pusher:pong`; its round trip in ms.
  async pingPong(what = 'pusher:pong') {
    const t = Date.now();
    this.send({ event: 'pusher:ping', data: {} });
    await this.take(ev('pusher:pong'), what);
    return Date.now() - t;
  }

  subscribe(channel, extra = {}) {
    this.send({ event: 'pusher:subscribe', data: { channel, ...extra } });
    return this.subscribed(channel);
  }

  subscribed(channel) {
    return this.take(
      (m) => m.channel === channel
        && (m.event === 'pusher_internal:subscription_succeeded' || m.event === 'pusher:subscription_error'),
      `the answer to subscribing to ${channel}`,
    );
  }

  async close() {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    return within(WAIT, 'close', this.closed);
  }
}

const succeeded = (m) => m.event === 'pusher_internal:subscription_succeeded';
const subError = (m, status) => m.event === 'pusher:subscription_error' && m.data && m.data.status === status;

/// pusher-js, as a user would run it: connects, subscribes to a fresh
/// channel and receives an event the server SDK triggers there.
let healthySeq = 0;
async function healthy(base, api, after) {
  const t = Date.now();
  const c = new PusherClient(KEY, {
    cluster: 'local',
    wsHost: base.hostname,
    wsPort: Number(base.port),
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
  });
  try {
    await within(WAIT, `pusher-js connected (${after})`, new Promise((resolve) => {
      if (c.connection.state === 'connected') return resolve();
      c.connection.bind('connected', () => resolve());
    }));
    const name = `healthy-${++healthySeq}`;
    const ch = c.subscribe(name);
    await within(WAIT, `pusher-js subscribed (${after})`, new Promise((resolve, reject) => {
      ch.bind('pusher:subscription_succeeded', resolve);
      ch.bind('pusher:subscription_error', (e) => reject(new Error(`subscription_error ${JSON.stringify(e)}`)));
    }));
    const got = within(WAIT, `pusher-js event (${after})`, new Promise((resolve) => ch.bind('hello', resolve)));
    await api.trigger(name, 'hello', { after });
    const d = await got;
    check(d && d.after === after, `healthy after ${after}: pusher-js connects, subscribes, receives a triggered event (${Date.now() - t} ms)`);
  } finally {
    c.disconnect();
  }
}

// --- HTTP API helpers -------------------------------------------------

function signedQuery(method, path, body, { timestamp, secret = SECRET, params = {} } = {}) {
  const p = {
    auth_key: KEY,
    auth_timestamp: String(timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    ...params,
  };
  if (body) p.body_md5 = crypto.createHash('md5').update(body).digest('hex');
  const q = Object.keys(p).sort().map((k) => `${k}=${p[k]}`).join('&');
  const sig = crypto.createHmac('sha256', secret).update(`${method}\n${path}\n${q}`).digest('hex');
  return `${q}&auth_signature=${sig}`;
}

async function http(method, path, query, body) {
  const res = await within(WAIT, `${method} ${path}`, fetch(`http://${MAIN.host}${path}${query === null ? '' : `?${query}`}`, {
    method,
    body,
    headers: body ? { 'content-type': 'application/json' } : {},
  }));
  return { status: res.status, text: (await res.text()).trim() };
}

async function signed(method, path, body, opts) {
  return http(method, path, signedQuery(method, path, body, opts), body);
}

/// A raw HTTP/1.1 exchange on its own socket: writes `head`, then
/// `writeBody(socket, isDone)`; resolves with the status once the response
/// head has arrived (or 0 and why not).
function rawHttp(head, writeBody, ms = 15000) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect(Number(MAIN.port), MAIN.hostname);
    let buf = Buffer.alloc(0);
    let done = false;
    let sent = 0;
    const finish = (why) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      setTimeout(() => s.destroy(), 50);
      const text = buf.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : 0, text, why, ms: Date.now() - t0, sent });
    };
    const timer = setTimeout(() => finish('timeout'), ms);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.indexOf('\r\n\r\n') >= 0) setTimeout(() => finish('response'), 20);
    });
    s.on('error', (e) => finish(e.code || String(e)));
    s.on('close', () => finish('closed'));
    s.on('connect', async () => {
      s.write(head);
      if (writeBody) {
        try {
          await writeBody(s, () => done, (n) => {
            sent += n;
          });
        } catch {
          // The server may close while we still write: what it answered counts.
        }
      }
    });
  });
}

// --- the cases ----------------------------------------------------------

async function case1() {
  const refused = async (path, code, what) => {
    const r = new Raw(MAIN, path);
    await within(WAIT, `open ${path}`, r.opened);
    const e = await r.take(ev('pusher:error'), `pusher:error for ${path}`);
    const c = await within(WAIT, `close for ${path}`, r.closed);
    check(e.data && e.data.code === code && c.code === code,
      `case 1: ${what}: pusher:error ${e.data && e.data.code} "${e.data && e.data.message}", then close ${c.code}`);
  };
  await refused('/app/nope?protocol=7', 4001, 'unknown app key');
  await refused(`/app/${KEY}`, 4008, 'no protocol');
  await refused(`/app/${KEY}?protocol=abc`, 4006, 'protocol=abc');
  await refused(`/app/${KEY}?protocol=6`, 4007, 'protocol=6');
}

async function case2() {
  const r = await Raw.connect(MAIN);
  await r.subscribe('private-deep', { auth: signChannel(r.socketId, 'private-deep') }).then((m) => {
    if (!succeeded(m)) fail(`case 2: private-deep subscribe: ${JSON.stringify(m)}`);
  });
  const D = 100000;
  const deep = `${'['.repeat(D)}${']'.repeat(D)}`;
  const bad = [
    ['not JSON', 'this is not json'],
    ['a JSON array', '[1,2,3]'],
    ['"event": 5', '{"event":5}'],
    ['pusher:subscribe without a channel', '{"event":"pusher:subscribe","data":{}}'],
    ['pusher:subscribe with "channel": 5', '{"event":"pusher:subscribe","data":{"channel":5}}'],
    ['an event neither pusher: nor client-', '{"event":"hello","channel":"x","data":{}}'],
    ['a non-UTF-8 binary frame', Buffer.from([0xff, 0xfe, 0x7b, 0x00, 0x80]), { binary: true }],
    ['100,000-deep nested data in a client event', `{"event":"client-deep","channel":"private-deep","data":${deep}}`],
    ['100,000 unclosed brackets as data', `{"event":"pusher:ping","data":${'['.repeat(D)}`],
    ['100,000-deep nested data in a subscribe to an unknown channel name', `{"event":"pusher:subscribe","data":{"channel":"bad name!","x":${deep}}}`],
  ];
  for (const [what, frame, opts] of bad) {
    const t = Date.now();
    r.send(frame, opts);
    const e = await r.take((m) => m.event === 'pusher:error' || m.event === 'pusher:subscription_error', `the answer to ${what}`);
    const rtt = await r.pingPong(`pusher:pong after ${what}`);
    const msg = e.event === 'pusher:error' ? e.data && e.data.message : `subscription_error ${e.data && e.data.status}`;
    check(e.event === 'pusher:error' || (e.event === 'pusher:subscription_error' && what.includes('unknown channel')),
      `case 2: ${what} -> ${e.event} "${short(String(msg), 120)}" (${Date.now() - t} ms), then ping -> pong (${rtt} ms)`);
  }
  // A deep but valid subscribe data object: accepted, no stack overflow.
  r.send(`{"event":"pusher:subscribe","data":{"channel":"deep-ok","x":${deep}}}`);
  const m = await r.subscribed('deep-ok');
  await r.pingPong();
  check(succeeded(m), `case 2: a subscribe whose data holds 100,000-deep nesting is parsed without recursion (${m.event})`);
  check(r.ws.readyState === WebSocket.OPEN, 'case 2: the connection stayed open through every malformed frame');
  await r.close();

  // Invalid UTF-8 in a text frame is a WebSocket protocol error: 1007.
  const u = await Raw.connect(MAIN);
  u.send(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false });
  const c = await within(WAIT, 'close after invalid UTF-8 text', u.closed);
  check(c.code === 1007, `case 2: a text frame with invalid UTF-8 -> close ${c.code} "${c.reason}"`);
}

async function case3() {
  for (const [base, limit, name] of [[MAIN, SIZE_LIMIT, 'main'], [LIMITS, LIMITS_SIZE_LIMIT, 'limits']]) {
    // Exactly at the limit: a padded ping, answered.
    const r = await Raw.connect(base);
    const head = '{"event":"pusher:ping","data":{"pad":"';
    const tail = '"}}';
    r.send(head + 'p'.repeat(limit - head.length - tail.length) + tail);
    await r.take(ev('pusher:pong'), `pong to a ${limit}-byte ping`);
    ok(`case 3 (${name}): a ${limit}-byte message (the limit) is accepted`);
    // One byte over.
    const t = Date.now();
    r.send('x'.repeat(limit + 1));
    const c = await within(WAIT, 'close after an oversized message', r.closed);
    check(c.code === 1009, `case 3 (${name}): a ${limit + 1}-byte message -> close ${c.code} "${c.reason}" (${Date.now() - t} ms)`);
  }
}

async function case4() {
  const ch = 'private-flood';
  const s = await Raw.connect(MAIN);
  const r = await Raw.connect(MAIN);
  for (const c of [s, r]) {
    const m = await c.subscribe(ch, apiMain.authorizeChannel(c.socketId, ch));
    if (!succeeded(m)) fail(`case 4: subscribe ${ch}: ${JSON.stringify(m)}`);
  }
  // Over max_event_size: refused before the rate is counted.
  s.send({ event: 'client-big', channel: ch, data: { blob: 'x'.repeat(11000) } });
  const big = await s.take(ev('pusher:error'), 'pusher:error for an 11 KB client event');
  check(await r.quiet(ev('client-big'), 300), `case 4: an 11 KB client event -> pusher:error "${big.data.message}", not relayed`);

  const N = 50;
  let received = 0;
  r.listeners.add((m) => {
    if (m.event === 'client-burst') received += 1;
  });
  let refused = 0;
  let echoed = 0;
  s.listeners.add((m) => {
    if (m.event === 'pusher:error' && m.data && m.data.code === 4301) refused += 1;
    if (m.event === 'client-burst') echoed += 1;
  });
  const t = Date.now();
  for (let i = 0; i < N; i++) s.send({ event: 'client-burst', channel: ch, data: { i } });
  await within(WAIT, 'every client event answered', (async () => {
    while (refused + received < N) await sleep(20);
  })()).catch(() => {});
  await sleep(300);
  const spent = Date.now() - t;
  s.inbox.length = 0;
  r.inbox.length = 0;
  // The bucket holds CLIENT_EVENTS tokens and refills at CLIENT_EVENTS/s.
  const allowed = CLIENT_EVENTS + Math.ceil((spent / 1000) * CLIENT_EVENTS);
  check(refused >= N - allowed && received <= allowed && received >= CLIENT_EVENTS && refused + received === N && echoed === 0,
    `case 4: ${N} client events at once (limit ${CLIENT_EVENTS}/s): ${received} relayed, ${refused} refused with pusher:error 4301, none echoed (${spent} ms)`);
  check(s.ws.readyState === WebSocket.OPEN, 'case 4: the flooding sender is not disconnected for it');
  await sleep(1100);
  const got = r.take(ev('client-burst'), 'a client event once the rate allows');
  s.send({ event: 'client-burst', channel: ch, data: { i: 'after' } });
  const m = await got;
  await s.pingPong();
  check(m.data && m.data.i === 'after', 'case 4: a second later the same sender\'s client event is relayed again');
  await s.close();
  await r.close();
}

async function case5() {
  const r = await Raw.connect(LIMITS);
  let pongs = 0;
  let refused = 0;
  const other = [];
  r.listeners.add((m) => {
    if (m.event === 'pusher:pong') pongs += 1;
    else if (m.event === 'pusher:error' && m.data && m.data.code === 4301) refused += 1;
    else other.push(m);
  });
  const N = 200;
  const t = Date.now();
  for (let i = 0; i < N; i++) r.send({ event: 'pusher:ping', data: {} });
  const c = await within(WAIT, 'close after a message flood', r.closed);
  check(c.code === 4100 && refused >= 1 && pongs >= COMMANDS_BURST && pongs <= COMMANDS_BURST + 2 && refused <= FLOOD,
    `case 5: ${N} pings at once (burst ${COMMANDS_BURST}, flood ${FLOOD}): ${pongs} pongs, ${refused} pusher:error 4301, then close ${c.code} "${c.reason}" after ${Date.now() - t} ms`);
}

/// `limits.commands_per_second: 0` is documented as "no limit" (and is
/// so for Centrifugo clients): a busy but legitimate Pusher client must
/// not be cut off after `commands_burst` messages.
async function case5Zero() {
  const r = await Raw.connect(ZERO);
  let pongs = 0;
  let refused = 0;
  r.listeners.add((m) => {
    if (m.event === 'pusher:pong') pongs += 1;
    else if (m.event === 'pusher:error') refused += 1;
  });
  const N = 300;
  for (let i = 0; i < N; i++) r.send({ event: 'pusher:ping', data: {} });
  const end = await Promise.race([r.closed, (async () => {
    const deadline = Date.now() + 3000;
    while (pongs + refused < N && Date.now() < deadline) await sleep(20);
    return null;
  })()]);
  bug(end === null && pongs === N,
    `case 5: with limits.commands_per_second 0 ("no limit"), ${N} pings -> ${pongs} pongs, ${refused} pusher:error${end ? `, then close ${end.code} "${end.reason}"` : ''}`);
  if (!end) await r.close();
}

async function case6() {
  const r = await Raw.connect(MAIN);
  const N = 10000;
  let good = 0;
  let limited = 0;
  let otherErr = 0;
  r.listeners.add((m) => {
    if (succeeded(m)) good += 1;
    else if (subError(m, 403)) limited += 1;
    else if (m.event === 'pusher:subscription_error' || m.event === 'pusher:error') otherErr += 1;
  });
  const t = Date.now();
  for (let i = 0; i < N; i++) r.send({ event: 'pusher:subscribe', data: { channel: `many-${i}` } });
  const sentMs = Date.now() - t;
  // A ping sent after them all, answered in order once they are.
  const rtt = await r.pingPong('pong after 10,000 subscribes');
  await within(20000, '10,000 subscribe answers', (async () => {
    while (good + limited + otherErr < N) await sleep(20);
  })());
  const allMs = Date.now() - t;
  r.inbox.length = 0;
  check(good === CHANNEL_LIMIT && limited === N - CHANNEL_LIMIT && otherErr === 0,
    `case 6: ${N} subscribes sent in ${sentMs} ms: ${good} succeeded, ${limited} subscription_error 403 (channel_limit ${CHANNEL_LIMIT}), all answered in ${allMs} ms`);
  const rtt2 = await r.pingPong();
  check(rtt2 < 1000, `case 6: the same connection still answers a ping (${rtt} ms behind the flood, ${rtt2} ms after)`);
  const q = await signed('GET', `/apps/${APP_ID}/channels`, undefined, { params: { filter_by_prefix: 'many-' } });
  const n = Object.keys(JSON.parse(q.text).channels || {}).length;
  check(q.status === 200 && n === CHANNEL_LIMIT, `case 6: the API lists ${n} many-* channels`);
  await r.close();
  let left = -1;
  const deadline = Date.now() + WAIT;
  while (Date.now() < deadline) {
    const after = await signed('GET', `/apps/${APP_ID}/channels`, undefined, { params: { filter_by_prefix: 'many-' } });
    left = Object.keys(JSON.parse(after.text).channels || {}).length;
    if (left === 0) break;
    await sleep(100);
  }
  check(left === 0, `case 6: closing the connection leaves ${left} many-* channels`);
}

async function case7() {
  const conns = [];
  const conn = async () => {
    const c = await Raw.connect(MAIN);
    conns.push(c);
    return c;
  };
  const c = await conn();
  {
    const ch = 'presence-big';
    const a = apiMain.authorizeChannel(c.socketId, ch, { user_id: 'big', user_info: { blob: 'x'.repeat(60000) } });
    const m = await c.subscribe(ch, a);
    check(subError(m, 413), `case 7: a validly signed ${a.channel_data.length}-byte channel_data -> subscription_error ${m.data && m.data.status} "${m.data && m.data.error}"`);
  }
  for (const [what, cd, viaSdk] of [
    ['channel_data not JSON', '{not json', false],
    ['channel_data a JSON string', 'a string', true],
    ['channel_data without user_id', { user_info: { name: 'x' } }, true],
    ['a user_id of 129 bytes', { user_id: 'u'.repeat(129) }, true],
    ['a user_id of an object', { user_id: { id: 1 } }, true],
  ]) {
    const ch = 'presence-bad';
    const a = viaSdk ? apiMain.authorizeChannel(c.socketId, ch, cd) : { auth: signChannel(c.socketId, ch, cd), channel_data: cd };
    const m = await c.subscribe(ch, a);
    check(subError(m, 400), `case 7: ${what} (validly signed) -> subscription_error ${m.data && m.data.status} "${m.data && short(m.data.error, 100)}"`);
  }
  {
    const ch = 'presence-bad';
    const m = await c.subscribe(ch, { auth: signChannel(c.socketId, ch) });
    check(subError(m, 400) || subError(m, 401), `case 7: a presence subscribe without channel_data -> subscription_error ${m.data && m.data.status}`);
    const id = 'u'.repeat(128);
    const m2 = await c.subscribe('presence-ids', apiMain.authorizeChannel(c.socketId, 'presence-ids', { user_id: id }));
    check(succeeded(m2), 'case 7: a user_id of exactly 128 bytes is accepted');
  }
  // max_presence_members.
  const ch = 'presence-full';
  const members = [];
  for (let i = 1; i <= PRESENCE_MAX; i++) {
    const m = await conn();
    const r = await m.subscribe(ch, apiMain.authorizeChannel(m.socketId, ch, { user_id: `user-${i}` }));
    if (!succeeded(r)) fail(`case 7: member ${i} refused: ${JSON.stringify(r)}`);
    members.push(m);
  }
  ok(`case 7: ${PRESENCE_MAX} users join ${ch}`);
  const extra = await conn();
  let r = await extra.subscribe(ch, apiMain.authorizeChannel(extra.socketId, ch, { user_id: 'user-extra' }));
  check(subError(r, 403), `case 7: user ${PRESENCE_MAX + 1} -> subscription_error ${r.data && r.data.status} "${r.data && r.data.error}"`);
  const again = await conn();
  r = await again.subscribe(ch, apiMain.authorizeChannel(again.socketId, ch, { user_id: 'user-1' }));
  const count = succeeded(r) ? JSON.parse(r.data).presence.count : -1;
  check(succeeded(r) && count === PRESENCE_MAX, `case 7: a second connection of user-1 is accepted (members ${count})`);
  members[PRESENCE_MAX - 1].send({ event: 'pusher:unsubscribe', data: { channel: ch } });
  await members[PRESENCE_MAX - 1].pingPong();
  r = await extra.subscribe(ch, apiMain.authorizeChannel(extra.socketId, ch, { user_id: 'user-extra' }));
  check(succeeded(r), `case 7: once user-${PRESENCE_MAX} leaves, user-extra is accepted`);
  // A member whose TCP connection just dies frees its place at once.
  const removed = members[0].take((m) => m.event === 'pusher_internal:member_removed' && m.channel === ch
    && JSON.parse(m.data).user_id === 'user-2', 'member_removed for user-2');
  members[1].ws.terminate();
  const gone = await removed;
  const late = await conn();
  r = await late.subscribe(ch, apiMain.authorizeChannel(late.socketId, ch, { user_id: 'user-late' }));
  check(JSON.parse(gone.data).user_id === 'user-2' && succeeded(r),
    `case 7: a member whose connection is reset is removed (member_removed ${gone.data}) and its place taken by a new user (${r.event} ${JSON.stringify(r.data)})`);
  for (const x of conns) await x.close();

  // Many distinct users subscribing at the same moment to an empty
  // presence channel: still at most max_presence_members of them (a race
  // is not seen every round: several rounds).
  const RUSH_ROUNDS = 10;
  const RUSH_USERS = 40;
  let worst = 0;
  const rounds = [];
  for (let round = 0; round < RUSH_ROUNDS; round++) {
    const name = `presence-rush-${round}`;
    const rush = await Promise.all(Array.from({ length: RUSH_USERS }, () => Raw.connect(MAIN)));
    const frames = rush.map((c, i) => JSON.stringify({
      event: 'pusher:subscribe',
      data: { channel: name, ...apiMain.authorizeChannel(c.socketId, name, { user_id: `rush-${i}` }) },
    }));
    rush.forEach((c, i) => c.send(frames[i]));
    const answers = await Promise.all(rush.map((c) => c.subscribed(name)));
    const accepted = answers.filter(succeeded).length;
    const refused = answers.filter((m) => subError(m, 403)).length;
    if (accepted + refused !== rush.length) fail(`case 7: rush answers ${JSON.stringify(answers.slice(0, 3))}`);
    rounds.push(accepted);
    worst = Math.max(worst, accepted);
    await Promise.all(rush.map((c) => c.close()));
  }
  bug(worst <= PRESENCE_MAX,
    `case 7: ${RUSH_USERS} distinct users subscribing at once to an empty presence channel (max_presence_members ${PRESENCE_MAX}), ${RUSH_ROUNDS} rounds: accepted ${rounds.join(', ')}`);
}

async function case8() {
  const held = [];
  for (let i = 0; i < MAX_CONNECTIONS; i++) held.push(await Raw.connect(MAIN, QUOTA_KEY));
  ok(`case 8: ${MAX_CONNECTIONS} connections to the app with max_connections ${MAX_CONNECTIONS} are accepted`);
  const over = new Raw(MAIN, `/app/${QUOTA_KEY}?protocol=7`);
  await within(WAIT, 'open', over.opened);
  const e = await over.take(ev('pusher:error'), 'pusher:error 4004');
  const c = await within(WAIT, 'close 4004', over.closed);
  check(e.data.code === 4004 && c.code === 4004,
    `case 8: connection ${MAX_CONNECTIONS + 1} -> pusher:error ${e.data.code} "${e.data.message}", close ${c.code}`);
  await held.shift().close();
  let attempts = 0;
  let accepted = null;
  const deadline = Date.now() + 3000;
  while (!accepted && Date.now() < deadline) {
    attempts += 1;
    const r = new Raw(MAIN, `/app/${QUOTA_KEY}?protocol=7`);
    await within(WAIT, 'open', r.opened);
    const m = await r.take((x) => x.event === 'pusher:connection_established' || x.event === 'pusher:error', 'first message');
    if (m.event === 'pusher:connection_established') accepted = r;
    else {
      await within(WAIT, 'close', r.closed);
      await sleep(50);
    }
  }
  check(accepted !== null, `case 8: after one closes, a new connection is accepted (attempt ${attempts})`);
  held.push(accepted);
  // The connections end in every bad way; each gives its place back.
  const ends = [
    ['reset', (h) => h.ws.terminate()],
    ['oversized message (1009)', (h) => h.send('x'.repeat(SIZE_LIMIT + 1))],
    ['invalid UTF-8 (1007)', (h) => h.send(Buffer.from([0xc3, 0x28]), { binary: false })],
    ['garbage then close', (h) => {
      h.send('garbage');
      h.ws.close(4999);
    }],
    ['normal close', (h) => h.ws.close(1000)],
  ];
  const codes = [];
  for (let i = 0; i < held.length; i++) {
    ends[i][1](held[i]);
    codes.push(`${ends[i][0]}: ${(await within(WAIT, 'close', held[i].closed)).code}`);
  }
  const again = [];
  const deadline2 = Date.now() + 3000;
  while (again.length < MAX_CONNECTIONS && Date.now() < deadline2) {
    const r = new Raw(MAIN, `/app/${QUOTA_KEY}?protocol=7`);
    await within(WAIT, 'open', r.opened);
    const m = await r.take((x) => x.event === 'pusher:connection_established' || x.event === 'pusher:error', 'first message');
    if (m.event === 'pusher:connection_established') again.push(r);
    else await sleep(50);
  }
  check(again.length === MAX_CONNECTIONS,
    `case 8: after connections ended by ${codes.join(', ')}, ${again.length} new ones are accepted`);
  for (const h of again) await h.close();
}

function case9Start() {
  const r = new Raw(MAIN, `/app/${KEY}?protocol=7`, { silent: true });
  // Beside it, a client that sends nothing but answers the pings.
  const polite = Raw.connect(MAIN);
  polite.catch(() => {});
  return (async () => {
    await within(WAIT, 'open', r.opened);
    const m = await r.take(ev('pusher:connection_established'), 'connection_established');
    const told = JSON.parse(m.data).activity_timeout;
    const limit = ACTIVITY_MS + PONG_MS + 2000;
    const c = await within(limit + 1000, 'close of a client that never pongs', r.closed);
    return { told, ping: r.pings[0], close: c, limit, polite: await polite };
  })();
}

async function case9Check(p) {
  const { told, ping, close, limit, polite } = await p;
  await sleep(Math.max(0, ACTIVITY_MS + PONG_MS + 500 - (Date.now() - polite.t0)));
  check(polite.ws.readyState === WebSocket.OPEN && polite.pings.length >= 1,
    `case 9: a client that answers the server's pings stays open (${polite.pings.length} pings in ${Date.now() - polite.t0} ms)`);
  await polite.close();
  check(told === ACTIVITY_MS / 1000, `case 9: connection_established says activity_timeout ${told}`);
  check(ping !== undefined && ping >= ACTIVITY_MS - 100 && ping <= ACTIVITY_MS + 1500,
    `case 9: the server sent pusher:ping after ${ping} ms of silence`);
  check(close.code === 4201 && close.at >= ACTIVITY_MS + PONG_MS - 100 && close.at <= limit,
    `case 9: a client that never answers is closed with ${close.code} "${close.reason}" after ${close.at} ms (activity ${ACTIVITY_MS} + pong ${PONG_MS} ms)`);
}

async function case10() {
  const path = `/apps/${APP_ID}/events`;
  const body = JSON.stringify({ name: 'api-ev', channels: ['api-ch'], data: '{}' });
  let r = await signed('POST', path, body, { secret: 'not-the-secret' });
  check(r.status === 401, `case 10: a bad signature -> ${r.status} "${r.text}"`);
  r = await http('POST', path, null, body);
  check(r.status === 401, `case 10: no auth parameters -> ${r.status} "${r.text}"`);
  r = await http('POST', path, `auth_key=${KEY}&auth_version=1.0`, body);
  check(r.status === 401, `case 10: auth_key without timestamp or signature -> ${r.status} "${r.text}"`);
  r = await signed('POST', path, body, { timestamp: Math.floor(Date.now() / 1000) - 3600 });
  check(r.status === 401, `case 10: a timestamp an hour old -> ${r.status} "${r.text}"`);
  r = await signed('POST', path, body, { timestamp: Math.floor(Date.now() / 1000) + 3600 });
  check(r.status === 401, `case 10: a timestamp an hour ahead -> ${r.status} "${r.text}"`);
  {
    // Signed over one body (body_md5), sent with another.
    const other = JSON.stringify({ name: 'api-ev', channels: ['api-ch'], data: '{"forged":1}' });
    r = await http('POST', path, signedQuery('POST', path, body), other);
    check(r.status === 401, `case 10: a body that does not match its body_md5 -> ${r.status} "${r.text}"`);
  }
  r = await signed('POST', path, '{"name": "x", "channels": [');
  check(r.status === 400, `case 10: malformed JSON -> ${r.status} "${short(r.text, 100)}"`);
  const many = Array.from({ length: 101 }, (_, i) => `c${i}`);
  r = await signed('POST', path, JSON.stringify({ name: 'x', channels: many, data: '{}' }));
  check(r.status === 400, `case 10: an event naming 101 channels -> ${r.status} "${r.text}"`);
  const batch = Array.from({ length: 11 }, (_, i) => ({ name: 'x', channel: `b${i}`, data: '{}' }));
  r = await signed('POST', `/apps/${APP_ID}/batch_events`, JSON.stringify({ batch }));
  check(r.status === 400, `case 10: a batch of 11 events -> ${r.status} "${r.text}"`);
  r = await signed('POST', path, JSON.stringify({ name: 'x', channels: ['bad channel!'], data: '{}' }));
  check(r.status === 400, `case 10: an invalid channel name -> ${r.status} "${r.text}"`);
  r = await signed('POST', '/apps/no-such-app/events', body);
  check(r.status === 404, `case 10: an unknown app id -> ${r.status} "${r.text}"`);
  r = await signed('GET', path);
  check(r.status === 405, `case 10: GET on /events -> ${r.status} "${r.text}"`);
  r = await signed('DELETE', `/apps/${APP_ID}/channels`);
  check(r.status === 405, `case 10: DELETE on /channels -> ${r.status} "${r.text}"`);

  // Bodies over 16 MiB.
  const q = signedQuery('POST', path);
  r = await rawHttp(`POST ${path}?${q} HTTP/1.1\r\nHost: ${MAIN.host}\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n`);
  check(r.status === 413, `case 10: a declared 1 GiB Content-Length -> ${r.status} in ${r.ms} ms without sending it`);
  const MiB = 1 << 20;
  r = await rawHttp(
    `POST ${path}?${q} HTTP/1.1\r\nHost: ${MAIN.host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
    async (s, isDone, sent) => {
      const chunk = Buffer.alloc(MiB, 0x20);
      for (let i = 0; i < 17 && !isDone(); i++) {
        s.write(`${MiB.toString(16)}\r\n`);
        const more = s.write(chunk);
        s.write('\r\n');
        sent(MiB);
        if (!more) {
          await new Promise((res) => {
            const t = setTimeout(res, 5000);
            const f = () => {
              clearTimeout(t);
              res();
            };
            s.once('drain', f);
            s.once('close', f);
          });
        }
      }
      if (!isDone()) s.write('0\r\n\r\n');
    },
  );
  check(r.status === 413, `case 10: a 17 MiB chunked body -> ${r.status} after ${Math.round(r.sent / MiB)} MiB sent (${r.ms} ms, ${r.why})`);

  // 200 bad signatures in a row, then a good request.
  const t = Date.now();
  let all401 = 0;
  for (let i = 0; i < 200; i++) {
    const x = await signed('POST', path, body, { secret: `wrong-${i}` });
    if (x.status === 401) all401 += 1;
  }
  const badMs = Date.now() - t;
  const t2 = Date.now();
  r = await signed('POST', path, body);
  const goodMs = Date.now() - t2;
  check(all401 === 200 && r.status === 200 && goodMs < 1000,
    `case 10: 200 bad signatures in a row (${all401} x 401 in ${badMs} ms), then a good request -> ${r.status} in ${goodMs} ms`);

  // Four unsigned requests that declare 16 MiB bodies (the most one may
  // have) and send one byte: an anonymous peer must not be able to keep
  // the app's own signed requests out.
  const held = [];
  for (let i = 0; i < 4; i++) {
    const s = net.connect(Number(MAIN.port), MAIN.hostname);
    s.on('error', () => {});
    s.write(`POST ${path} HTTP/1.1\r\nHost: ${MAIN.host}\r\nContent-Type: application/json\r\nContent-Length: ${16 << 20}\r\n\r\n{`);
    held.push(s);
  }
  await sleep(300);
  r = await signed('POST', path, body);
  bug(r.status === 200,
    `case 10: while 4 unsigned requests declaring 16 MiB bodies stall, a signed trigger -> ${r.status} "${short(r.text, 140)}"`);
  for (const s of held) s.destroy();
  let after = null;
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    after = await signed('POST', path, body);
    if (after.status === 200) break;
    await sleep(50);
  }
  check(after.status === 200, `case 10: once they are gone, a signed trigger -> ${after.status}`);
}

async function case11() {
  const ch = 'private-encrypted-secret';
  const a = await Raw.connect(MAIN);
  const b = await Raw.connect(MAIN);
  for (const c of [a, b]) {
    const m = await c.subscribe(ch, apiEncrypted.authorizeChannel(c.socketId, ch));
    if (!succeeded(m)) fail(`case 11: subscribe ${ch}: ${JSON.stringify(m)}`);
  }
  ok(`case 11: two clients subscribe to ${ch} with SDK signatures`);
  a.send({ event: 'client-leak', channel: ch, data: { ciphertext: 'AAAA', nonce: 'BBBB' } });
  const e = await a.take(ev('pusher:error'), 'pusher:error for a client event on an encrypted channel');
  check(await b.quiet(ev('client-leak'), 700),
    `case 11: a client event on ${ch} -> pusher:error "${e.data.message}", not relayed`);
  // Without a subscription either.
  a.send({ event: 'client-leak', channel: 'private-encrypted-other', data: {} });
  const e2 = await a.take(ev('pusher:error'), 'pusher:error for an unsubscribed channel');
  ok(`case 11: a client event on an encrypted channel it did not join -> pusher:error "${e2.data.message}"`);
  await a.close();
  await b.close();
}

async function main() {
  if (process.argv.includes('--warmup')) {
    await healthy(MAIN, apiMain, 'warm-up');
    await healthy(LIMITS, apiLimits, 'warm-up (limits server)');
    await healthy(ZERO, sdk(ZERO), 'warm-up (zero server)');
    const r = await Raw.connect(MAIN);
    await r.pingPong();
    await r.close();
    const x = await signed('GET', `/apps/${APP_ID}/channels`);
    check(x.status === 200, 'warm-up API request');
    console.log('done');
    process.exit(0);
  }
  const started = Date.now();
  const pingCase = case9Start();
  pingCase.catch(() => {});
  const steps = [
    ['case 1', case1, [MAIN]],
    ['case 2', case2, [MAIN]],
    ['case 3', case3, [MAIN, LIMITS]],
    ['case 4', case4, [MAIN]],
    ['case 5', case5, [LIMITS]],
    ['case 5 (commands_per_second 0)', case5Zero, [ZERO]],
    ['case 6', case6, [MAIN]],
    ['case 7', case7, [MAIN]],
    ['case 8', case8, [MAIN]],
    ['case 9', () => case9Check(pingCase), [MAIN]],
    ['case 10', case10, [MAIN]],
    ['case 11', case11, [MAIN]],
  ];
  const apis = new Map([[MAIN, apiMain], [LIMITS, apiLimits], [ZERO, sdk(ZERO)]]);
  for (const [name, run, bases] of steps) {
    const t = Date.now();
    await run();
    console.log(`time ${name}: ${Date.now() - t} ms`);
    for (const base of bases) {
      const where = base === MAIN ? '' : base === LIMITS ? ' (limits server)' : ' (zero server)';
      await healthy(base, apis.get(base), `${name}${where}`);
    }
  }
  console.log(`time total: ${Date.now() - started} ms`);
  console.log('done');
  process.exit(0);
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));

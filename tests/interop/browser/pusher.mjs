// The Pusher front in Debian's headless Chromium: pusher-js's browser
// bundle, then Laravel Echo (its IIFE build, with pusher-js as its client),
// injected into pages served by `wshub serve` with the Pusher front
// enabled. Nothing is served from here and there is no Laravel backend:
// events are triggered from this (Node) side with the official `pusher`
// server SDK, and the pages' channel authorization is a pusher-js
// `channelAuthorization.customHandler` that calls back into Node
// (`page.exposeFunction`), where the server SDK's `authorizeChannel` signs
// for the page's user. Requests to Echo's default `/broadcasting/auth` are
// counted (and refused): there must be none.
//
//   node pusher.mjs BASE_URL APP_ID KEY SECRET
//
// The app must have client events enabled. Prints `ok ...` per check, and
// `ok pusher-js: done` / `ok echo: done` when a part ran to its end; exits 1
// with every failure on stderr. Bounded: each wait 5 s, the whole run 45 s.
import { chromium } from "playwright-core";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [base, appId, key, secret] = process.argv.slice(2);
if (!base || !appId || !key || !secret) {
  console.error("usage: node pusher.mjs BASE_URL APP_ID KEY SECRET");
  process.exit(2);
}
const watchdog = setTimeout(() => {
  console.error("FAIL: pusher.mjs did not finish within 45 s");
  process.exit(1);
}, 45000);

const here = dirname(fileURLToPath(import.meta.url));
const sdkDir = join(here, "..", "sdk");
const requireSdk = createRequire(join(sdkDir, "package.json"));
const PusherServer = requireSdk("pusher");
const pusherBundle = join(sdkDir, "node_modules", "pusher-js", "dist", "web", "pusher.js");
const echoBundle = requireSdk.resolve("laravel-echo/iife");
for (const f of [pusherBundle, echoBundle]) {
  if (!existsSync(f)) {
    console.error(`${f} is missing: run \`npm ci\` in tests/interop/sdk`);
    process.exit(2);
  }
}
const echoVersion = JSON.parse(readFileSync(join(sdkDir, "node_modules", "laravel-echo", "package.json"), "utf8")).version;

const url = new URL(base);
const server = new PusherServer({
  appId,
  key,
  secret,
  host: url.hostname,
  port: url.port,
  useTLS: false,
});

const WAIT_MS = 5000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ok = (what) => console.log(`ok ${what}`);
function check(cond, what) {
  if (!cond) throw new Error(what);
}
function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  check(a === e, `${what}: expected ${e}, got ${a}`);
}

// Runs in each page: named event queues that Node waits on.
function installQueues(waitMs) {
  const queues = {};
  const q = (name) => (queues[name] ||= { items: [], waiters: [] });
  globalThis.T = {
    push(name, item) {
      const w = q(name).waiters.shift();
      if (w) w(item);
      else q(name).items.push(item);
    },
    next(name) {
      const queue = q(name);
      if (queue.items.length) return Promise.resolve(queue.items.shift());
      return new Promise((resolve, reject) => {
        const f = (v) => {
          clearTimeout(timer);
          resolve(v);
        };
        const timer = setTimeout(() => {
          queue.waiters.splice(queue.waiters.indexOf(f), 1);
          reject(new Error(`timed out after ${waitMs} ms waiting for ${name}`));
        }, waitMs);
        queue.waiters.push(f);
      });
    },
    drain(name) {
      const items = q(name).items;
      q(name).items = [];
      return items;
    },
    // The customHandler's signer: Node's `wshubAuthorize` (exposeFunction).
    authorize(params, callback) {
      globalThis.wshubAuthorize(params.socketId, params.channelName).then(
        (auth) => callback(null, auth),
        (e) => callback(e instanceof Error ? e : new Error(String(e)), null),
      );
    },
  };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const failures = [];

// A page of the server (its own origin) with pusher-js, and Echo if asked,
// whose channel authorization signs for `user` (presence channel_data).
async function openPage(label, user, { echo = false } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const info = { label, page, authorized: [], authRequests: 0, errors: [], pings: 0, pongs: 0 };
  page.on("pageerror", (e) => info.errors.push(`${label}: page error: ${e.message}`));
  // pusher-js's own keep-alive, seen on the wire.
  page.on("websocket", (ws) => {
    ws.on("framesent", (f) => String(f.payload).includes('"pusher:ping"') && (info.pings += 1));
    ws.on("framereceived", (f) => String(f.payload).includes('"pusher:pong"') && (info.pongs += 1));
  });
  await page.route("**/broadcasting/auth", (route) => {
    info.authRequests += 1;
    return route.fulfill({ status: 403, body: "no Laravel backend here" });
  });
  await page.exposeFunction("wshubAuthorize", (socketId, channelName) => {
    info.authorized.push(channelName);
    return channelName.startsWith("presence-")
      ? server.authorizeChannel(socketId, channelName, user)
      : server.authorizeChannel(socketId, channelName);
  });
  // Whatever `/` answers (with the test's configuration there is no demo,
  // so its 404 page), the document has the server's origin.
  const res = await page.goto(`${base}/`);
  check(res !== null, `${label}: no response for ${base}/`);
  await page.evaluate(installQueues, WAIT_MS);
  await page.addScriptTag({ path: pusherBundle });
  if (echo) await page.addScriptTag({ path: echoBundle });
  const kinds = await page.evaluate(() => [typeof globalThis.Pusher, typeof globalThis.Echo]);
  check(kinds[0] === "function", `${label}: the pusher-js bundle defined no Pusher class (${kinds[0]})`);
  if (echo) check(kinds[1] === "object", `${label}: the laravel-echo IIFE defined no Echo (${kinds[1]})`);
  return info;
}

const next = (p, name) => p.page.evaluate((n) => globalThis.T.next(n), name);
// What arrived on `name` within `ms` (nothing expected: check it is empty).
async function within(p, name, ms = 600) {
  await sleep(ms);
  return p.page.evaluate((n) => globalThis.T.drain(n), name);
}

// ---- (a) pusher-js's browser bundle --------------------------------------

async function pusherJsScenario() {
  const alice = await openPage("alice", { user_id: "alice", user_info: { name: "Alice" } });
  const bob = await openPage("bob", { user_id: "bob", user_info: { name: "Bob" } });
  const pages = [alice, bob];
  try {
    // Alice's pusher-js pings after 1 s without a message (its
    // activityTimeout, below the server's), and wants the pong within 3 s.
    const connect = (p, keepAlive = {}) =>
      p.page.evaluate(
        ({ key, wsHost, wsPort, keepAlive }) => {
          const client = new Pusher(key, {
            cluster: "local",
            wsHost,
            wsPort,
            forceTLS: false,
            enabledTransports: ["ws"],
            channelAuthorization: { customHandler: globalThis.T.authorize },
            ...keepAlive,
          });
          globalThis.client = client;
          client.connection.bind("error", (e) => globalThis.T.push("error", JSON.stringify(e)));
          client.connection.bind("state_change", (s) => globalThis.T.push("state", s.current));
          return new Promise((resolve) => {
            if (client.connection.state === "connected") resolve(client.connection.socket_id);
            client.connection.bind("connected", () => resolve(client.connection.socket_id));
          });
        },
        { key, wsHost: url.hostname, wsPort: Number(url.port), keepAlive },
      );
    const [aId, bId] = await Promise.all([connect(alice, { activityTimeout: 1000, pongTimeout: 3000 }), connect(bob)]);
    check(/^\d+\.\d+$/.test(aId) && /^\d+\.\d+$/.test(bId) && aId !== bId, `socket ids ${aId}, ${bId}`);
    ok(`pusher-js: both pages connected over ws (socket ids ${aId}, ${bId})`);

    // Subscribes and binds `events` on `channel`; resolves with what
    // subscription_succeeded gave (presence: the members).
    const subscribe = (p, channel, events) =>
      p.page.evaluate(
        ({ channel, events }) => {
          const ch = globalThis.client.subscribe(channel);
          for (const ev of events) ch.bind(ev, (data, meta) => globalThis.T.push(`${channel} ${ev}`, { data, meta }));
          return new Promise((resolve, reject) => {
            ch.bind("pusher:subscription_succeeded", (m) => {
              if (!m || m.count === undefined) return resolve(null);
              const members = {};
              m.each((x) => (members[x.id] = x.info));
              resolve({ count: m.count, me: m.me, members });
            });
            ch.bind("pusher:subscription_error", (e) => reject(new Error(`subscription_error ${JSON.stringify(e)}`)));
          });
        },
        { channel, events },
      );

    // Public channel: an event from the server SDK reaches both pages.
    await Promise.all(pages.map((p) => subscribe(p, "news", ["breaking", "excl"])));
    const payload = { headline: 'hello "browser"\n\u2713 \u65e5\u672c \ud83d\ude00 </script>', n: 1.5, list: [1, null, true] };
    await server.trigger("news", "breaking", payload);
    for (const p of pages) {
      const { data } = await next(p, "news breaking");
      eq(data, payload, `${p.label}: event on the public channel`);
    }
    ok("pusher-js: public channel event triggered by the server SDK reaches both pages, data intact");
    await server.trigger("news", "excl", { n: 2 }, { socket_id: aId });
    eq((await next(bob, "news excl")).data, { n: 2 }, "bob: trigger with alice's socket_id");
    eq(await within(alice, "news excl"), [], "alice: trigger excluding her socket_id");
    ok("pusher-js: a trigger with a page's socket_id skips that page only");

    // Private channel: authorized through the custom handler; client
    // events between the pages, not echoed to the sender.
    await Promise.all(pages.map((p) => subscribe(p, "private-room", ["client-typing"])));
    for (const p of pages) check(p.authorized.includes("private-room"), `${p.label}: private-room not authorized through the handler`);
    ok("pusher-js: private channel subscribed on both pages, signed by the server SDK in the custom handler");
    const sent = await alice.page.evaluate(() => globalThis.client.channel("private-room").trigger("client-typing", { who: "alice" }));
    check(sent === true, `alice: trigger returned ${sent}`);
    eq((await next(bob, "private-room client-typing")).data, { who: "alice" }, "bob: alice's client event");
    eq(await within(alice, "private-room client-typing"), [], "alice: her own client event");
    await bob.page.evaluate(() => globalThis.client.channel("private-room").trigger("client-typing", { who: "bob" }));
    eq((await next(alice, "private-room client-typing")).data, { who: "bob" }, "alice: bob's client event");
    ok("pusher-js: client events between the two pages on the private channel, not echoed to the sender");

    // Presence: the pages see each other; bob's page closing removes him.
    const presenceEvents = ["pusher:member_added", "pusher:member_removed", "client-hi"];
    const aMembers = await subscribe(alice, "presence-lobby", presenceEvents);
    eq(aMembers, { count: 1, me: { id: "alice", info: { name: "Alice" } }, members: { alice: { name: "Alice" } } }, "alice alone in presence-lobby");
    const bMembers = await subscribe(bob, "presence-lobby", presenceEvents);
    eq(bMembers.count, 2, "bob's member count");
    eq(bMembers.members, { alice: { name: "Alice" }, bob: { name: "Bob" } }, "bob's members");
    eq(bMembers.me, { id: "bob", info: { name: "Bob" } }, "bob's me");
    ok("pusher-js: presence subscription_succeeded lists both members with user_info");
    const added = await next(alice, "presence-lobby pusher:member_added");
    eq(added.data, { id: "bob", info: { name: "Bob" } }, "member_added at alice");
    ok("pusher-js: member_added for the second page, with user_info");
    await bob.page.evaluate(() => globalThis.client.channel("presence-lobby").trigger("client-hi", { x: 1 }));
    const hi = await next(alice, "presence-lobby client-hi");
    check(hi.meta && hi.meta.user_id === "bob", `client event on presence metadata: ${JSON.stringify(hi)}`);
    ok("pusher-js: client event on the presence channel carries user_id");
    await bob.page.context().close();
    pages.pop();
    const removed = await next(alice, "presence-lobby pusher:member_removed");
    eq(removed.data, { id: "bob", info: { name: "Bob" } }, "member_removed at alice");
    const left = await alice.page.evaluate(() => globalThis.client.channel("presence-lobby").members.count);
    eq(left, 1, "alice's member count after bob left");
    ok("pusher-js: member_removed when the other page closes");

    // Idle for a while: pusher-js's pings are answered, it stays connected.
    await sleep(2500);
    check(alice.pings >= 1 && alice.pongs >= alice.pings - 1, `alice: ${alice.pings} pusher:ping sent, ${alice.pongs} pusher:pong received`);
    eq(await alice.page.evaluate(() => globalThis.client.connection.state), "connected", "alice's state after idling");
    eq(await alice.page.evaluate(() => globalThis.T.drain("state")), ["connected"], "alice's state changes since connecting");
    eq(await alice.page.evaluate(() => globalThis.T.drain("error")), [], "alice: connection errors");
    ok(`pusher-js: idle with activityTimeout 1 s: ${alice.pings} pusher:ping answered by pusher:pong (${alice.pongs}), still connected`);
    for (const p of [alice, bob]) {
      eq(p.authRequests, 0, `${p.label}: HTTP authorization requests`);
      failures.push(...p.errors);
    }
    ok("pusher-js: done");
  } finally {
    for (const p of pages) await p.page.context().close();
  }
}

// ---- (b) Laravel Echo with pusher-js as its client -----------------------

async function echoScenario() {
  const carol = await openPage("carol", { user_id: "carol", user_info: { id: "carol", name: "Carol" } }, { echo: true });
  const dave = await openPage("dave", { user_id: "dave", user_info: { id: "dave", name: "Dave" } }, { echo: true });
  const pages = [carol, dave];
  try {
    // Carol's Echo constructs its pusher-js (`Pusher`); dave's is handed one
    // already built (`client`), the other way Echo takes it.
    const connect = (p, how) =>
      p.page.evaluate(
        ({ key, how }) => {
          const EchoClass = globalThis.Echo.default;
          const options = {
            broadcaster: "pusher",
            key,
            cluster: "local",
            wsHost: location.hostname,
            wsPort: Number(location.port),
            forceTLS: false,
            enabledTransports: ["ws"],
            channelAuthorization: { customHandler: globalThis.T.authorize },
          };
          if (how === "Pusher") options.Pusher = globalThis.Pusher;
          else options.client = new globalThis.Pusher(key, options);
          globalThis.Echo = new EchoClass(options);
          return new Promise((resolve) => {
            const done = () => globalThis.Echo.connectionStatus() === "connected" && resolve(globalThis.Echo.socketId());
            globalThis.Echo.connector.pusher.connection.bind("connected", done);
            done();
          });
        },
        { key, how },
      );
    const cId = await connect(carol, "Pusher");
    const dId = await connect(dave, "client");
    check(/^\d+\.\d+$/.test(cId) && /^\d+\.\d+$/.test(dId) && cId !== dId, `Echo.socketId(): ${cId}, ${dId}`);
    ok(`echo: laravel-echo ${echoVersion} connected on both pages (options.Pusher and options.client; socket ids ${cId}, ${dId})`);

    // Echo.channel('orders').listen('.OrderShipped', ...), and a listener
    // with Echo's default namespace (App.Events) for `App\Events\...`.
    const listenOrders = (p) =>
      p.page.evaluate(
        () =>
          new Promise((resolve, reject) => {
            globalThis.Echo.channel("orders")
              .listen(".OrderShipped", (e) => globalThis.T.push("OrderShipped", e))
              .listen("OrderPaid", (e) => globalThis.T.push("OrderPaid", e))
              .subscribed(resolve)
              .error((e) => reject(new Error(`orders: ${JSON.stringify(e)}`)));
          }),
      );
    await Promise.all(pages.map(listenOrders));
    const order = { order: { id: 1, status: "shipped" } };
    await server.trigger("orders", "OrderShipped", order);
    for (const p of pages) eq(await next(p, "OrderShipped"), order, `${p.label}: .OrderShipped`);
    ok("echo: Echo.channel('orders').listen('.OrderShipped') receives the server SDK's event on both pages");
    await server.trigger("orders", "App\\Events\\OrderPaid", { order: { id: 1 } });
    for (const p of pages) eq(await next(p, "OrderPaid"), { order: { id: 1 } }, `${p.label}: OrderPaid`);
    ok("echo: listen('OrderPaid') receives App\\Events\\OrderPaid (default namespace)");

    // Echo.private('orders.1'): a server event, and whisper/listenForWhisper.
    const listenPrivate = (p) =>
      p.page.evaluate(
        () =>
          new Promise((resolve, reject) => {
            globalThis.Echo.private("orders.1")
              .listen(".OrderUpdated", (e) => globalThis.T.push("OrderUpdated", e))
              .listenForWhisper("typing", (e, meta) => globalThis.T.push("private typing", e))
              .subscribed(resolve)
              .error((e) => reject(new Error(`private-orders.1: ${JSON.stringify(e)}`)));
          }),
      );
    await Promise.all(pages.map(listenPrivate));
    for (const p of pages) check(p.authorized.includes("private-orders.1"), `${p.label}: private-orders.1 not authorized through the handler`);
    await server.trigger("private-orders.1", "OrderUpdated", { id: 1, status: "packed" });
    for (const p of pages) eq(await next(p, "OrderUpdated"), { id: 1, status: "packed" }, `${p.label}: .OrderUpdated`);
    ok("echo: Echo.private('orders.1') authorized by the custom handler and receives the server SDK's event");
    await carol.page.evaluate(() => globalThis.Echo.private("orders.1").whisper("typing", { name: "Carol" }));
    eq(await next(dave, "private typing"), { name: "Carol" }, "dave: carol's whisper");
    eq(await within(carol, "private typing"), [], "carol: her own whisper");
    await dave.page.evaluate(() => globalThis.Echo.private("orders.1").whisper("typing", { name: "Dave" }));
    eq(await next(carol, "private typing"), { name: "Dave" }, "carol: dave's whisper");
    ok("echo: whisper/listenForWhisper between the two pages on the private channel, not echoed");

    // Echo.join('chat'): here, joining, whisper with user_id, leaving.
    const join = (p) =>
      p.page.evaluate(
        () =>
          new Promise((resolve, reject) => {
            globalThis.Echo.join("chat")
              .here((users) => resolve(users))
              .joining((u) => globalThis.T.push("joining", u))
              .leaving((u) => globalThis.T.push("leaving", u))
              .listenForWhisper("typing", (e, meta) => globalThis.T.push("chat typing", { e, meta }))
              .error((e) => reject(new Error(`presence-chat: ${JSON.stringify(e)}`)));
          }),
      );
    const byId = (users) => [...users].sort((a, b) => a.id.localeCompare(b.id));
    eq(await join(carol), [{ id: "carol", name: "Carol" }], "carol's here()");
    const daveHere = await join(dave);
    eq(byId(daveHere), [{ id: "carol", name: "Carol" }, { id: "dave", name: "Dave" }], "dave's here()");
    ok("echo: Echo.join('chat').here() lists the members (user_info)");
    eq(await next(carol, "joining"), { id: "dave", name: "Dave" }, "carol's joining()");
    ok("echo: joining() at the first page when the second joins");
    await dave.page.evaluate(() => globalThis.Echo.join("chat").whisper("typing", { name: "Dave" }));
    const w = await next(carol, "chat typing");
    eq(w.e, { name: "Dave" }, "carol: dave's whisper on chat");
    check(w.meta && w.meta.user_id === "dave", `whisper on presence metadata: ${JSON.stringify(w.meta)}`);
    ok("echo: whisper on the presence channel reaches the other page, with user_id");
    await dave.page.evaluate(() => globalThis.Echo.leave("chat"));
    eq(await next(carol, "leaving"), { id: "dave", name: "Dave" }, "carol's leaving() after Echo.leave");
    ok("echo: leaving() when the other page calls Echo.leave('chat')");
    await dave.page.evaluate(() => globalThis.Echo.join("chat").here(() => {}));
    eq(await next(carol, "joining"), { id: "dave", name: "Dave" }, "carol's joining() after dave re-joined");
    await dave.page.context().close();
    pages.pop();
    eq(await next(carol, "leaving"), { id: "dave", name: "Dave" }, "carol's leaving() after dave's page closed");
    ok("echo: leaving() when the other page closes");

    for (const p of [carol, dave]) {
      eq(p.authRequests, 0, `${p.label}: requests to /broadcasting/auth`);
      failures.push(...p.errors);
    }
    ok("echo: no request to /broadcasting/auth (no Laravel backend)");
    ok("echo: done");
  } finally {
    for (const p of pages) await p.page.context().close();
  }
}

const started = Date.now();
try {
  for (const [name, part] of [
    ["pusher-js", pusherJsScenario],
    ["echo", echoScenario],
  ]) {
    try {
      await part();
    } catch (e) {
      failures.push(`${name}: ${e && e.stack ? e.stack : e}`);
    }
  }
} finally {
  await browser.close();
}
clearTimeout(watchdog);
if (failures.length) {
  console.error(failures.map((f) => `FAIL: ${f}`).join("\n"));
  process.exit(1);
}
console.log(`ok all checks passed in ${Date.now() - started} ms`);

// The official `centrifuge` npm SDK's browser bundles (JSON and, when the
// package ships it, protobuf) in Debian's headless Chromium against
// `wshub serve` with its development defaults. Nothing is served from here:
// the page is the server's own index (so `fetch` to the HTTP API is
// same-origin) with the SDK bundle injected. In the page, two anonymous
// clients subscribe to a `chat:` channel, exchange publications, see each
// other join and in presence, read history, then one is forced to reconnect
// twice (client.disconnect()/connect(), and its WebSocket closed under it)
// while publications are made through `/api/publish`; the resubscribe must
// recover exactly those, in order, with wasRecovering and recovered set.
//
// Usage: node sdk.mjs BASE_URL OUT_DIR. Prints `ok ...` per check; exits 1
// with every failure on stderr.
import { chromium } from "playwright-core";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// TRANSPORT: websocket (default), or http_stream / sse / webtransport with
// WebSocket blocked in the page (constructing one throws, and ws://
// requests are aborted), as behind a proxy that refuses upgrades.
//
// webtransport: BASE_URL is https://, and two more arguments follow: the
// certificate's SHA-256 (hex), which the page gives WebTransport as
// `serverCertificateHashes` (the SDK constructs `globalThis.WebTransport`,
// so the page puts a subclass there that adds them),
// and its SPKI SHA-256 (base64), with which Chromium trusts the page's own
// https:// load (--ignore-certificate-errors-spki-list).
const [base, outDir, transport = "websocket", certHash = "", spki = ""] = process.argv.slice(2);
if (
  !base || !outDir || !["websocket", "http_stream", "sse", "webtransport"].includes(transport) ||
  (transport === "webtransport" && (!certHash || !spki))
) {
  console.error("usage: node sdk.mjs BASE_URL OUT_DIR [websocket|http_stream|sse|webtransport CERT_SHA256_HEX SPKI_B64]");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "..", "sdk", "node_modules", "centrifuge", "dist");
const bundles = [{ codec: "json", file: join(dist, "centrifuge.js"), channel: "chat:sdk" }];
const protobufBundle = join(dist, "centrifuge.protobuf.js");
// SSE carries JSON only.
if (existsSync(protobufBundle) && transport !== "sse") {
  bundles.push({ codec: "protobuf", file: protobufBundle, channel: "chat:sdk-protobuf" });
}
if (!existsSync(bundles[0].file)) {
  console.error(`${bundles[0].file} is missing: run \`npm ci\` in tests/interop/sdk`);
  process.exit(2);
}

// Runs inside the page; everything it needs is in here. Throws on the first
// failed check; returns the log of passed checks.
async function scenario({ codec, channel, transport, certHash }) {
  const WAIT_MS = 10000;
  const log = [];
  const ok = (what) => log.push(`${codec}: ok ${what}`);
  const check = (cond, what) => {
    if (!cond) throw new Error(`${codec}: ${what}\nlog so far:\n${log.join("\n")}`);
  };
  const eq = (actual, expected, what) => {
    const a = JSON.stringify(actual);
    const e = JSON.stringify(expected);
    check(a === e, `${what}: expected ${e}, got ${a}`);
  };
  const within = (promise, what) => {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${codec}: timed out waiting for ${what}\n${log.join("\n")}`)), WAIT_MS);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  };
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

  // Protobuf carries publication data as bytes: JSON text inside.
  const te = new TextEncoder();
  const td = new TextDecoder();
  const enc = (v) => (codec === "protobuf" ? te.encode(JSON.stringify(v)) : v);
  const dec = (d) => (codec === "protobuf" ? JSON.parse(td.decode(d)) : d);

  const url =
    transport === "websocket"
      ? location.origin.replace(/^http/, "ws") + "/connection/websocket"
      : [{ transport, endpoint: `${location.origin}/connection/${transport}` }];
  const errors = [];
  if (transport === "webtransport") {
    // The SDK calls `new globalThis.WebTransport(url)`: the page swaps in a
    // subclass that pins the server's certificate by its hash, as a page
    // does for a short-lived self-signed one, and counts the sessions.
    const value = new Uint8Array(certHash.match(/../g).map((h) => parseInt(h, 16)));
    const Native = globalThis.WebTransport;
    class PinnedWebTransport extends Native {
      constructor(u, o = {}) {
        super(u, { ...o, serverCertificateHashes: [{ algorithm: "sha-256", value }] });
        globalThis.wshubWebTransports = (globalThis.wshubWebTransports || 0) + 1;
      }
    }
    globalThis.WebTransport = PinnedWebTransport;
  }
  function newClient(name, extra = {}) {
    const ev = {
      connected: new Queue(`${name} connected`),
      connecting: new Queue(`${name} connecting`),
      disconnected: new Queue(`${name} disconnected`),
    };
    const client = new Centrifuge(url, { timeout: 5000, name: "wshub-browser-sdk", ...extra });
    client.on("connected", (ctx) => ev.connected.push(ctx));
    client.on("connecting", (ctx) => ev.connecting.push(ctx));
    client.on("disconnected", (ctx) => ev.disconnected.push(ctx));
    client.on("error", (ctx) => errors.push(`${name}: ${JSON.stringify(ctx.error || ctx)}`));
    const sub = client.newSubscription(channel, { joinLeave: true, recoverable: true, positioned: true });
    const sev = {
      subscribed: new Queue(`${name} subscribed`),
      publication: new Queue(`${name} publication`),
      join: new Queue(`${name} join`),
    };
    sub.on("subscribed", (ctx) => sev.subscribed.push(ctx));
    sub.on("publication", (ctx) => sev.publication.push(ctx));
    sub.on("join", (ctx) => sev.join.push(ctx));
    sub.on("error", (ctx) => errors.push(`${name} sub: ${JSON.stringify(ctx.error || ctx)}`));
    return { name, client, ev, sub, sev };
  }

  async function apiPublish(data) {
    const res = await within(
      fetch("/api/publish", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ channel, data }),
      }),
      "POST /api/publish",
    );
    const body = await res.text();
    check(res.status === 200, `/api/publish: HTTP ${res.status} ${body}`);
    const v = JSON.parse(body);
    check(!v.error, `/api/publish: ${body}`);
    return v.result;
  }

  // Waits for the publications with the given texts, in this order, and no others.
  async function expectPublications(c, texts, what) {
    const got = [];
    for (let i = 0; i < texts.length; i++) {
      const p = await c.sev.publication.next(`${what} #${i + 1}`);
      got.push(p);
    }
    eq(got.map((p) => dec(p.data).text), texts, what);
    for (let i = 1; i < got.length; i++) {
      check(got[i].offset === got[i - 1].offset + 1, `${what}: offsets not consecutive: ${got.map((p) => p.offset)}`);
    }
    return got;
  }

  const a = newClient("alice");
  const b = newClient("bob", { minReconnectDelay: 1000, maxReconnectDelay: 2000 });
  try {
    a.client.connect();
    const aConn = await a.ev.connected.next("first connect");
    check(aConn.client && aConn.transport === transport, `alice connected over ${aConn.transport}, id ${aConn.client}`);
    if (transport === "websocket") {
      // The WebSocket itself: the protobuf bundle must have negotiated its subprotocol.
      const negotiated = a.client._transport && a.client._transport._transport && a.client._transport._transport.protocol;
      eq(negotiated, codec === "protobuf" ? "centrifuge-protobuf" : "", "negotiated WebSocket subprotocol");
    }
    a.sub.subscribe();
    const aSub = await a.sev.subscribed.next("subscribe");
    check(aSub.recoverable && aSub.positioned, `alice's subscribe reply: ${JSON.stringify(aSub)}`);
    check(!aSub.wasRecovering, "a first subscribe is not recovering");
    b.client.connect();
    const bConn = await b.ev.connected.next("first connect");
    check(bConn.client !== aConn.client, "the two clients got distinct ids");
    b.sub.subscribe();
    await b.sev.subscribed.next("subscribe");
    ok(`connected anonymously over ${aConn.transport} (${aConn.client}, ${bConn.client}) and subscribed to ${channel}`);

    // Alice may first see her own join (the server pushes joins to every subscriber).
    let join = await a.sev.join.next("bob's join");
    if (join.info.client === aConn.client) join = await a.sev.join.next("bob's join");
    eq(join.info.client, bConn.client, "join pushed to alice");
    ok("alice sees bob join");

    // Publications both ways, with the publisher's client info.
    await a.sub.publish(enc({ text: "hello from alice" }));
    const [p1] = await expectPublications(b, ["hello from alice"], "bob receives alice's publication");
    eq(p1.info && p1.info.client, aConn.client, "publisher info on bob's publication");
    await expectPublications(a, ["hello from alice"], "alice receives her own publication");
    await b.sub.publish(enc({ text: "hi alice" }));
    await expectPublications(a, ["hi alice"], "alice receives bob's publication");
    await expectPublications(b, ["hi alice"], "bob receives his own publication");
    ok("publications exchanged both ways");
    a.ev.connecting.drain(); // the one from connect()

    // Presence: both clients, as themselves.
    const presence = await within(a.sub.presence(), "presence");
    eq(Object.keys(presence.clients).sort(), [aConn.client, bConn.client].sort(), "presence clients");
    const stats = await within(b.sub.presenceStats(), "presence stats");
    eq(stats.numClients, 2, "presenceStats numClients");
    ok("presence lists both clients");

    // History: the two publications, in order, newest offset on top
    // (since alice's subscribe position, so a reused server's older history doesn't count)
    check(aSub.streamPosition && aSub.streamPosition.epoch, `alice's subscribe position: ${JSON.stringify(aSub)}`);
    const hist = await within(b.sub.history({ limit: 10, since: aSub.streamPosition }), "history");
    eq(hist.publications.map((p) => dec(p.data).text), ["hello from alice", "hi alice"], "history");
    eq(hist.offset, hist.publications[1].offset, "history top offset");
    check(hist.epoch, "history has an epoch");
    const rev = await within(a.sub.history({ limit: 1, reverse: true }), "reverse history");
    eq(rev.publications.map((p) => dec(p.data).text), ["hi alice"], "reverse history limit 1");
    ok("history returns both publications in order");

    // Forced reconnect 1: bob disconnects; publications through the HTTP API
    // meanwhile; bob connects again and his subscription recovers them.
    b.client.disconnect();
    await b.ev.disconnected.next("disconnect()");
    await apiPublish({ text: "missed 1" });
    await apiPublish({ text: "missed 2" });
    await apiPublish({ text: "missed 3" });
    await expectPublications(a, ["missed 1", "missed 2", "missed 3"], "alice receives the API publications");
    b.client.connect();
    await b.ev.connected.next("connect() again");
    let re = await b.sev.subscribed.next("resubscribe after connect()");
    check(re.wasRecovering && re.recovered, `resubscribe after connect(): ${JSON.stringify(re)}`);
    check(re.hasRecoveredPublications, "hasRecoveredPublications after connect()");
    await expectPublications(b, ["missed 1", "missed 2", "missed 3"], "bob recovers after connect()");
    ok("disconnect()/connect(): 3 publications recovered in order (wasRecovering, recovered)");

    // Forced reconnect 2: bob's WebSocket closes under the SDK, which
    // reconnects by itself (after at least minReconnectDelay).
    b.ev.connecting.drain();
    b.client._transport.close();
    const connecting = await b.ev.connecting.next("reconnect after the transport closed");
    await apiPublish({ text: "dropped 1" });
    await apiPublish({ text: "dropped 2" });
    check(transport !== "websocket" || connecting.code === 1, `connecting after the drop: ${JSON.stringify(connecting)}`);
    await b.ev.connected.next("automatic reconnect");
    re = await b.sev.subscribed.next("resubscribe after the drop");
    check(re.wasRecovering && re.recovered, `resubscribe after the drop: ${JSON.stringify(re)}`);
    await expectPublications(b, ["dropped 1", "dropped 2"], "bob recovers after the drop");
    ok(`transport closed (connecting code 1, transport closed): 2 publications recovered in order`);

    // Nothing duplicated or extra, and alice stayed up the whole time.
    await new Promise((r) => setTimeout(r, 300));
    eq(b.sev.publication.drain().map((p) => dec(p.data).text), [], "extra publications at bob");
    eq(a.ev.disconnected.drain().length + a.ev.connecting.drain().length, 0, "alice's connection events");
    await expectPublications(a, ["dropped 1", "dropped 2"], "alice receives the second batch live");
    eq(a.sev.publication.drain().length, 0, "extra publications at alice");
    eq(errors, [], "SDK error events");
    ok("no duplicates, no extra publications, no SDK errors");
  } finally {
    a.client.disconnect();
    b.client.disconnect();
  }
  return log;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    ...(spki ? [`--ignore-certificate-errors-spki-list=${spki}`] : []),
  ],
});
const failures = [];
const summary = [];
try {
  for (const { codec, file, channel } of bundles) {
    const page = await (await browser.newContext()).newPage();
    if (transport !== "websocket") {
      await page.addInitScript(() => {
        globalThis.WebSocket = function () {
          throw new Error("WebSocket is blocked here");
        };
      });
      await page.route(/^wss?:/, (route) => route.abort());
    }
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    try {
      await page.goto(`${base}/`);
      await page.addScriptTag({ path: file });
      const kind = await page.evaluate(() => typeof globalThis.Centrifuge);
      if (kind !== "function") throw new Error(`the ${codec} bundle defined no Centrifuge class (${kind})`);
      const log = await page.evaluate(scenario, { codec, channel: `${channel}-${transport}`, transport, certHash });
      if (transport === "webtransport") {
        const opened = await page.evaluate(() => globalThis.wshubWebTransports || 0);
        if (opened < 3) throw new Error(`the SDK opened ${opened} WebTransport sessions, expected at least 3`);
        log.push(`${codec}: ok ${opened} WebTransport sessions opened by the SDK`);
      }
      for (const line of log) console.log(line);
      summary.push(...log);
    } catch (e) {
      failures.push(`${codec}: ${e.message || e}`);
    }
    for (const e of pageErrors) failures.push(`${codec}: page error: ${e}`);
    await page.close();
  }
} finally {
  await browser.close();
}
writeFileSync(join(outDir, "sdk.log"), summary.concat(failures).join("\n") + "\n");
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log(`ok: ${bundles.map((b) => b.codec).join(" and ")} bundles passed`);

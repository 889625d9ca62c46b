// wshub.js's transports in Debian's headless Chromium. One scenario per run:
//
//   node transports.mjs forced BASE OUT_DIR
//     The demo chat over each forced transport (websocket, http_stream, sse,
//     long_poll): the page shows the transport, receives API publications,
//     publishes, and recovers what was published while the server had
//     disconnected it; on long_poll, poll answers are also lost on the way
//     (fetched from the server, then failed in the page) and every
//     publication still arrives once and in order.
//   node transports.mjs blocked BASE
//     WebSocket blocked in the page (refused at once, or hanging): "auto"
//     ends up on http_stream, remembers it across a reconnect and a reload.
//   node transports.mjs buffered PROXY_BASE API_BASE N
//     Behind a proxy that holds streamed answers: "auto" falls back to
//     long_poll; N publications made through the API at a steady rate all
//     arrive, in order, once; prints the publish-to-receive latency.
//   node transports.mjs pings BASE SECONDS
//     One client per transport in one page, for SECONDS against a server
//     that pings every second: every ping is answered (through /emulation
//     on the HTTP transports), nobody is disconnected, a publication still
//     reaches all four at the end.
//   node transports.mjs uni-sse BASE TOKEN CHANNEL
//     A plain EventSource on /connection/uni_sse follows CHANNEL (the
//     token's `channels` claim subscribes it).
//
// Prints "ok ..." lines; exits non-zero with a message on the first thing
// that went wrong. Every wait is bounded.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [scenario, ...args] = process.argv.slice(2);
const TRANSPORTS = ["websocket", "http_stream", "sse", "long_poll"];
const WAIT = 20000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const failures = [];
const pageErrors = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(cond, what) {
  if (!cond) failures.push(what);
  return cond;
}

async function newPage(name, init) {
  const context = await browser.newContext();
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  page.consoleLines = [];
  page.on("console", (m) => page.consoleLines.push(m.text()));
  return page;
}

async function api(base, method, body) {
  const res = await fetch(`${base}/api/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method}: HTTP ${res.status}`);
  const out = await res.json();
  if (out.error) throw new Error(`${method}: ${JSON.stringify(out.error)}`);
  return out;
}

// ---- the demo chat ----

async function joinChat(page, url, name, limit = WAIT) {
  await page.goto(url);
  await page.fill("#name", name);
  await page.click("#join");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "connected", null, { timeout: limit });
  // Recorders: every publication push the transport delivered (before the
  // subscription's own duplicate check) and every publication event.
  await page.evaluate(() => {
    const { client, sub } = window.wshubChat;
    window.t = { raw: [], pubs: [], connected: 0, fallbacks: [] };
    const onPush = client._onPush.bind(client);
    client._onPush = (push) => {
      if (push.pub && push.channel === sub.channel) window.t.raw.push(push.pub.data && push.pub.data.text);
      onPush(push);
    };
    sub.on("publication", (ctx) => window.t.pubs.push(ctx.data && ctx.data.text));
    client.on("connected", () => window.t.connected++);
    client.on("fallback", (ctx) => window.t.fallbacks.push(ctx.transport));
  });
}

async function waitForMessage(page, text, what) {
  try {
    await page.waitForFunction(
      (t) => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes(t)),
      text, { timeout: WAIT });
    return true;
  } catch {
    failures.push(`${what}: "${text}" never appeared`);
    return false;
  }
}

async function say(page, text) {
  await page.fill("#message", text);
  await page.click("#send");
}

async function transportShown(page) {
  return page.evaluate(() => ({
    shown: document.querySelector("#transport-in-use").dataset.transport,
    text: document.querySelector("#transport-in-use").textContent,
    client: window.wshubChat.client.transport,
    select: document.querySelector("#transport").value,
  }));
}

// The server drops the page's connection (a code that means "reconnect");
// `during` runs while it is away.
async function forceReconnect(page, base, during) {
  const before = await page.evaluate(() => window.t.connected);
  const clientId = await page.evaluate(() => window.wshubChat.client.clientId);
  await api(base, "disconnect", { user: "", client: clientId, disconnect: { code: 4001, reason: "test reconnect" } });
  await during();
  await page.waitForFunction((n) => window.t.connected > n && document.querySelector("#status").textContent === "connected",
    before, { timeout: WAIT });
}

async function forced(base, outDir) {
  mkdirSync(outDir, { recursive: true });
  for (const transport of TRANSPORTS) {
    const tag = `[${transport}]`;
    const failed = failures.length;
    const page = await newPage(transport);
    try {
      await joinChat(page, `${base}/chat.html?transport=${transport}`, `user-${transport}`);
      const shown = await transportShown(page);
      check(shown.shown === transport && shown.client === transport && shown.select === transport && shown.text.includes(transport),
        `${tag} the page does not show the transport in use: ${JSON.stringify(shown)}`);

      await api(base, "publish", { channel: "chat:lobby", data: { name: "api", text: `${transport}: from the api` } });
      await waitForMessage(page, `${transport}: from the api`, `${tag} an API publication`);
      await say(page, `${transport}: from the page`);
      await waitForMessage(page, `${transport}: from the page`, `${tag} the page's own publication`);
      try {
        await page.waitForFunction(() => [...document.querySelectorAll("#presence li")].some((li) => li.textContent.endsWith("(you)")),
          null, { timeout: WAIT });
      } catch {
        failures.push(`${tag} presence does not list the page itself`);
      }

      // Forced reconnect: two publications while the connection is down.
      const missed = [`${transport}: missed one`, `${transport}: missed two`];
      await forceReconnect(page, base, async () => {
        for (const text of missed) await api(base, "publish", { channel: "chat:lobby", data: { name: "api", text } });
      });
      for (const text of missed) await waitForMessage(page, text, `${tag} recovery after the forced reconnect`);
      const after = await page.evaluate(() => ({ pubs: window.t.pubs, note: document.querySelector("#notice").textContent }));
      const i1 = after.pubs.indexOf(missed[0]), i2 = after.pubs.indexOf(missed[1]);
      check(i1 >= 0 && i2 > i1, `${tag} missed publications out of order: ${JSON.stringify(after.pubs)}`);
      for (const text of missed) {
        check(after.pubs.filter((p) => p === text).length === 1, `${tag} "${text}" delivered ${after.pubs.filter((p) => p === text).length} times`);
      }
      check(/Reconnected: recovered \d+ message/.test(after.note), `${tag} notice after the reconnect: ${JSON.stringify(after.note)}`);
      const again = await transportShown(page);
      check(again.client === transport && again.shown === transport, `${tag} reconnected over ${JSON.stringify(again)}`);
      await say(page, `${transport}: after the reconnect`);
      await waitForMessage(page, `${transport}: after the reconnect`, `${tag} publishing after the reconnect`);

      if (transport === "long_poll") await lostPollAnswers(page, base, tag);
      await page.screenshot({ path: `${outDir}/transport-${transport}.png` });
    } catch (e) {
      failures.push(`${tag} unexpected: ${e.stack || e}`);
    } finally {
      await page.context().close();
    }
    if (failures.length === failed) console.log(`ok ${transport}: chat, publish, recovery after a forced reconnect`);
  }
}

// Every other poll answer is fetched from the server and then failed in the
// page, so the server has sent it but the client never got it.
async function lostPollAnswers(page, base, tag) {
  let polls = 0, lostWithMessages = 0;
  await page.route("**/connection/long_poll/poll", async (route) => {
    if (++polls % 2 === 1) return route.continue();
    try {
      const res = await route.fetch({ timeout: 40000 });
      const answer = await res.json();
      if (answer.messages && answer.messages.length) lostWithMessages++;
    } catch { /* the page went away */ }
    return route.abort("failed").catch(() => {});
  });
  const texts = [];
  for (let i = 1; i <= 12; i++) {
    const text = `long_poll: through lost answers ${i}`;
    texts.push(text);
    await api(base, "publish", { channel: "chat:lobby", data: { name: "api", text } });
    await sleep(150);
  }
  try {
    await page.waitForFunction((last) => window.t.raw.includes(last), texts[texts.length - 1], { timeout: WAIT });
  } catch {
    failures.push(`${tag} the last publication never came through the lost answers`);
  }
  await page.unroute("**/connection/long_poll/poll");
  const raw = (await page.evaluate(() => window.t.raw)).filter((t) => typeof t === "string" && t.includes("through lost answers"));
  check(JSON.stringify(raw) === JSON.stringify(texts), `${tag} through lost answers the pushes were ${JSON.stringify(raw)}`);
  check(lostWithMessages >= 2, `${tag} only ${lostWithMessages} answers with messages were lost (of ${polls} polls): the test proved nothing`);
  if (lostWithMessages >= 2) console.log(`ok long_poll: ${lostWithMessages} answers with messages lost, all ${texts.length} publications once and in order`);
}

// ---- WebSocket blocked: auto ends up on http_stream ----

const BLOCKS = {
  // A proxy or extension that refuses the upgrade: fails at once.
  refused: () => {
    window.WebSocket = class {
      constructor() {
        this.readyState = 0;
        setTimeout(() => {
          this.readyState = 3;
          if (this.onerror) this.onerror(new Event("error"));
          if (this.onclose) this.onclose({ code: 1006, reason: "" });
        }, 20);
      }
      send() { throw new Error("not open"); }
      close() { this.readyState = 3; }
    };
  },
  // A WebSocket that never opens (and never fails).
  hangs: () => {
    window.WebSocket = class {
      constructor() { this.readyState = 0; }
      send() { throw new Error("not open"); }
      close() { this.readyState = 3; }
    };
  },
};

async function blocked(base) {
  for (const [how, init] of Object.entries(BLOCKS)) {
    const tag = `[websocket ${how}]`;
    const failed = failures.length;
    const page = await newPage(how, init);
    try {
      const t0 = Date.now();
      await joinChat(page, `${base}/chat.html`, `blocked-${how}`);
      const took = Date.now() - t0;
      const shown = await transportShown(page);
      check(shown.client === "http_stream" && shown.shown === "http_stream" && shown.select === "auto",
        `${tag} auto connected over ${JSON.stringify(shown)}`);
      check(page.consoleLines.some((l) => l.startsWith("transport websocket did not work")),
        `${tag} no fallback from websocket was reported: ${JSON.stringify(page.consoleLines)}`);
      if (how === "hangs") check(took >= 2500, `${tag} connected in ${took} ms, before the stall timeout`);
      await say(page, `auto ${how}: hello`);
      await waitForMessage(page, `auto ${how}: hello`, `${tag} publishing over the fallback`);

      // Remembered: a reconnect and a reload go straight to http_stream.
      await forceReconnect(page, base, async () => {});
      const fallbacks = await page.evaluate(() => window.t.fallbacks);
      check(fallbacks.length === 0, `${tag} the reconnect tried ${JSON.stringify(fallbacks)} before http_stream`);
      check((await transportShown(page)).client === "http_stream", `${tag} reconnected over another transport`);
      const stored = await page.evaluate(() => Object.entries(sessionStorage).filter(([k]) => k.startsWith("wshub.transport")));
      check(stored.length === 1 && stored[0][1] === "http_stream", `${tag} sessionStorage: ${JSON.stringify(stored)}`);
      page.consoleLines.length = 0;
      const t1 = Date.now();
      await page.reload();
      await page.fill("#name", `blocked-${how}`);
      await page.click("#join");
      await page.waitForFunction(() => document.querySelector("#status").textContent === "connected", null, { timeout: WAIT });
      const took2 = Date.now() - t1;
      check((await transportShown(page)).client === "http_stream", `${tag} after a reload`);
      check(!page.consoleLines.some((l) => l.startsWith("transport ")), `${tag} a reload fell back again: ${JSON.stringify(page.consoleLines)}`);
      if (failures.length === failed) console.log(`ok auto with websocket ${how}: http_stream in ${took} ms, remembered (reload connected in ${took2} ms)`);
    } catch (e) {
      failures.push(`${tag} unexpected: ${e.stack || e}`);
    } finally {
      await page.context().close();
    }
  }
}

// ---- behind a buffering proxy: auto falls back to long_poll ----

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function buffered(proxy, apiBase, n) {
  // The demo page says which transport it ended up on.
  const chat = await newPage("chat behind the proxy");
  try {
    const t0 = Date.now();
    await joinChat(chat, `${proxy}/chat.html`, "behind-proxy", 40000);
    const took = Date.now() - t0;
    const shown = await transportShown(chat);
    check(shown.client === "long_poll" && shown.shown === "long_poll", `chat behind the proxy is on ${JSON.stringify(shown)}`);
    const tried = chat.consoleLines.filter((l) => l.startsWith("transport ")).map((l) => l.split(" ")[1]);
    check(JSON.stringify(tried) === JSON.stringify(["websocket", "http_stream", "sse"]), `chat fell back from ${JSON.stringify(tried)}`);
    await say(chat, "hello through the proxy");
    await waitForMessage(chat, "hello through the proxy", "chat publishing through the proxy");
    console.log(`ok chat behind the proxy: ${tried.join(" -> ")} -> long_poll in ${took} ms`);
  } catch (e) {
    failures.push(`chat behind the proxy: ${e.stack || e}`);
  } finally {
    await chat.context().close();
  }

  // A page with its own client (defaults: auto, the page's origin).
  const page = await newPage("latency");
  const channel = "latency";
  try {
    await page.goto(`${proxy}/index.html`);
    await page.evaluate(async (channel) => {
      const { WshubClient } = await import("/wshub.js");
      const client = new WshubClient("");
      window.t = { got: [], fallbacks: [], connected: [] };
      const onPush = client._onPush.bind(client);
      client._onPush = (push) => {
        if (push.pub && push.channel === channel) window.t.got.push([push.pub.data.n, Date.now() - push.pub.data.ts]);
        onPush(push);
      };
      client.on("fallback", (ctx) => window.t.fallbacks.push(ctx.transport));
      client.on("connected", (ctx) => window.t.connected.push(ctx.transport));
      const sub = client.newSubscription(channel);
      sub.subscribe();
      client.connect();
      window.client = client;
      await sub.ready(40000);
    }, channel);
    const state = await page.evaluate(() => ({ transport: window.client.transport, fallbacks: window.t.fallbacks, connected: window.t.connected }));
    check(state.transport === "long_poll" && JSON.stringify(state.fallbacks) === JSON.stringify(["websocket", "http_stream", "sse"]),
      `the latency client: ${JSON.stringify(state)}`);
    // N publications at a steady rate (one every 20 ms), each stamped.
    const every = 20;
    const start = Date.now();
    for (let i = 1; i <= n; i++) {
      const due = start + (i - 1) * every;
      if (due > Date.now()) await sleep(due - Date.now());
      await api(apiBase, "publish", { channel, data: { n: i, ts: Date.now() } });
    }
    const rate = (n / ((Date.now() - start) / 1000)).toFixed(0);
    try {
      await page.waitForFunction((n) => window.t.got.length >= n, n, { timeout: WAIT });
    } catch { /* reported below */ }
    await sleep(500); // anything extra (a duplicate) would come now
    const got = await page.evaluate(() => window.t.got);
    const seq = got.map(([i]) => i);
    const expected = Array.from({ length: n }, (_, i) => i + 1);
    if (check(JSON.stringify(seq) === JSON.stringify(expected),
      `received ${seq.length} of ${n}: first differences at ${seq.findIndex((v, i) => v !== i + 1)}: ${JSON.stringify(seq.slice(0, 50))}`)) {
      const lat = got.map(([, l]) => l).sort((a, b) => a - b);
      console.log(`ok long_poll behind the buffering proxy: ${n} publications at ${rate}/s, every one once and in order`);
      console.log(`latency long_poll via nginx (publish to receive, ms): n=${n} p50=${percentile(lat, 50)} p90=${percentile(lat, 90)} p99=${percentile(lat, 99)} max=${lat[lat.length - 1]}`);
    }
    check((await page.evaluate(() => window.t.connected.length)) === 1, "the latency client reconnected during the run");
  } catch (e) {
    failures.push(`latency run: ${e.stack || e}`);
  } finally {
    await page.context().close();
  }
}

// ---- pings and pongs on every transport ----

async function pings(base, seconds) {
  const page = await newPage("pings");
  try {
    await page.goto(`${base}/index.html`);
    await page.evaluate(async (transports) => {
      const { WshubClient } = await import("/wshub.js");
      window.t = {};
      await Promise.all(transports.map(async (transport) => {
        const client = new WshubClient("", { transport });
        const rec = { connected: 0, lost: [], pings: 0, got: [], client };
        window.t[transport] = rec;
        const onReply = client._onReply.bind(client);
        client._onReply = (reply) => { if (Object.keys(reply).length === 0) rec.pings++; onReply(reply); };
        client.on("connected", () => rec.connected++);
        client.on("connecting", (ctx) => { if (ctx.code) rec.lost.push(ctx); });
        client.on("disconnected", (ctx) => rec.lost.push(ctx));
        const sub = client.newSubscription("pings");
        sub.on("publication", (ctx) => rec.got.push(ctx.data));
        sub.subscribe();
        client.connect();
        await sub.ready(10000);
      }));
    }, TRANSPORTS);
    await sleep(seconds * 1000);
    await api(base, "publish", { channel: "pings", data: { last: true } });
    try {
      await page.waitForFunction((ts) => ts.every((t) => window.t[t].got.length === 1), TRANSPORTS, { timeout: WAIT });
    } catch { /* reported below */ }
    const recs = await page.evaluate((ts) => Object.fromEntries(ts.map((t) => {
      const { connected, lost, pings, got } = window.t[t];
      return [t, { connected, lost, pings, got }];
    })), TRANSPORTS);
    for (const [t, r] of Object.entries(recs)) {
      check(r.connected === 1 && r.lost.length === 0, `[${t}] lost its connection while pinged: ${JSON.stringify(r)}`);
      check(r.pings >= seconds - 2, `[${t}] only ${r.pings} pings in ${seconds} s: ${JSON.stringify(r)}`);
      check(r.got.length === 1, `[${t}] the publication after the pings: ${JSON.stringify(r)}`);
    }
    if (failures.length === 0) {
      console.log(`ok pings: ${Object.entries(recs).map(([t, r]) => `${t} ${r.pings}`).join(", ")} pings answered in ${seconds} s, no reconnect`);
    }
  } catch (e) {
    failures.push(`pings: ${e.stack || e}`);
  } finally {
    await page.context().close();
  }
}

// ---- a plain EventSource on uni_sse ----

async function uniSse(base, token, channel) {
  const page = await newPage("uni_sse");
  try {
    await page.goto(`${base}/index.html`);
    await page.evaluate(({ token }) => {
      window.events = [];
      const es = new EventSource("/connection/uni_sse?cf_connect=" + encodeURIComponent(JSON.stringify({ token })));
      es.onmessage = (ev) => window.events.push(JSON.parse(ev.data));
      es.onerror = () => window.events.push({ error: es.readyState });
      window.es = es;
    }, { token });
    await page.waitForFunction(() => window.events.some((e) => e.connect), null, { timeout: WAIT });
    const connect = await page.evaluate(() => window.events.find((e) => e.connect).connect);
    check(connect.subs && connect.subs[channel], `the connect push does not list ${channel}: ${JSON.stringify(connect)}`);
    for (let i = 1; i <= 5; i++) await api(base, "publish", { channel, data: { n: i } });
    try {
      await page.waitForFunction((c) => window.events.filter((e) => e.channel === c && e.pub).length >= 5, channel, { timeout: WAIT });
    } catch { /* reported below */ }
    const events = await page.evaluate(() => { window.es.close(); return window.events; });
    const ns = events.filter((e) => e.channel === channel && e.pub).map((e) => e.pub.data.n);
    check(JSON.stringify(ns) === "[1,2,3,4,5]", `uni_sse publications: ${JSON.stringify(events)}`);
    check(!events.some((e) => e.error !== undefined || e.disconnect), `uni_sse stream broke: ${JSON.stringify(events)}`);
    if (failures.length === 0) console.log(`ok uni_sse: a plain EventSource followed ${channel} (${ns.length} publications in order)`);
  } catch (e) {
    failures.push(`uni_sse: ${e.stack || e}`);
  } finally {
    await page.context().close();
  }
}

try {
  switch (scenario) {
    case "forced": await forced(args[0], args[1]); break;
    case "blocked": await blocked(args[0]); break;
    case "buffered": await buffered(args[0], args[1], Number(args[2] || 200)); break;
    case "pings": await pings(args[0], Number(args[1] || 6)); break;
    case "uni-sse": await uniSse(args[0], args[1], args[2]); break;
    default: failures.push(`unknown scenario ${JSON.stringify(scenario)} (forced, blocked, buffered, pings, uni-sse)`);
  }
} catch (e) {
  failures.push(`unexpected: ${e.stack || e}`);
} finally {
  await browser.close();
}
for (const e of pageErrors) failures.push(`page error: ${e}`);
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}

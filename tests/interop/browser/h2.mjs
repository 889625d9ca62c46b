// The demo chat in Debian's headless Chromium over HTTPS, with its
// WebSocket on HTTP/2 (RFC 8441 extended CONNECT). The certificate comes
// from `wshub gen-cert` and is trusted by its SPKI hash
// (--ignore-certificate-errors-spki-list), so Chromium treats the
// connection as valid and may pool the WebSocket onto it.
//
//   node h2.mjs BASE SPKI_B64 OUT_DIR
//
// Two pages (alice and bob) load BASE/chat.html?transport=websocket, join
// and chat both ways. What Chromium did is read from the DevTools protocol,
// not assumed: the page's own response protocol (Network.responseReceived,
// `h2`), and for each WebSocket the handshake status
// (Network.webSocketHandshakeResponseReceived: 200 for a WebSocket over
// HTTP/2, 101 over HTTP/1.1). Prints "cdp ..." lines with what was seen and
// "ok ..." lines; exits non-zero with a message on the first thing that
// went wrong. Every wait is bounded.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, spki, outDir] = process.argv.slice(2);
if (!base || !spki || !outDir) {
  console.error("usage: node h2.mjs BASE SPKI_B64 OUT_DIR");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const WAIT = 20000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});
const failures = [];
const pageErrors = [];
const pages = [];

function check(cond, what) {
  if (!cond) failures.push(what);
  return cond;
}

// A page in its own context (its own connections) with a CDP session that
// records the document's response and every WebSocket's handshake.
async function open(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  const rec = { name, documents: [], sockets: new Map(), failed: [] };
  const cdp = await context.newCDPSession(page);
  cdp.on("Network.responseReceived", (e) => {
    if (e.type === "Document") {
      rec.documents.push({ url: e.response.url, status: e.response.status, protocol: e.response.protocol });
    }
  });
  cdp.on("Network.webSocketCreated", (e) => rec.sockets.set(e.requestId, { url: e.url }));
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) => {
    const s = rec.sockets.get(e.requestId) || {};
    s.status = e.response.status;
    s.statusText = e.response.statusText;
    rec.sockets.set(e.requestId, s);
  });
  cdp.on("Network.webSocketFrameReceived", (e) => {
    const s = rec.sockets.get(e.requestId);
    if (s) s.framesIn = (s.framesIn || 0) + 1;
  });
  cdp.on("Network.webSocketFrameError", (e) => rec.failed.push(e.errorMessage));
  cdp.on("Network.loadingFailed", (e) => rec.failed.push(`${e.type}: ${e.errorText}`));
  await cdp.send("Network.enable");
  page.rec = rec;
  pages.push(page);

  await page.goto(`${base}/chat.html?transport=websocket`);
  await page.fill("#name", name);
  await page.click("#join");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "connected", null, { timeout: WAIT });
  // The page's own view of the protocol, beside the DevTools one.
  rec.nextHop = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
  rec.transport = await page.evaluate(() => window.wshubChat.client.transport);
  return page;
}

async function waitForMessage(page, text, what) {
  try {
    await page.waitForFunction(
      (t) => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes(t)),
      text, { timeout: WAIT });
  } catch {
    failures.push(`${what}: "${text}" never appeared`);
  }
}

async function say(page, text) {
  await page.fill("#message", text);
  await page.click("#send");
}

function report(page) {
  const rec = page.rec;
  for (const d of rec.documents) {
    console.log(`cdp ${rec.name} document: protocol=${d.protocol} status=${d.status} url=${d.url}`);
  }
  console.log(`cdp ${rec.name} navigation nextHopProtocol=${rec.nextHop} client transport=${rec.transport}`);
  for (const s of rec.sockets.values()) {
    console.log(`cdp ${rec.name} websocket: status=${s.status} statusText=${JSON.stringify(s.statusText ?? "")} url=${s.url} frames in=${s.framesIn || 0}`);
  }
  for (const f of rec.failed) console.log(`cdp ${rec.name} failed: ${f}`);

  const tag = `[${rec.name}]`;
  check(rec.documents.length >= 1, `${tag} no document response was seen over CDP`);
  for (const d of rec.documents) {
    check(d.protocol === "h2", `${tag} the page came over ${JSON.stringify(d.protocol)}, not h2: ${JSON.stringify(d)}`);
  }
  check(rec.nextHop === "h2", `${tag} navigation nextHopProtocol is ${JSON.stringify(rec.nextHop)}`);
  check(rec.transport === "websocket", `${tag} the chat client is on ${JSON.stringify(rec.transport)}`);
  const sockets = [...rec.sockets.values()].filter((s) => s.url && s.url.endsWith("/connection/websocket"));
  check(sockets.length === 1, `${tag} expected one WebSocket to /connection/websocket, saw ${JSON.stringify([...rec.sockets.values()])}`);
  for (const s of sockets) {
    check(s.url.startsWith("wss://"), `${tag} the WebSocket is not wss: ${s.url}`);
    check(s.status === 200,
      `${tag} WebSocket handshake status ${s.status} (200 = HTTP/2 extended CONNECT, 101 = HTTP/1.1 upgrade): ${JSON.stringify(s)}`);
    check((s.framesIn || 0) > 0, `${tag} no frame came in on the WebSocket`);
  }
}

try {
  const alice = await open("alice");
  const bob = await open("bob");
  await waitForMessage(alice, "bob joined", "alice sees bob join");
  await say(alice, "hello over h2 from alice");
  await waitForMessage(bob, "hello over h2 from alice", "bob receives alice's message");
  await waitForMessage(alice, "hello over h2 from alice", "alice sees her own message come back");
  await say(bob, "hi alice, h2 here too");
  await waitForMessage(alice, "hi alice, h2 here too", "alice receives bob's message");
  await alice.screenshot({ path: `${outDir}/h2-chat-alice.png` });
} catch (e) {
  failures.push(`unexpected: ${e.stack || e}`);
}
// What Chromium did, also when something above failed.
try {
  for (const page of pages) report(page);
} catch (e) {
  failures.push(`report: ${e.stack || e}`);
} finally {
  await browser.close();
}
if (failures.length === 0 && pages.length === 2) {
  console.log("ok chat over h2: alice and bob chatted on WebSockets over HTTP/2 (status 200), pages over h2");
}
for (const e of pageErrors) failures.push(`page error: ${e}`);
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}

// Two Chromium pages chat through `wshub serve`; one loses its connection
// and recovers what was published meanwhile; one reloads and gets the room's
// history back. Usage: node chat.mjs BASE_URL OUT_DIR. Exits non-zero with a
// message on the first thing a user would notice going wrong.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error("usage: node chat.mjs BASE_URL OUT_DIR");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const failures = [];
const pageErrors = [];

async function open(name) {
  const page = await (await browser.newContext()).newPage();
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(`${base}/chat.html`);
  // Before joining nothing connects: the badge must not say "disconnected".
  const before = await page.$eval("#status", (el) => [el.className, el.textContent]);
  if (before[0].includes("disconnected") || /disconnected/.test(before[1])) {
    failures.push(`${name}: badge before joining reads ${JSON.stringify(before)}`);
  }
  await page.fill("#name", name);
  await page.click("#join");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "connected", null, { timeout: 20000 });
  return page;
}

async function waitForMessage(page, text, what) {
  try {
    await page.waitForFunction(
      (t) => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes(t)),
      text,
      { timeout: 20000 },
    );
  } catch {
    failures.push(`${what}: "${text}" never appeared`);
  }
}

async function say(page, text) {
  await page.fill("#message", text);
  await page.click("#send");
}

async function apiPublish(text) {
  const res = await fetch(`${base}/api/publish`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ channel: "chat:lobby", data: { name: "api", text } }),
  });
  if (!res.ok) throw new Error(`publish: HTTP ${res.status}`);
}

try {
  const alice = await open("alice");
  const bob = await open("bob");
  // Each page lists the other by the name chosen at join, before anyone spoke.
  for (const [page, who, other] of [[alice, "alice", "bob"], [bob, "bob", "alice"]]) {
    try {
      await page.waitForFunction(
        (n) => [...document.querySelectorAll("#presence li")].some((li) => li.textContent === n),
        other,
        { timeout: 20000 },
      );
    } catch {
      const names = await page.$$eval("#presence li", (lis) => lis.map((li) => li.textContent));
      failures.push(`${who}'s presence list does not name ${other} before a message: ${JSON.stringify(names)}`);
    }
  }
  await waitForMessage(alice, "bob joined", "alice sees bob join");
  await say(alice, "hello from alice");
  await waitForMessage(bob, "hello from alice", "bob receives alice's message");
  await say(bob, "hi alice");
  await waitForMessage(alice, "hi alice", "alice receives bob's message");
  // Bob's own message comes back to him as a publication too: once he
  // shows it, his position is past it, so the recovery below is of the two
  // messages published while he is away (delivery to each subscriber is
  // asynchronous: alice may see it before bob does).
  await waitForMessage(bob, "hi alice", "bob sees his own message");
  try {
    await alice.waitForFunction(() => document.querySelectorAll("#presence li").length === 2, null, { timeout: 20000 });
  } catch {
    failures.push("presence does not list both users");
  }

  // Bob's connection drops; two messages are published while he is away.
  await bob.evaluate(() => window.wshubChat.client._ws.close());
  await apiPublish("missed one");
  await apiPublish("missed two");
  await waitForMessage(bob, "missed one", "bob recovers after the drop");
  await waitForMessage(bob, "missed two", "bob recovers after the drop");
  const order = await bob.$$eval("#messages li", (lis) => lis.map((li) => li.textContent));
  const i1 = order.findIndex((t) => t.includes("missed one"));
  const i2 = order.findIndex((t) => t.includes("missed two"));
  if (!(i1 >= 0 && i2 > i1)) failures.push(`recovered messages out of order: ${JSON.stringify(order)}`);
  if (order.filter((t) => t.includes("missed one")).length !== 1) failures.push("a recovered message was shown twice");
  const note = await bob.textContent("#notice");
  if (!/recovered 2 messages/.test(note)) failures.push(`bob's notice after recovery: ${JSON.stringify(note)}`);
  await bob.screenshot({ path: `${outDir}/chat-bob-recovered.png` });

  // Bob reloads; alice writes meanwhile; the room's history comes back.
  await bob.reload();
  await say(alice, "written during the reload");
  await bob.fill("#name", "bob");
  await bob.click("#join");
  await waitForMessage(bob, "written during the reload", "bob sees history after reloading");
  await waitForMessage(bob, "hello from alice", "bob sees history after reloading");
  await alice.screenshot({ path: `${outDir}/chat-alice.png` });
  await bob.screenshot({ path: `${outDir}/chat-bob-reloaded.png` });
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
console.log(`ok: screenshots in ${outDir}`);

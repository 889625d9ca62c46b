// A plain browser EventSource (no SDK) follows a channel over wshub's
// `uni_sse` transport in Debian's headless Chromium: the page opens
// `/connection/uni_sse?cf_connect={"token":TOKEN}` (the token's `channels`
// claim subscribes it), then publishes N messages through `/api/publish`
// (the server API key is given); every one must arrive as a bare push, in
// order, once.
//
// Usage: node uni_sse.mjs BASE_URL TOKEN API_KEY CHANNEL. Prints `ok ...`;
// exits 1 with the failure on stderr.
import { chromium } from "playwright-core";

const [base, token, apiKey, channel] = process.argv.slice(2);
if (!base || !token || !apiKey || !channel) {
  console.error("usage: node uni_sse.mjs BASE_URL TOKEN API_KEY CHANNEL");
  process.exit(2);
}

async function scenario({ token, apiKey, channel }) {
  const N = 20;
  const got = [];
  let connect = null;
  const es = new EventSource(`/connection/uni_sse?cf_connect=${encodeURIComponent(JSON.stringify({ token }))}`);
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out: connect ${!!connect}, got ${JSON.stringify(got)}`)), 15000);
    es.onerror = () => { clearTimeout(timer); reject(new Error("EventSource error")); };
    es.onmessage = async (e) => {
      const push = JSON.parse(e.data);
      if (push.connect) {
        connect = push.connect;
        for (let i = 1; i <= N; i++) {
          const r = await fetch("/api/publish", {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-API-Key": apiKey },
            body: JSON.stringify({ channel, data: { i } }),
          });
          if (!r.ok) reject(new Error(`publish ${i}: HTTP ${r.status}`));
        }
      } else if (push.pub) {
        got.push(push.pub.data.i);
        if (got.length === N) { clearTimeout(timer); resolve(); }
      }
    };
  });
  await done;
  es.close();
  const want = Array.from({ length: N }, (_, k) => k + 1);
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`got ${JSON.stringify(got)}`);
  if (!connect.subs || !connect.subs[channel]) throw new Error(`connect push without ${channel}: ${JSON.stringify(connect)}`);
  return `ok EventSource on uni_sse: connect push with ${channel}, then ${N} publications in order, once`;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${base}/`);
  console.log(await page.evaluate(scenario, { token, apiKey, channel }));
} catch (e) {
  console.error(`FAIL: ${e.message || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}

// Hostile WebTransport clients in Debian's headless Chromium against
// `wshub serve --webtransport`: what a page can send that the gateway must
// refuse, each on its own session, with a well-behaved session beside them
// that keeps working.
//
//   node wt_hostile.mjs BASE CERT_SHA256_HEX SPKI_B64
//
// Cases (each prints one "case NAME: {...}" JSON line with what was seen):
// - oversized: 200 KiB without a line end (message_size_limit is 64 KiB);
// - garbage: a line that is not a command;
// - second_stream: a second bidirectional stream on a connected session
//   (refused; the first stream still answers);
// - no_stream: a session that never opens its stream (closed by the server);
// - good: connect, and answer after all of the above.
// Exits non-zero when the page could not run them at all; the Rust test
// (crates/cli/tests/it/browser_wt.rs) judges the results.
import { chromium } from "playwright-core";

const [base, certHash, spki] = process.argv.slice(2);
if (!base || !certHash || !spki) {
  console.error("usage: node wt_hostile.mjs BASE CERT_SHA256_HEX SPKI_B64");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});
let code = 0;
try {
  const page = await browser.newPage();
  await page.goto(`${base}/`);
  const results = await page.evaluate(async ({ base, certHash }) => {
    const value = new Uint8Array(certHash.match(/../g).map((h) => parseInt(h, 16)));
    const url = `${base}/connection/webtransport`;
    const te = new TextEncoder();
    const td = new TextDecoder();
    const open = () => new WebTransport(url, { serverCertificateHashes: [{ algorithm: "sha-256", value }] });
    const timeout = (ms, v) => new Promise((r) => setTimeout(() => r(v), ms));
    // Reads a stream to its end (or `ms`), returning the text and how it ended.
    async function readAll(readable, ms) {
      const reader = readable.getReader();
      let text = "";
      const deadline = Date.now() + ms;
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0) return { text, end: "timeout" };
        let r;
        try {
          r = await Promise.race([reader.read(), timeout(left, "timeout")]);
        } catch (e) {
          return { text, end: `error ${e.name}: ${e.message}` };
        }
        if (r === "timeout") return { text, end: "timeout" };
        if (r.value) text += td.decode(r.value, { stream: true });
        if (r.done) return { text, end: "done" };
      }
    }
    // The first reply line: one JSON object.
    async function firstLine(reader, ms) {
      let text = "";
      const deadline = Date.now() + ms;
      while (!text.includes("\n")) {
        const left = deadline - Date.now();
        if (left <= 0) return null;
        const r = await Promise.race([reader.read(), timeout(left, "timeout")]);
        if (r === "timeout" || r.done) return null;
        text += td.decode(r.value, { stream: true });
      }
      return JSON.parse(text.slice(0, text.indexOf("\n")));
    }
    const closedWithin = async (wt, ms) => {
      const t0 = Date.now();
      const r = await Promise.race([wt.closed.then((i) => ({ info: i }), (e) => ({ error: String(e) })), timeout(ms, null)]);
      return r ? { closed_after_ms: Date.now() - t0, ...r } : { closed_after_ms: null };
    };
    const out = {};

    // A well-behaved session, open through all of it.
    const good = open();
    await good.ready;
    const gs = await good.createBidirectionalStream();
    const gw = gs.writable.getWriter();
    const gr = gs.readable.getReader();
    await gw.write(te.encode('{"id":1,"connect":{}}\n'));
    const greply = await firstLine(gr, 5000);

    // oversized
    {
      const wt = open();
      await wt.ready;
      const s = await wt.createBidirectionalStream();
      const w = s.writable.getWriter();
      w.write(te.encode('{"id":1,"connect":{}}\n')).catch(() => {});
      w.write(new Uint8Array(200 * 1024).fill(0x61)).catch(() => {});
      const read = await readAll(s.readable, 8000);
      out.oversized = { read, ...(await closedWithin(wt, 5000)) };
    }
    // garbage
    {
      const wt = open();
      await wt.ready;
      const s = await wt.createBidirectionalStream();
      const w = s.writable.getWriter();
      w.write(te.encode("this is not a command\n")).catch(() => {});
      const read = await readAll(s.readable, 8000);
      out.garbage = { read, ...(await closedWithin(wt, 5000)) };
    }
    // second_stream
    {
      const wt = open();
      await wt.ready;
      const s = await wt.createBidirectionalStream();
      const w = s.writable.getWriter();
      const r = s.readable.getReader();
      await w.write(te.encode('{"id":1,"connect":{}}\n'));
      const connected = await firstLine(r, 5000);
      const s2 = await wt.createBidirectionalStream();
      const w2 = s2.writable.getWriter();
      w2.write(te.encode('{"id":1,"connect":{}}\n')).catch(() => {});
      const read2 = await readAll(s2.readable, 5000);
      await w.write(te.encode('{"id":2,"presence_stats":{"channel":"nothing"}}\n'));
      const after = await firstLine(r, 5000);
      out.second_stream = { connected: !!(connected && connected.connect), second: read2, first_after: after };
      wt.close();
    }
    // no_stream
    {
      const wt = open();
      await wt.ready;
      out.no_stream = await closedWithin(wt, 20000);
    }
    // The good session still answers.
    await gw.write(te.encode('{"id":2,"presence_stats":{"channel":"chat:x"}}\n'));
    const gafter = await firstLine(gr, 5000);
    out.good = { connected: !!(greply && greply.connect), after: gafter };
    good.close();
    return out;
  }, { base, certHash });
  for (const [name, v] of Object.entries(results)) console.log(`case ${name}: ${JSON.stringify(v)}`);
} catch (e) {
  console.error(`wt_hostile: ${e.stack || e}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);

// wshub.js: a small dependency-free browser client for wshub, speaking the
// Centrifugo client protocol v2 with the JSON encoding.
//
// As an ES module:    import { WshubClient } from "/wshub.js";
// From a classic script (no build step):
//   <script type="module" src="/wshub.js"></script>   then window.WshubClient
//   (set once the module ran; the "wshub:ready" event fires on window), or
//   import("/wshub.js").then(({ WshubClient }) => ...).
//
//   const client = new WshubClient("ws://host/connection/websocket", { token });
//   const sub = client.newSubscription("chat:lobby", { joinLeave: true });
//   sub.on("publication", (ctx) => console.log(ctx.offset, ctx.data));
//   sub.on("unrecovered", () => alert("you may have missed messages"));
//   sub.subscribe();
//   client.connect();
//
// Client events: connecting {code, reason}, connected {client, version, data, transport},
// disconnected {code, reason}, error {type, error, transport?}, message {data},
// state {newState, oldState}, fallback {transport, next, reason} ("auto" gave
// up on `transport` and tries `next`).
// Subscription events: subscribing {code, reason}, subscribed {channel, recoverable,
// positioned, wasRecovering, recovered, recoveredCount, streamPosition, data},
// publication {channel, data, offset, info, tags}, join {channel, info},
// leave {channel, info}, unsubscribed {code, reason}, error {type, error},
// unrecovered {channel, reason, streamPosition}, state {newState, oldState}.
// On a resubscribe with recovery, "subscribed" comes first, then the recovered
// publications in stream order, then "unrecovered" if recovery failed.
//
// Transports (option `transport`; `client.transport` and the `connected`
// event's `transport` name the one in use):
//   websocket    GET  /connection/websocket          commands and replies as frames
//   http_stream  POST /connection/http_stream        the connect command as the body; replies
//                                                    and pushes as JSON lines of the chunked answer
//   sse          GET  /connection/sse?cf_connect=..  an EventSource, one reply or push per event
//   long_poll    POST /connection/long_poll          (wshub's own) answered at once with
//                                                    {"seq","messages"}; then POST .../poll with
//                                                    {"session","node","ack"} in a loop, each held
//                                                    until there are messages after `ack`
// On http_stream, sse and long_poll, every further command (subscribe,
// publish, pong, ...) is a POST /emulation {"session","node","data"}, `data`
// being the commands' JSON text, one per line: the commands of one tick go
// in one request, one request at a time, so they run in the order they were
// made (as WebSocket frames do). 404 there (or on a poll) means the session
// is gone: the client reconnects. A long-poll client advances `ack` only
// after it processed an answer, and repeats a failed poll with the same
// `ack`, so it gets every message once and in order.
//
// transport: "auto" (the default) tries, in this order,
//   websocket -> http_stream -> sse -> long_poll
// and moves on to the next one at once (no backoff) when one cannot open
// (no constructor in this environment, a refused request, a stream that
// ends before its first message) or when a streaming one (websocket,
// http_stream, sse) opens but delivers nothing, not even the connect reply,
// within `stallTimeout` ms: what a proxy that buffers answers until they end
// does to a stream. The one that connects is remembered (for this client,
// and in sessionStorage for the tab): later connects try it first, then the
// others in order (a transport that worked and is lost later reconnects
// with the usual backoff, it is not a fallback). When all fail, the client waits its reconnect backoff
// and starts again. A transport name forces that one; an array of names is
// "auto" over that order.
//
// Endpoints: the first argument is the WebSocket URL as before (or any
// http(s) base URL, or "" for the page's origin); the other transports'
// endpoints are derived from its origin (and path prefix before
// /connection/...). Option `endpoints` overrides that: a base URL string
// ("https://rt.example.com"), or an object with any of base, websocket,
// http_stream, sse, long_poll, emulation.

const VERSION = "0.1.0";

/** Error codes of the protocol (Reply.error.code) that the client acts on. */
export const ErrorCode = { TIMEOUT: 1, TRANSPORT_CLOSED: 2, CLIENT_DISCONNECTED: 3,
  UNAUTHORIZED: 101, ALREADY_SUBSCRIBED: 105, TOKEN_EXPIRED: 109, UNRECOVERABLE_POSITION: 112 };

/** Whether a WebSocket close code means "reconnect" (Centrifugo semantics). */
export function shouldReconnect(code) {
  if (code === 1009) return false; // message too big: retrying will not help
  if ((code >= 3500 && code <= 3999) || (code >= 4500 && code <= 4999)) return false;
  return true; // transport codes (<3000), 3000-3499, 4000-4499, anything else
}

/**
 * Exponential backoff with jitter: `base` plus a uniform share of
 * min(max, base * 2^attempt), never above `max`. The floor of `base` keeps a
 * crowd of clients from reconnecting all at once the instant a server drops
 * them (as the Rust client does).
 */
export function backoff(attempt, base, max) {
  const cap = Math.min(max, base * Math.pow(2, Math.min(attempt, 30)));
  return Math.min(max, base + Math.floor(Math.random() * cap));
}

class Emitter {
  constructor() { this._handlers = new Map(); }
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return this;
  }
  off(event, fn) { const set = this._handlers.get(event); if (set) set.delete(fn); return this; }
  once(event, fn) {
    const wrap = (ctx) => { this.off(event, wrap); fn(ctx); };
    return this.on(event, wrap);
  }
  emit(event, ctx) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(ctx); } catch (e) { setTimeout(() => { throw e; }); } // a handler bug must not break the client
    }
  }
}

function protoError(code, message, temporary = false) {
  const err = new Error(message);
  err.code = code;
  err.temporary = temporary;
  return err;
}

function waitFor(emitter, okState, badStates, timeout, what) {
  return new Promise((resolve, reject) => {
    if (emitter.state === okState) return resolve();
    if (badStates.includes(emitter.state)) return reject(protoError(ErrorCode.CLIENT_DISCONNECTED, what + " is " + emitter.state));
    const onState = ({ newState }) => {
      if (newState === okState) { done(); resolve(); }
      else if (badStates.includes(newState)) { done(); reject(protoError(ErrorCode.CLIENT_DISCONNECTED, what + " is " + newState)); }
    };
    const timer = setTimeout(() => { done(); reject(protoError(ErrorCode.TIMEOUT, what + " timeout")); }, timeout);
    const done = () => { clearTimeout(timer); emitter.off("state", onState); };
    emitter.on("state", onState);
  });
}

/** The transports "auto" tries, in order. */
export const TRANSPORTS = ["websocket", "http_stream", "sse", "long_poll"];
const STREAMING = new Set(["websocket", "http_stream", "sse"]);
const PATHS = { websocket: "/connection/websocket", http_stream: "/connection/http_stream",
  sse: "/connection/sse", long_poll: "/connection/long_poll", emulation: "/emulation" };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function pageBase() {
  if (typeof document !== "undefined" && document.baseURI) return document.baseURI;
  if (typeof location !== "undefined" && location.href) return location.href;
  return undefined;
}

/**
 * Every transport's endpoint (absolute URLs) from the constructor's `url`
 * and the `endpoints` option (see the header comment).
 */
export function resolveEndpoints(url, endpoints) {
  const here = pageBase();
  const absolute = (u) => new URL(u, here).href;
  const own = endpoints && typeof endpoints === "object" ? endpoints : {};
  let base = typeof endpoints === "string" ? endpoints : own.base || "";
  if (!base) {
    const u = new URL(url || "/", here);
    u.search = "";
    u.hash = "";
    u.pathname = u.pathname.replace(/\/connection\/[A-Za-z_]+\/?$/, "");
    base = u.href;
  }
  const b = new URL(absolute(base));
  b.protocol = b.protocol === "wss:" ? "https:" : b.protocol === "ws:" ? "http:" : b.protocol;
  const root = b.href.replace(/\/+$/, "");
  const out = {};
  for (const [name, path] of Object.entries(PATHS)) out[name] = absolute(own[name] || root + path);
  if (!own.websocket && url && /^wss?:/i.test(url)) out.websocket = url;
  out.websocket = out.websocket.replace(/^http(s?):/i, "ws$1:");
  return out;
}

function httpError(status, what) {
  const err = new Error(what + ": HTTP " + status);
  err.status = status;
  return err;
}

// ---- transports ----
//
// Each has a name, open(connectCommandText), send(commandsText), close(),
// `writable` (commands may be sent), and reports to its handlers h:
// onData(text, single) (JSON replies, one per line, or `single` = exactly
// one), onReplies(array) (parsed replies), onError(error) and
// onClose(code, reason) (lost; never called after close()).

class WebSocketTransport {
  constructor(url, WS, h) { this.name = "websocket"; this.url = url; this.WS = WS; this.h = h; this.ws = null; }
  open(connect) {
    const ws = new this.WS(this.url);
    this.ws = ws;
    ws.onopen = () => ws.send(connect);
    ws.onerror = (ev) => this.h.onError(ev && ev.error ? ev.error : new Error("websocket error"));
    ws.onclose = (ev) => this.h.onClose(ev.code || 1006, ev.reason || "connection closed");
    ws.onmessage = (ev) => this.h.onData(ev.data, false);
  }
  get writable() { return !!this.ws && this.ws.readyState === 1; }
  send(frame) { if (this.writable) this.ws.send(frame); }
  close(code = 1000, reason = "") {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => {}; // Node's `ws` throws on an unhandled error event
    try { ws.close(code >= 3000 && code <= 4999 ? code : 1000, reason.slice(0, 120)); } catch (_) { try { ws.close(); } catch (_) { /* already closed */ } }
  }
}

/**
 * The client-to-server half of http_stream, sse and long_poll: POST
 * /emulation, one request at a time; what is sent meanwhile goes in the
 * next request, in order. A 404 (session gone), a 5xx other than 503 (the
 * node did not answer) or a failed request loses the transport.
 */
class Emulation {
  constructor(url, fetchFn, h) {
    this.url = url; this.fetch = fetchFn; this.h = h;
    this.session = ""; this.node = ""; this.queue = []; this.busy = false; this.closed = false;
  }
  setSession(session, node) { this.session = session || ""; this.node = node || ""; this._pump(); }
  get ready() { return !this.closed && !!this.session && !!this.node; }
  send(text) { this.queue.push(text); this._pump(); }
  close() { this.closed = true; this.queue = []; }
  async _pump() {
    if (this.busy || !this.ready || this.queue.length === 0) return;
    this.busy = true;
    const body = JSON.stringify({ session: this.session, node: this.node, data: this.queue.join("\n") });
    this.queue = [];
    try {
      for (let busyRetries = 0; ; busyRetries++) {
        let res;
        try {
          res = await this.fetch(this.url, { method: "POST", headers: { "Content-Type": "application/json" },
            body, credentials: "same-origin", cache: "no-store" });
        } catch (e) {
          if (!this.closed) this.h.onClose(1006, "emulation request failed: " + e.message);
          return;
        }
        if (this.closed) return;
        if (res.ok) break;
        if (res.status === 503 && busyRetries < 5) { await sleep(1000); if (this.closed) return; continue; }
        if (res.status === 404 || res.status >= 500) return this.h.onClose(1006, "emulation: HTTP " + res.status + " (session gone)");
        // 400, 413, ...: those commands are lost (their calls time out), the session lives on.
        this.h.onError(httpError(res.status, "emulation"));
        break;
      }
    } finally {
      this.busy = false;
    }
    this._pump();
  }
}

/** Reads a fetch body as JSON lines, handing each chunk of whole lines to h.onData. */
async function readLines(body, h, isClosed) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (isClosed()) { try { reader.cancel(); } catch (_) { /* gone */ } return; }
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    const cut = buf.lastIndexOf("\n");
    if (cut < 0) continue;
    const text = buf.slice(0, cut);
    buf = buf.slice(cut + 1);
    h.onData(text, false);
  }
}

class HttpStreamTransport {
  constructor(urls, fetchFn, h) {
    this.name = "http_stream"; this.url = urls.http_stream; this.fetch = fetchFn; this.h = h;
    this.closed = false; this.ctrl = null;
    this.emulation = new Emulation(urls.emulation, fetchFn, h);
  }
  open(connect) {
    if (!this.fetch || typeof ReadableStream === "undefined" || typeof TextDecoder === "undefined") throw new Error("no streaming fetch here");
    this.ctrl = new AbortController();
    const closed = () => this.closed;
    this.fetch(this.url, { method: "POST", body: connect, signal: this.ctrl.signal, cache: "no-store",
      credentials: "same-origin", headers: { "Content-Type": "application/json", Accept: "application/json" } })
      .then(async (res) => {
        if (!res.ok || !res.body) throw httpError(res.status, "http_stream");
        await readLines(res.body, this.h, closed);
        if (!this.closed) this.h.onClose(1006, "stream ended");
      })
      .catch((e) => {
        if (this.closed) return;
        this.h.onError(e);
        this.h.onClose(1006, "stream failed: " + e.message);
      });
  }
  setSession(session, node) { this.emulation.setSession(session, node); }
  get writable() { return this.emulation.ready; }
  send(frame) { this.emulation.send(frame); }
  close() {
    this.closed = true;
    this.emulation.close();
    if (this.ctrl) this.ctrl.abort();
  }
}

class SseTransport {
  constructor(urls, ES, fetchFn, h) {
    this.name = "sse"; this.url = urls.sse; this.ES = ES; this.h = h; this.closed = false; this.es = null;
    this.emulation = new Emulation(urls.emulation, fetchFn, h);
  }
  open(connect) {
    if (!this.ES || !this.emulation.fetch) throw new Error("no EventSource here");
    const u = new URL(this.url);
    u.searchParams.set("cf_connect", connect);
    const es = new this.ES(u.href);
    this.es = es;
    es.onmessage = (ev) => { if (!this.closed) this.h.onData(ev.data, true); };
    es.onerror = () => {
      // The stream ended or never opened; the client reconnects by itself
      // (EventSource's own retry would reopen it with the old connect command).
      es.close();
      if (!this.closed) this.h.onClose(1006, "event stream closed");
    };
  }
  setSession(session, node) { this.emulation.setSession(session, node); }
  get writable() { return this.emulation.ready; }
  send(frame) { this.emulation.send(frame); }
  close() {
    this.closed = true;
    this.emulation.close();
    if (this.es) { this.es.onmessage = this.es.onerror = null; this.es.close(); }
  }
}

/**
 * Long-poll: the opening POST answers {"seq","messages"} with the connect
 * reply; then one poll at a time, {"session","node","ack"} where ack is
 * the `seq` of the last answer processed. A failed poll (network error,
 * 5xx, our own `longPollTimeout`) is repeated with the same ack after a
 * short pause, so an answer lost on the way comes again; 404 (session
 * gone), 400 or `longPollRetries` failures in a row lose the transport.
 */
class LongPollTransport {
  constructor(urls, fetchFn, opts, h) {
    this.name = "long_poll"; this.url = urls.long_poll; this.pollUrl = urls.long_poll.replace(/\/+$/, "") + "/poll";
    this.fetch = fetchFn; this.opts = opts; this.h = h;
    this.closed = false; this.ctrl = null; this.ack = 0;
    this.emulation = new Emulation(urls.emulation, fetchFn, h);
  }
  open(connect) {
    if (!this.fetch) throw new Error("no fetch here");
    this._request(this.url, connect).then((answer) => {
      if (this.closed) return;
      this._deliver(answer);
      this._loop();
    }, (e) => {
      if (this.closed) return;
      this.h.onError(e);
      this.h.onClose(1006, "long-poll open failed: " + e.message);
    });
  }
  async _request(url, body) {
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    const timer = setTimeout(() => ctrl.abort(), this.opts.longPollTimeout);
    try {
      const res = await this.fetch(url, { method: "POST", body, signal: ctrl.signal, cache: "no-store",
        credentials: "same-origin", headers: { "Content-Type": "application/json", Accept: "application/json" } });
      if (!res.ok) throw httpError(res.status, "long_poll");
      const answer = await res.json();
      if (!answer || typeof answer.seq !== "number" || !Array.isArray(answer.messages)) throw new Error("long_poll: not an answer");
      return answer;
    } finally {
      clearTimeout(timer);
    }
  }
  // The answer's messages are processed before the ack moves past them.
  _deliver(answer) {
    if (answer.seq < this.ack) return; // an answer to an older ack: nothing new in it
    this.h.onReplies(answer.messages);
    this.ack = answer.seq;
  }
  async _loop() {
    let failures = 0;
    while (!this.closed) {
      if (!this.emulation.ready) return this.h.onClose(1006, "long-poll: no session in the connect reply");
      let answer;
      try {
        answer = await this._request(this.pollUrl, JSON.stringify({ session: this.emulation.session, node: this.emulation.node, ack: this.ack }));
      } catch (e) {
        if (this.closed) return;
        if (e.status === 404) return this.h.onClose(1006, "long-poll session gone");
        if (e.status === 400 || ++failures > this.opts.longPollRetries) {
          this.h.onError(e);
          return this.h.onClose(1006, "long-poll failed: " + e.message);
        }
        await sleep(Math.min(2000, 100 * Math.pow(2, failures)));
        continue; // the same ack: the server sends the lost answer again
      }
      if (this.closed) return;
      failures = 0;
      this._deliver(answer);
    }
  }
  setSession(session, node) { this.emulation.setSession(session, node); }
  get writable() { return this.emulation.ready; }
  send(frame) { this.emulation.send(frame); }
  close() {
    this.closed = true;
    this.emulation.close();
    if (this.ctrl) this.ctrl.abort();
  }
}

function rememberKey(endpoints) { return "wshub.transport " + endpoints.websocket; }

export class WshubClient extends Emitter {
  /**
   * @param {string} url WebSocket endpoint, e.g. ws://localhost:8000/connection/websocket
   *   (or an http(s) base URL, or "" for the page's origin; see `endpoints`)
   * @param {object} [opts] token, getToken() -> Promise<string>, name, version, data,
   *   timeout (ms, per command), minReconnectDelay, maxReconnectDelay, maxServerPingDelay
   *   (ms of grace after the ping interval), websocket (constructor, e.g. the `ws` package in Node), debug,
   *   transport ("auto", a transport name, or an array of names), endpoints (base URL or
   *   {base, websocket, http_stream, sse, long_poll, emulation}), stallTimeout (ms a streaming
   *   transport may deliver nothing before "auto" moves on), longPollTimeout (ms before a held
   *   poll is given up and repeated), longPollRetries (failed polls in a row before reconnecting),
   *   eventSource and fetch (constructors/functions, default the global ones)
   */
  constructor(url, opts = {}) {
    super();
    this.opts = Object.assign({ token: "", getToken: null, name: "wshub-js", version: VERSION, data: undefined,
      timeout: 5000, minReconnectDelay: 500, maxReconnectDelay: 20000, maxServerPingDelay: 10000,
      websocket: null, debug: false, transport: "auto", endpoints: null, stallTimeout: 3000,
      longPollTimeout: 60000, longPollRetries: 8, eventSource: null, fetch: null }, opts);
    const order = Array.isArray(this.opts.transport) ? this.opts.transport
      : this.opts.transport === "auto" || !this.opts.transport ? TRANSPORTS : [this.opts.transport];
    if (order.length === 0) throw new Error("no transport to try");
    for (const t of order) if (!TRANSPORTS.includes(t)) throw new Error("unknown transport " + JSON.stringify(t) + " (one of auto, " + TRANSPORTS.join(", ") + ")");
    this._order = order;
    this._auto = order.length > 1;
    this.endpoints = resolveEndpoints(url, this.opts.endpoints);
    this.url = this.endpoints.websocket;
    /** The transport of the current (or last) connection: "" until connected. */
    this.transport = "";
    this.state = "disconnected";
    this.clientId = "";
    this._token = this.opts.token || "";
    this._transport = null;
    this._candidates = [];
    this._remembered = "";
    if (this._auto) {
      try { const t = globalThis.sessionStorage && sessionStorage.getItem(rememberKey(this.endpoints)); if (order.includes(t)) this._remembered = t; } catch (_) { /* no storage */ }
    }
    this._gotData = false;
    this._stallTimer = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject, timer}
    this._queue = [];
    this._flushScheduled = false;
    this._subs = new Map();
    this._attempt = 0;
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._refreshTimer = null;
    this._pingInterval = 0;
    this._sendPong = false;
  }

  /** The WebSocket of a websocket connection (null on the other transports). */
  get _ws() { return this._transport && this._transport.name === "websocket" ? this._transport.ws : null; }

  /** Starts connecting (and reconnecting after drops) until disconnect(). */
  connect() {
    if (this.state === "connected" || this.state === "connecting") return;
    this._attempt = 0;
    this._setState("connecting");
    this.emit("connecting", { code: 0, reason: "connect called" });
    this._open();
  }

  /** Closes the connection and stops reconnecting. Subscriptions keep their positions. */
  disconnect() {
    if (this.state === "disconnected") return;
    this._teardown(0, "disconnect called", false);
  }

  /** Resolves once connected; rejects on timeout or when disconnected. */
  ready(timeout = this.opts.timeout) { return waitFor(this, "connected", ["disconnected"], timeout, "client"); }

  newSubscription(channel, opts = {}) {
    if (this._subs.has(channel)) throw new Error("subscription to " + channel + " already exists");
    const sub = new Subscription(this, channel, opts);
    this._subs.set(channel, sub);
    return sub;
  }
  getSubscription(channel) { return this._subs.get(channel) || null; }
  removeSubscription(sub) {
    if (!sub) return;
    if (sub.state !== "unsubscribed") sub.unsubscribe();
    this._subs.delete(sub.channel);
  }
  subscriptions() { return Object.fromEntries(this._subs); }

  // Connection-level calls (no subscription needed; the server checks permissions).
  async publish(channel, data) { await this.ready(); return this._call("publish", { channel, data }); }
  async presence(channel) { await this.ready(); return this._call("presence", { channel }); }
  async presenceStats(channel) { await this.ready(); return this._call("presence_stats", { channel }); }
  async history(channel, opts = {}) { await this.ready(); return this._call("history", historyParams(channel, opts)); }
  async rpc(method, data) { await this.ready(); return this._call("rpc", { method, data }); }
  async send(data) { await this.ready(); this._enqueue({ send: { data } }); }

  // ---- internals ----

  _log(...args) { if (this.opts.debug) console.debug("[wshub]", ...args); }

  _setState(newState) {
    const oldState = this.state;
    if (oldState === newState) return;
    this.state = newState;
    this.emit("state", { newState, oldState });
  }

  async _open() {
    if (!this._token && this.opts.getToken) {
      try {
        this._token = (await this.opts.getToken()) || "";
      } catch (e) {
        this.emit("error", { type: "connectToken", error: e });
        return this._scheduleReconnect(0, "token error");
      }
      if (this.state !== "connecting") return;
      if (!this._token) return this._teardown(3500, "unauthorized", false);
    }
    // This attempt's transports: the one that worked last, then the others in order.
    const rest = this._order.filter((t) => t !== this._remembered);
    this._candidates = this._remembered ? [this._remembered, ...rest] : rest;
    this._openNext();
  }

  _makeTransport(name) {
    const fetchFn = this.opts.fetch || (typeof fetch === "function" ? fetch.bind(globalThis) : null);
    const t = { name };
    const live = () => t.impl === this._transport;
    const h = {
      onData: (data, single) => { if (live()) this._onData(data, single); },
      onReplies: (replies) => { if (live()) this._onReplies(replies); },
      onError: (error) => { if (live()) this.emit("error", { type: "transport", transport: name, error }); },
      onClose: (code, reason) => { if (live()) this._onTransportClose(code, reason); },
    };
    switch (name) {
      case "websocket": t.impl = new WebSocketTransport(this.endpoints.websocket, this.opts.websocket || globalThis.WebSocket, h); break;
      case "http_stream": t.impl = new HttpStreamTransport(this.endpoints, fetchFn, h); break;
      case "sse": t.impl = new SseTransport(this.endpoints, this.opts.eventSource || globalThis.EventSource, fetchFn, h); break;
      default: t.impl = new LongPollTransport(this.endpoints, fetchFn, this.opts, h);
    }
    return t.impl;
  }

  // Opens the next candidate transport with the connect command.
  _openNext() {
    const name = this._candidates.shift();
    const t = this._makeTransport(name);
    this._transport = t;
    this._gotData = false;
    const req = { name: this.opts.name, version: this.opts.version };
    if (this._token) req.token = this._token;
    if (this.opts.data !== undefined) req.data = this.opts.data;
    const id = this._nextId++;
    this._register(id, "connect").then((res) => { if (t === this._transport) this._onConnected(res); },
      (err) => this._onConnectError(err));
    this._log("trying", name);
    try {
      t.open(JSON.stringify({ id, connect: req }));
    } catch (e) {
      this.emit("error", { type: "transport", transport: name, error: e });
      return this._onTransportClose(1006, name + " cannot open: " + e.message);
    }
    if (this._auto && STREAMING.has(name)) {
      this._stallTimer = setTimeout(() => {
        if (t === this._transport && !this._gotData) this._onTransportClose(1006, name + " delivered nothing in " + this.opts.stallTimeout + " ms");
      }, this.opts.stallTimeout);
    }
  }

  // A transport that is lost before its first message could not open:
  // "auto" tries the next one at once; otherwise (or after the last one)
  // this is an ordinary lost connection.
  _onTransportClose(code, reason) {
    const failedToOpen = !this._gotData && code < 3000 && this.state === "connecting";
    if (failedToOpen && this._auto && this._candidates.length) {
      const failed = this._transport.name;
      this._log("transport", failed, "failed:", reason);
      this.emit("fallback", { transport: failed, next: this._candidates[0], reason });
      this._closeSocket(code, reason);
      this._rejectPending(ErrorCode.TRANSPORT_CLOSED, "transport closed");
      return this._openNext();
    }
    this._onClose(code, reason);
  }

  _remember(name) {
    this._remembered = name;
    try { if (globalThis.sessionStorage) sessionStorage.setItem(rememberKey(this.endpoints), name); } catch (_) { /* no storage */ }
  }

  _onConnected(res) {
    const t = this._transport;
    if (!t.writable) return this._drop(1006, t.name + ": no session in the connect reply");
    this.clientId = res.client || "";
    this._attempt = 0;
    this._pingInterval = (res.ping || 0) * 1000;
    this._sendPong = !!res.pong;
    this._restartPingTimer();
    if (res.expires && res.ttl) this._scheduleRefresh(res.ttl);
    this.transport = t.name;
    if (this._auto) this._remember(this.transport);
    this._setState("connected");
    this.emit("connected", { client: res.client, version: res.version, data: res.data, transport: this.transport });
    for (const sub of this._subs.values()) if (sub.state === "subscribing") sub._sendSubscribe();
  }

  _onConnectError(err) {
    if (err.code === ErrorCode.TRANSPORT_CLOSED || err.code === ErrorCode.CLIENT_DISCONNECTED) return;
    this.emit("error", { type: "connect", error: err });
    if (err.code === ErrorCode.TOKEN_EXPIRED && this.opts.getToken) { this._token = ""; return this._drop(3005, "token expired"); }
    if (err.code === ErrorCode.TIMEOUT || err.temporary || err.code === 100) return this._drop(3000, err.message);
    this._teardown(err.code === ErrorCode.UNAUTHORIZED ? 3500 : err.code, err.message, false);
  }

  _scheduleRefresh(ttl) {
    clearTimeout(this._refreshTimer);
    if (!this.opts.getToken) return; // the server will disconnect with 3005 when it expires
    this._refreshTimer = setTimeout(async () => {
      try {
        const token = await this.opts.getToken();
        if (!token) return this._teardown(3500, "unauthorized", false);
        this._token = token;
        const res = await this._call("refresh", { token });
        if (res.expires && res.ttl) this._scheduleRefresh(res.ttl);
      } catch (e) {
        this.emit("error", { type: "refresh", error: e });
        this._scheduleRefresh(10);
      }
    }, Math.max(1, ttl - 2) * 1000);
  }

  _restartPingTimer() {
    clearTimeout(this._pingTimer);
    if (this._pingInterval <= 0) return;
    this._pingTimer = setTimeout(() => this._drop(3012, "no ping"), this._pingInterval + this.opts.maxServerPingDelay);
  }

  _onFirstData() {
    this._gotData = true;
    clearTimeout(this._stallTimer);
  }

  // Text from a transport: JSON replies, one per line (or exactly one).
  _onData(data, single) {
    if (typeof data !== "string") return this._drop(3506, "binary frame on a JSON connection");
    this._onFirstData();
    this._restartPingTimer();
    const t = this._transport;
    for (const line of single ? [data] : data.split("\n")) {
      if (!line.trim()) continue;
      let reply;
      try { reply = JSON.parse(line); } catch (e) {
        this.emit("error", { type: "decode", error: e });
        return this._drop(3501, "bad frame");
      }
      this._onReply(reply);
      if (t !== this._transport) return; // the connection ended on this reply
    }
  }

  // Parsed replies from a transport (long-poll answers).
  _onReplies(replies) {
    this._onFirstData();
    this._restartPingTimer();
    const t = this._transport;
    for (const reply of replies) {
      if (reply && typeof reply === "object") this._onReply(reply);
      if (t !== this._transport) return;
    }
  }

  _onReply(reply) {
    if (reply.id) {
      const p = this._pending.get(reply.id);
      if (!p) return;
      this._pending.delete(reply.id);
      clearTimeout(p.timer);
      if (reply.error) return p.reject(protoError(reply.error.code, reply.error.message || "error", !!reply.error.temporary));
      // The HTTP transports send their commands with the session of the connect reply.
      if (p.method === "connect" && reply.connect && this._transport && this._transport.setSession) {
        this._transport.setSession(reply.connect.session, reply.connect.node);
      }
      return p.resolve(reply[p.method] || {});
    }
    if (reply.push) return this._onPush(reply.push);
    if (Object.keys(reply).length === 0) { // server ping
      if (this._sendPong) this._enqueue({});
    }
  }

  _onPush(push) {
    if (push.disconnect) return this._drop(push.disconnect.code, push.disconnect.reason || "");
    if (push.message) return this.emit("message", { data: push.message.data });
    const sub = this._subs.get(push.channel);
    if (!sub) return;
    sub._onPush(push);
  }

  // A pending call with its timeout; the reply settles it.
  _register(id, method, timeout = this.opts.timeout) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(protoError(ErrorCode.TIMEOUT, method + " timeout"));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer, method });
    });
  }

  _call(method, params, timeout = this.opts.timeout) {
    if (!this._transport || !this._transport.writable) return Promise.reject(protoError(ErrorCode.TRANSPORT_CLOSED, "transport closed"));
    const id = this._nextId++;
    const p = this._register(id, method, timeout);
    this._enqueue({ id, [method]: params });
    return p;
  }

  // Commands queued in one tick go out together: one newline-separated
  // WebSocket frame, or one /emulation request.
  _enqueue(cmd) {
    this._queue.push(JSON.stringify(cmd));
    if (this._flushScheduled) return;
    this._flushScheduled = true;
    queueMicrotask(() => {
      this._flushScheduled = false;
      if (this._queue.length === 0) return;
      const frame = this._queue.join("\n");
      this._queue = [];
      if (this._transport && this._transport.writable) this._transport.send(frame);
    });
  }

  _rejectPending(code, message) {
    for (const p of this._pending.values()) { clearTimeout(p.timer); p.reject(protoError(code, message)); }
    this._pending.clear();
    this._queue = [];
  }

  _closeSocket(code, reason) {
    const t = this._transport;
    this._transport = null;
    clearTimeout(this._pingTimer);
    clearTimeout(this._refreshTimer);
    clearTimeout(this._stallTimer);
    if (t) t.close(code, reason);
  }

  // The connection was lost (or we decided it was dead): reconnect if the code allows it.
  _drop(code, reason) { this._onClose(code, reason); }

  _onClose(code, reason) {
    this._closeSocket(code, reason);
    const reconnect = shouldReconnect(code);
    this._rejectPending(ErrorCode.TRANSPORT_CLOSED, "transport closed");
    if (code === 3014) { this._token = ""; for (const sub of this._subs.values()) sub._resetPosition(); }
    if (code === 3005) this._token = "";
    if (!reconnect) return this._teardown(code, reason, true);
    this._log("connection lost", code, reason);
    for (const sub of this._subs.values()) sub._onConnectionLost(code, reason);
    const wasConnected = this.state === "connected";
    this._setState("connecting");
    if (wasConnected) this.emit("connecting", { code, reason });
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason) {
    clearTimeout(this._reconnectTimer);
    const delay = backoff(this._attempt++, this.opts.minReconnectDelay, this.opts.maxReconnectDelay);
    this._log("reconnect in", delay, "ms after", code, reason);
    this._reconnectTimer = setTimeout(() => { if (this.state === "connecting") this._open(); }, delay);
  }

  _teardown(code, reason, closed) {
    clearTimeout(this._reconnectTimer);
    if (!closed) this._closeSocket(code, reason);
    this._rejectPending(ErrorCode.CLIENT_DISCONNECTED, "client disconnected");
    for (const sub of this._subs.values()) sub._onConnectionLost(code, reason);
    this._setState("disconnected");
    this.emit("disconnected", { code, reason });
  }
}

function historyParams(channel, opts) {
  const p = { channel };
  if (opts.limit !== undefined) p.limit = opts.limit;
  if (opts.since) p.since = { offset: opts.since.offset || 0, epoch: opts.since.epoch || "" };
  if (opts.reverse) p.reverse = true;
  return p;
}

export class Subscription extends Emitter {
  constructor(client, channel, opts) {
    super();
    this.client = client;
    this.channel = channel;
    this.opts = Object.assign({ token: "", getToken: null, data: undefined, recoverable: false,
      positioned: false, joinLeave: false, since: null, minResubscribeDelay: 500, maxResubscribeDelay: 20000 }, opts);
    this.state = "unsubscribed";
    this._token = this.opts.token || "";
    // Last seen stream position; set from the subscribe result and every publication.
    this._offset = this.opts.since ? this.opts.since.offset || 0 : 0;
    this._epoch = this.opts.since ? this.opts.since.epoch || "" : "";
    this._recover = !!this.opts.since;
    this._attempt = 0;
    this._retryTimer = null;
    this._inflight = false;
  }

  /** The last stream position this subscription saw: {offset, epoch}. */
  get streamPosition() { return { offset: this._offset, epoch: this._epoch }; }

  subscribe() {
    if (this.state === "subscribed" || this.state === "subscribing") return;
    this._attempt = 0;
    this._setState("subscribing");
    this.emit("subscribing", { code: 0, reason: "subscribe called" });
    if (this.client.state === "connected") this._sendSubscribe();
  }

  unsubscribe() {
    if (this.state === "unsubscribed") return;
    const wasSubscribed = this.state === "subscribed";
    this._unsubscribed(0, "unsubscribe called");
    if (wasSubscribed && this.client.state === "connected") {
      this.client._call("unsubscribe", { channel: this.channel }).catch(() => { /* the server forgets us on disconnect anyway */ });
    }
  }

  /** Resolves once subscribed; rejects on timeout or when unsubscribed. */
  ready(timeout = this.client.opts.timeout) { return waitFor(this, "subscribed", ["unsubscribed"], timeout, "subscription"); }

  async publish(data) { await this.ready(); return this.client._call("publish", { channel: this.channel, data }); }
  async presence() { await this.ready(); return this.client._call("presence", { channel: this.channel }); }
  async presenceStats() { await this.ready(); return this.client._call("presence_stats", { channel: this.channel }); }
  /** history({limit, since: {offset, epoch}, reverse}) -> {publications, offset, epoch} */
  async history(opts = {}) {
    await this.ready();
    const res = await this.client._call("history", historyParams(this.channel, opts));
    return { publications: (res.publications || []).map((p) => this._pubCtx(p)), offset: res.offset || 0, epoch: res.epoch || "" };
  }

  _setState(newState) {
    const oldState = this.state;
    if (oldState === newState) return;
    this.state = newState;
    this.emit("state", { newState, oldState });
  }

  _resetPosition() { this._offset = 0; this._epoch = ""; this._recover = false; this._token = this.opts.token || ""; }

  async _sendSubscribe() {
    if (this._inflight) return;
    this._inflight = true;
    try {
      const req = { channel: this.channel };
      if (!this._token && this.opts.getToken) {
        this._token = (await this.opts.getToken({ channel: this.channel })) || "";
        if (this.state !== "subscribing" || this.client.state !== "connected") return;
        if (!this._token) return this._unsubscribed(103, "permission denied");
      }
      if (this._token) req.token = this._token;
      if (this.opts.data !== undefined) req.data = this.opts.data;
      if (this.opts.recoverable) req.recoverable = true;
      if (this.opts.positioned) req.positioned = true;
      if (this.opts.joinLeave) req.join_leave = true;
      const recovering = this._recover && (this.opts.recoverable || !!this.opts.since);
      if (recovering) { req.recover = true; req.offset = this._offset; req.epoch = this._epoch; }
      let res;
      try {
        res = await this.client._call("subscribe", req);
      } catch (err) {
        return this._onSubscribeError(err);
      }
      if (this.state !== "subscribing") {
        if (this.state === "unsubscribed") this.client._call("unsubscribe", { channel: this.channel }).catch(() => {});
        return;
      }
      this._onSubscribed(res, recovering);
    } catch (e) {
      this.emit("error", { type: "subscribeToken", error: e });
      this._retryLater();
    } finally {
      this._inflight = false;
    }
  }

  _onSubscribed(res, recovering) {
    this._attempt = 0;
    const prevEpoch = this._epoch;
    const pubs = res.publications || [];
    const recovered = recovering ? !!res.recovered : false;
    if (res.recoverable || res.positioned) {
      this._epoch = res.epoch || "";
      this._recover = true;
      // After a successful recovery the position advances with each recovered publication;
      // otherwise jump to the stream top (what came before it is lost).
      if (!recovering || !recovered) this._offset = pubs.length ? 0 : res.offset || 0;
    }
    this._setState("subscribed");
    this.emit("subscribed", { channel: this.channel, recoverable: !!res.recoverable, positioned: !!res.positioned,
      wasRecovering: recovering, recovered, recoveredCount: pubs.length, data: res.data,
      streamPosition: { offset: res.offset || 0, epoch: res.epoch || "" } });
    for (const p of pubs) this._onPublication(p);
    if (recovering && res.offset > this._offset) this._offset = res.offset;
    if (recovering && !recovered) {
      this.emit("unrecovered", { channel: this.channel, streamPosition: this.streamPosition,
        reason: prevEpoch && res.epoch && prevEpoch !== res.epoch ? "stream epoch changed" : "publications missed" });
    }
  }

  _onSubscribeError(err) {
    if (this.state !== "subscribing") return;
    if (err.code === ErrorCode.TRANSPORT_CLOSED || err.code === ErrorCode.CLIENT_DISCONNECTED) return; // resent on reconnect
    if (err.code === ErrorCode.TIMEOUT) return this.client._drop(3000, "subscribe timeout");
    this.emit("error", { type: "subscribe", error: err });
    if (err.code === ErrorCode.TOKEN_EXPIRED && this.opts.getToken) { this._token = ""; return this._retryLater(); }
    if (err.code === ErrorCode.UNRECOVERABLE_POSITION) { this._recover = false; return this._retryLater(); }
    if (err.code === ErrorCode.ALREADY_SUBSCRIBED) return this._retryLater();
    if (err.temporary || err.code === 100) return this._retryLater();
    this._unsubscribed(err.code, err.message);
  }

  _retryLater() {
    clearTimeout(this._retryTimer);
    const delay = backoff(this._attempt++, this.opts.minResubscribeDelay, this.opts.maxResubscribeDelay);
    this._retryTimer = setTimeout(() => {
      if (this.state === "subscribing" && this.client.state === "connected") this._sendSubscribe();
    }, delay);
  }

  _unsubscribed(code, reason) {
    clearTimeout(this._retryTimer);
    this._setState("unsubscribed");
    this.emit("unsubscribed", { code, reason });
  }

  _onConnectionLost(code, reason) {
    clearTimeout(this._retryTimer);
    if (this.state !== "subscribed") return;
    this._setState("subscribing");
    this.emit("subscribing", { code, reason });
  }

  _pubCtx(p) {
    const ctx = { channel: this.channel, data: p.data, offset: p.offset || 0 };
    if (p.info) ctx.info = p.info;
    if (p.tags) ctx.tags = p.tags;
    if (p.time) ctx.time = p.time;
    return ctx;
  }

  _onPublication(p) {
    if (p.offset && this._recover && p.offset <= this._offset) return; // duplicate delivered twice
    if (p.offset) this._offset = p.offset;
    this.emit("publication", this._pubCtx(p));
  }

  _onPush(push) {
    if (push.pub) {
      if (this.state === "subscribed") this._onPublication(push.pub);
    } else if (push.join) {
      this.emit("join", { channel: this.channel, info: push.join.info || {} });
    } else if (push.leave) {
      this.emit("leave", { channel: this.channel, info: push.leave.info || {} });
    } else if (push.unsubscribe) {
      const { code = 0, reason = "" } = push.unsubscribe;
      if (code >= 2500) {
        if (code === 2502) this._resetPosition();
        if (code === 2501) this._token = "";
        this._setState("subscribing");
        this.emit("subscribing", { code, reason });
        this._sendSubscribe();
      } else {
        this._unsubscribed(code, reason);
      }
    }
  }
}

export default WshubClient;

if (typeof window !== "undefined") {
  window.WshubClient = WshubClient;
  window.WshubSubscription = Subscription;
  window.dispatchEvent(new Event("wshub:ready"));
}

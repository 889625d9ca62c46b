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
// Client events: connecting {code, reason}, connected {client, version, data},
// disconnected {code, reason}, error {type, error}, message {data}, state {newState, oldState}.
// Subscription events: subscribing {code, reason}, subscribed {channel, recoverable,
// positioned, wasRecovering, recovered, recoveredCount, streamPosition, data},
// publication {channel, data, offset, info, tags}, join {channel, info},
// leave {channel, info}, unsubscribed {code, reason}, error {type, error},
// unrecovered {channel, reason, streamPosition}, state {newState, oldState}.
// On a resubscribe with recovery, "subscribed" comes first, then the recovered
// publications in stream order, then "unrecovered" if recovery failed.

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

export class WshubClient extends Emitter {
  /**
   * @param {string} url WebSocket endpoint, e.g. ws://localhost:8000/connection/websocket
   * @param {object} [opts] token, getToken() -> Promise<string>, name, version, data,
   *   timeout (ms, per command), minReconnectDelay, maxReconnectDelay, maxServerPingDelay
   *   (ms of grace after the ping interval), websocket (constructor, e.g. the `ws` package in Node), debug
   */
  constructor(url, opts = {}) {
    super();
    this.url = url;
    this.opts = Object.assign({ token: "", getToken: null, name: "wshub-js", version: VERSION, data: undefined,
      timeout: 5000, minReconnectDelay: 500, maxReconnectDelay: 20000, maxServerPingDelay: 10000,
      websocket: null, debug: false }, opts);
    this.state = "disconnected";
    this.clientId = "";
    this._token = this.opts.token || "";
    this._ws = null;
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
    const WS = this.opts.websocket || globalThis.WebSocket;
    let ws;
    try { ws = new WS(this.url); } catch (e) {
      this.emit("error", { type: "transport", error: e });
      return this._scheduleReconnect(0, "transport error");
    }
    this._ws = ws;
    ws.onopen = () => { if (ws === this._ws) this._sendConnect(); };
    ws.onerror = (ev) => { if (ws === this._ws) this.emit("error", { type: "transport", error: ev && ev.error ? ev.error : new Error("websocket error") }); };
    ws.onclose = (ev) => { if (ws === this._ws) this._onClose(ev.code || 1006, ev.reason || "connection closed"); };
    ws.onmessage = (ev) => { if (ws === this._ws) this._onFrame(ev.data); };
  }

  _sendConnect() {
    const req = { name: this.opts.name, version: this.opts.version };
    if (this._token) req.token = this._token;
    if (this.opts.data !== undefined) req.data = this.opts.data;
    this._call("connect", req).then((res) => this._onConnected(res), (err) => this._onConnectError(err));
  }

  _onConnected(res) {
    this.clientId = res.client || "";
    this._attempt = 0;
    this._pingInterval = (res.ping || 0) * 1000;
    this._sendPong = !!res.pong;
    this._restartPingTimer();
    if (res.expires && res.ttl) this._scheduleRefresh(res.ttl);
    this._setState("connected");
    this.emit("connected", { client: res.client, version: res.version, data: res.data, transport: "websocket" });
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

  _onFrame(data) {
    if (typeof data !== "string") return this._drop(3506, "binary frame on a JSON connection");
    this._restartPingTimer();
    for (const line of data.split("\n")) {
      if (!line.trim()) continue;
      let reply;
      try { reply = JSON.parse(line); } catch (e) {
        this.emit("error", { type: "decode", error: e });
        return this._drop(3501, "bad frame");
      }
      this._onReply(reply);
    }
  }

  _onReply(reply) {
    if (reply.id) {
      const p = this._pending.get(reply.id);
      if (!p) return;
      this._pending.delete(reply.id);
      clearTimeout(p.timer);
      if (reply.error) return p.reject(protoError(reply.error.code, reply.error.message || "error", !!reply.error.temporary));
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

  _call(method, params, timeout = this.opts.timeout) {
    return new Promise((resolve, reject) => {
      if (!this._ws || this._ws.readyState !== 1) return reject(protoError(ErrorCode.TRANSPORT_CLOSED, "transport closed"));
      const id = this._nextId++;
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(protoError(ErrorCode.TIMEOUT, method + " timeout"));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer, method });
      this._enqueue({ id, [method]: params });
    });
  }

  // Commands queued in one tick go out in one newline-separated frame.
  _enqueue(cmd) {
    this._queue.push(JSON.stringify(cmd));
    if (this._flushScheduled) return;
    this._flushScheduled = true;
    queueMicrotask(() => {
      this._flushScheduled = false;
      if (this._queue.length === 0) return;
      const frame = this._queue.join("\n");
      this._queue = [];
      if (this._ws && this._ws.readyState === 1) this._ws.send(frame);
    });
  }

  _rejectPending(code, message) {
    for (const p of this._pending.values()) { clearTimeout(p.timer); p.reject(protoError(code, message)); }
    this._pending.clear();
    this._queue = [];
  }

  _closeSocket(code, reason) {
    const ws = this._ws;
    this._ws = null;
    clearTimeout(this._pingTimer);
    clearTimeout(this._refreshTimer);
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {}; // Node's `ws` throws on an unhandled error event
      try { ws.close(code >= 3000 && code <= 4999 ? code : 1000, reason.slice(0, 120)); } catch (_) { try { ws.close(); } catch (_) { /* already closed */ } }
    }
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

#!/usr/bin/env python3
"""Interop scenario: the official `centrifuge-python` SDK against `wshub serve`.

Usage: centrifuge_py.py [--url http://ADDR] [--api-key KEY] [--secret S]
(else $WSHUB_URL, $WSHUB_API_KEY, $WSHUB_HMAC_SECRET). The server needs the
`chat` namespace with presence, join_leave, history, force_recovery and the
allow_*_for_subscriber/client options (see crates/cli/tests/it/sdk_interop.rs).

Checks: connect with a JWT, subscribe, publish from a second client, presence,
presence stats, history (limit, since, reverse), recovery of publications made
through the HTTP API while the client was away after `/api/disconnect`, and a
bad token ending in disconnect code 3500 without reconnecting. Prints `ok ...`
per check; on a mismatch prints `FAIL: ...` on stderr and exits 1. Every wait
is bounded.
"""

import asyncio
import json
import time
import urllib.request

from centrifuge import (
    Client,
    ClientEventHandler,
    ClientState,
    StreamPosition,
    SubscriptionEventHandler,
)

from common import CHANNEL, WAIT, Fail, check, eq, ok, token
import common


class Events:
    """Named asyncio queues fed by the SDK's event handlers."""

    def __init__(self, owner: str):
        self.owner = owner
        self.queues = {}

    def q(self, name: str) -> asyncio.Queue:
        return self.queues.setdefault(name, asyncio.Queue())

    def push(self, name, item):
        self.q(name).put_nowait(item)

    async def next(self, name: str, what: str, timeout: float = WAIT):
        try:
            return await asyncio.wait_for(self.q(name).get(), timeout)
        except asyncio.TimeoutError:
            raise Fail(f"{self.owner}: timed out after {timeout}s waiting for {what}") from None

    def drain(self, name: str):
        items = []
        q = self.q(name)
        while not q.empty():
            items.append(q.get_nowait())
        return items


class ClientEvents(ClientEventHandler):
    def __init__(self, ev: Events):
        self.ev = ev

    async def on_connecting(self, ctx):
        self.ev.push("connecting", ctx)

    async def on_connected(self, ctx):
        self.ev.push("connected", ctx)

    async def on_disconnected(self, ctx):
        self.ev.push("disconnected", ctx)

    async def on_error(self, ctx):
        self.ev.push("error", ctx)


class SubEvents(SubscriptionEventHandler):
    def __init__(self, ev: Events):
        self.ev = ev

    async def on_subscribed(self, ctx):
        self.ev.push("subscribed", ctx)

    async def on_unsubscribed(self, ctx):
        self.ev.push("unsubscribed", ctx)

    async def on_publication(self, ctx):
        self.ev.push("publication", ctx.pub)

    async def on_join(self, ctx):
        self.ev.push("join", ctx.info)

    async def on_leave(self, ctx):
        self.ev.push("leave", ctx.info)

    async def on_error(self, ctx):
        self.ev.push("sub_error", ctx)


class Peer:
    def __init__(self, ws_url: str, user: str, secret: str, **kw):
        self.user = user
        self.ev = Events(user)
        self.client = Client(
            ws_url,
            events=ClientEvents(self.ev),
            token=token(user, secret),
            timeout=5.0,
            name="wshub-interop",
            proxy=None,
            **kw,
        )
        self.sub = None

    def subscribe(self, channel: str):
        self.sub = self.client.new_subscription(
            channel, events=SubEvents(self.ev), join_leave=True
        )
        return self.sub


def api_call(base: str, key: str, method: str, body: dict):
    req = urllib.request.Request(
        f"{base}/api/{method}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=WAIT) as resp:
        text = resp.read().decode()
        status = resp.status
    if status != 200:
        raise Fail(f"POST /api/{method} {body}: HTTP {status} {text}")
    v = json.loads(text)
    if v.get("error"):
        raise Fail(f"POST /api/{method} {body}: error {v['error']}")
    return v.get("result", {})


async def api(base, key, method, body):
    return await asyncio.wait_for(asyncio.to_thread(api_call, base, key, method, body), WAIT)


async def scenario(base: str, key: str, secret: str):
    ws_url = base.replace("http", "ws", 1) + "/connection/websocket"
    # Alice reconnects no sooner than 1.5 s after a disconnect, so the API
    # publishes below happen while she is away.
    a = Peer(ws_url, "alice", secret, min_reconnect_delay=1.5, max_reconnect_delay=2.0)
    b = Peer(ws_url, "bob", secret)
    for peer in (a, b):
        await peer.client.connect()
        try:
            await peer.client.ready(timeout=WAIT)
        except Exception as e:  # ClientDisconnectedError carries the server's code
            seen = [(d.code, d.reason) for d in peer.ev.drain("disconnected")]
            raise Fail(f"{peer.user} did not connect: {e!r}; disconnected events {seen}") from None
    a_conn = await a.ev.next("connected", "connect")
    b_conn = await b.ev.next("connected", "connect")
    check(a_conn.client and b_conn.client and a_conn.client != b_conn.client,
          f"client ids {a_conn.client!r} {b_conn.client!r}")
    ok(f"connected with JWT: alice={a_conn.client} bob={b_conn.client}")

    sa = a.subscribe(CHANNEL)
    await sa.subscribe()
    first = await a.ev.next("subscribed", "subscribe")
    eq(first.channel, CHANNEL, "subscribed channel")
    eq(first.recoverable, True, "subscribed.recoverable (force_recovery namespace)")
    eq(first.was_recovering, False, "first subscribed.was_recovering")
    check(first.stream_position is not None and first.stream_position.epoch,
          f"first subscribed.stream_position has an epoch: {first.stream_position!r}")
    eq(first.stream_position.offset, 0, "first stream position offset of a new channel")
    epoch = first.stream_position.epoch
    sb = b.subscribe(CHANNEL)
    await sb.subscribe()
    await b.ev.next("subscribed", "subscribe")
    joined = await a.ev.next("join", "a join")
    if joined.user == "alice":  # its own join first
        joined = await a.ev.next("join", "join of bob")
    eq((joined.user, joined.client), ("bob", b_conn.client), "join info seen by alice")
    ok(f"subscribed both to {CHANNEL} (recoverable, epoch {epoch}); alice saw bob join")

    await sb.publish({"text": "hello", "n": 1})
    p1 = await a.ev.next("publication", "publication 1")
    eq(p1.data, {"text": "hello", "n": 1}, "publication data")
    eq(p1.offset, 1, "publication offset")
    check(p1.info is not None and p1.info.user == "bob" and p1.info.client == b_conn.client,
          f"publication info (client publish carries the publisher): {p1.info!r}")
    ok("bob -> alice publication with offset 1 and publisher info")

    pr = await sa.presence()
    eq(sorted(i.user for i in pr.clients.values()), ["alice", "bob"], "presence users")
    eq(sorted(pr.clients), sorted([a_conn.client, b_conn.client]), "presence client ids")
    ps = await sa.presence_stats()
    eq((ps.num_clients, ps.num_users), (2, 2), "presence_stats (num_clients, num_users)")
    ok("presence shows both clients; presence_stats 2 clients / 2 users")

    for n in range(2, 6):
        await sb.publish({"text": "hello", "n": n})
    for n in range(2, 6):
        p = await a.ev.next("publication", f"publication {n}")
        eq((p.offset, p.data["n"]), (n, n), f"live publication {n} (offset, n)")
    pos = await sa.history(limit=0)
    eq((pos.offset, pos.epoch, len(pos.publications)), (5, epoch, 0), "history limit 0 (offset, epoch, #pubs)")
    h1 = await sa.history(limit=3)
    eq([p.offset for p in h1.publications], [1, 2, 3], "history limit 3 (oldest first) offsets")
    eq([p.data["n"] for p in h1.publications], [1, 2, 3], "history limit 3 data")
    h2 = await sa.history(limit=3, since=StreamPosition(offset=2, epoch=epoch))
    eq([p.offset for p in h2.publications], [3, 4, 5], "history since offset 2 limit 3: the last 3 in order")
    h3 = await sa.history(limit=3, reverse=True)
    eq([p.offset for p in h3.publications], [5, 4, 3], "history limit 3 reverse offsets")
    ok("history: position, limit, since, reverse")

    # Recovery after a forced disconnect (code 4000: the client reconnects).
    a.ev.drain("subscribed")
    a.ev.drain("connecting")
    b.ev.drain("publication")
    await api(base, key, "disconnect",
              {"user": "alice", "disconnect": {"code": 4000, "reason": "interop: reconnect"}})
    cing = await a.ev.next("connecting", "connecting after /api/disconnect")
    eq(cing.code, 4000, "connecting code after /api/disconnect with code 4000")
    t0 = time.monotonic()
    offsets = []
    for i in range(1, 4):
        r = await api(base, key, "publish", {"channel": CHANNEL, "data": {"text": "missed", "i": i}})
        offsets.append(r.get("offset"))
        eq(r.get("epoch"), epoch, "publish result epoch")
    eq(offsets, [6, 7, 8], "/api/publish result offsets")
    check(a.client.state == ClientState.CONNECTING,
          f"alice should still be away after the publishes (state {a.client.state})")
    await a.ev.next("connected", "reconnect")
    rec = await a.ev.next("subscribed", "resubscribe with recovery")
    eq((rec.was_recovering, rec.recovered), (True, True), "resubscribed (was_recovering, recovered)")
    eq((rec.stream_position.offset, rec.stream_position.epoch), (8, epoch), "resubscribed stream position")
    got = []
    for i in range(1, 4):
        p = await a.ev.next("publication", f"recovered publication {i}")
        got.append((p.offset, p.data))
    eq(got, [(6, {"text": "missed", "i": 1}), (7, {"text": "missed", "i": 2}),
             (8, {"text": "missed", "i": 3})], "recovered publications")
    await asyncio.sleep(0.3)
    eq([p.offset for p in a.ev.drain("publication")], [], "publications after the recovered ones")
    ok(f"recovery after /api/disconnect: exactly offsets 6,7,8 in order "
       f"(recovered=True, away {time.monotonic() - t0:.1f} s)")

    await sb.publish({"text": "after", "n": 9})
    p9 = await a.ev.next("publication", "publication after recovery")
    eq((p9.offset, p9.data), (9, {"text": "after", "n": 9}), "publication after recovery")
    ok("live publications continue after recovery")
    errs = a.ev.drain("sub_error") + b.ev.drain("sub_error")
    eq([f"{e.code}: {e.error}" for e in errs], [], "subscription error events")
    await a.client.disconnect()
    await b.client.disconnect()

    # A bad token: disconnected with 3500, and no reconnect.
    m = Peer(ws_url, "mallory", secret + "-wrong")
    await m.client.connect()
    d = await m.ev.next("disconnected", "disconnected after a bad token")
    eq(d.code, 3500, "bad token: disconnected code")
    await asyncio.sleep(1.5)
    eq(m.client.state, ClientState.DISCONNECTED, "bad token: client state 1.5 s later")
    eq(len(m.ev.drain("connected")), 0, "bad token: connected events")
    ok(f"bad token -> disconnected code 3500 ({d.reason!r}), no reconnect")


if __name__ == "__main__":
    common.main(scenario, __doc__.splitlines()[0], "all centrifuge-python checks passed", need_api_key=False)

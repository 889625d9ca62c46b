#!/usr/bin/env python3
"""Interop scenario: `cent`, the Python client of Centrifugo's server HTTP API,
against `wshub serve`.

Usage: cent_api.py [--url http://ADDR] [--api-key KEY] [--secret S]
(else $WSHUB_URL, $WSHUB_API_KEY, $WSHUB_HMAC_SECRET). The server needs the
`chat` namespace with presence and history (see crates/cli/tests/it/sdk_interop.rs).
A `centrifuge-python` client (user `carol`) is subscribed to `chat:room` so
that presence, presence_stats, channels and info have something to report.

Checks publish, broadcast, presence, presence_stats, history, history_remove,
channels, info (sync `cent.Client`, and publish with `cent.AsyncClient`), an
unknown namespace (API error 102) and a wrong API key (HTTP 401,
`CentUnauthorizedError`). Prints `ok ...` per check; on a mismatch prints
`FAIL: ...` on stderr and exits 1. Every wait is bounded.
"""

import asyncio

import requests
from cent import (
    AsyncClient,
    BroadcastRequest,
    ChannelsRequest,
    Client,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    StreamPosition,
)
from cent.exceptions import CentApiResponseError, CentUnauthorizedError
import centrifuge

from common import CHANNEL, WAIT, Fail, check, eq, ok, token
import common


def direct_session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # never through a proxy from the environment
    return s


class Pubs(centrifuge.SubscriptionEventHandler):
    def __init__(self):
        self.subscribed = asyncio.Queue()
        self.pubs = asyncio.Queue()

    async def on_subscribed(self, ctx):
        self.subscribed.put_nowait(ctx)

    async def on_publication(self, ctx):
        self.pubs.put_nowait(ctx.pub)


async def within(aw, what):
    try:
        return await asyncio.wait_for(aw, WAIT)
    except asyncio.TimeoutError:
        raise Fail(f"timed out after {WAIT}s waiting for {what}") from None


async def scenario(base: str, key: str, secret: str):
    api_url = base + "/api"
    cent = Client(api_url, api_key=key, timeout=WAIT, session=direct_session())

    # A subscriber, so that presence and channels are not empty.
    ws_url = base.replace("http", "ws", 1) + "/connection/websocket"
    carol = centrifuge.Client(ws_url, token=token("carol", secret), timeout=5.0, proxy=None)
    ev = Pubs()
    sub = carol.new_subscription(CHANNEL, events=ev)
    await within(carol.connect(), "carol connect")
    await within(sub.subscribe(), "carol subscribe")
    await within(ev.subscribed.get(), "carol subscribed")

    def call(req):
        # The sync client blocks: run it in a thread, bounded.
        return within(asyncio.to_thread(cent._send, req), f"cent {req.api_method}")

    r = await call(PublishRequest(channel=CHANNEL, data={"text": "one"}, tags={"k": "v"}))
    eq(r.offset, 1, "publish result offset")
    check(isinstance(r.epoch, str) and r.epoch, f"publish result epoch: {r.epoch!r}")
    epoch = r.epoch
    p = await within(ev.pubs.get(), "publication 1 at carol")
    eq((p.offset, p.data, p.tags), (1, {"text": "one"}, {"k": "v"}), "carol got (offset, data, tags)")
    check(p.info is None, f"an API publication has no client info: {p.info!r}")
    ok(f"publish -> offset 1 epoch {epoch}; delivered with tags")

    r = await call(BroadcastRequest(channels=[CHANNEL, "chat:other"], data={"text": "two"}))
    eq(len(r.responses), 2, "broadcast responses")
    for resp, want in zip(r.responses, [2, 1]):
        check(resp.error is None, f"broadcast response error: {resp.error!r}")
        eq(resp.result.offset, want, "broadcast response offset")
    p = await within(ev.pubs.get(), "broadcast publication at carol")
    eq((p.offset, p.data), (2, {"text": "two"}), "carol got the broadcast")
    ok("broadcast to 2 channels -> offsets [2, 1]")

    async with AsyncClient(api_url, api_key=key, timeout=WAIT) as acent:
        r = await within(acent.publish(PublishRequest(channel=CHANNEL, data={"text": "three"})),
                         "AsyncClient publish")
    eq(r.offset, 3, "AsyncClient publish offset")
    await within(ev.pubs.get(), "publication 3 at carol")
    ok("AsyncClient publish -> offset 3")

    r = await call(PresenceRequest(channel=CHANNEL))
    eq([(c.user, c.client) for c in r.presence.values()], [("carol", cid) for cid in r.presence],
       "presence entries (user, client id keyed by client id)")
    eq(len(r.presence), 1, "presence size")
    r = await call(PresenceStatsRequest(channel=CHANNEL))
    eq((r.num_clients, r.num_users), (1, 1), "presence_stats")
    ok("presence -> carol; presence_stats 1/1")

    r = await call(HistoryRequest(channel=CHANNEL, limit=10))
    eq([(x.offset, x.data) for x in r.publications],
       [(1, {"text": "one"}), (2, {"text": "two"}), (3, {"text": "three"})], "history publications")
    eq((r.offset, r.epoch), (3, epoch), "history stream position")
    eq(r.publications[0].tags, {"k": "v"}, "history keeps tags")
    r = await call(HistoryRequest(channel=CHANNEL, limit=1, since=StreamPosition(offset=2, epoch=epoch)))
    eq([x.offset for x in r.publications], [3], "history since offset 2 limit 1")
    r = await call(HistoryRequest(channel=CHANNEL, limit=2, reverse=True))
    eq([x.offset for x in r.publications], [3, 2], "history limit 2 reverse")
    r = await call(HistoryRequest(channel=CHANNEL))
    eq((len(r.publications), r.offset, r.epoch), (0, 3, epoch), "history without limit: position only")
    ok("history: limit, since, reverse, position only")

    await call(HistoryRemoveRequest(channel=CHANNEL))
    r = await call(HistoryRequest(channel=CHANNEL, limit=10))
    eq(r.publications, [], "history after history_remove")
    ok(f"history_remove -> empty history (stream position now offset {r.offset}, epoch {r.epoch})")

    r = await call(ChannelsRequest())
    check(CHANNEL in r.channels, f"channels lists {CHANNEL}: {r.channels!r}")
    eq(r.channels[CHANNEL].num_clients, 1, "channels num_clients")
    r2 = await call(ChannelsRequest(pattern="nomatch:*"))
    eq(r2.channels, {}, "channels with a pattern that matches nothing")
    ok(f"channels -> {sorted(r.channels)}")

    r = await call(InfoRequest())
    eq(len(r.nodes), 1, "info nodes")
    n = r.nodes[0]
    check(n.uid and n.name, f"info node uid/name: {n!r}")
    eq((n.num_clients, n.num_users), (1, 1), "info node (num_clients, num_users)")
    check(n.num_channels >= 1 and n.num_subs >= 1, f"info node channels/subs: {n!r}")
    ok(f"info -> 1 node {n.name} version {n.version!r}")

    try:
        await call(PublishRequest(channel="nosuchns:x", data={}))
        raise Fail("publish to an unknown namespace succeeded")
    except CentApiResponseError as e:
        eq(e.code, 102, "publish to an unknown namespace: API error code (102 unknown channel)")
    ok("publish to an unknown namespace -> error 102")

    pos = (await call(HistoryRequest(channel=CHANNEL))).offset
    bad = Client(api_url, api_key=key + "-wrong", timeout=WAIT, session=direct_session())
    try:
        await within(asyncio.to_thread(bad.publish, PublishRequest(channel=CHANNEL, data={})),
                     "publish with a wrong key")
        raise Fail("publish with a wrong API key succeeded")
    except CentUnauthorizedError:
        pass
    r = await call(HistoryRequest(channel=CHANNEL))
    eq(r.offset, pos, "stream position after the rejected publish (nothing published)")
    ok("wrong API key -> HTTP 401 (CentUnauthorizedError), nothing published")

    await carol.disconnect()
    cent.close()


if __name__ == "__main__":
    common.main(scenario, __doc__.splitlines()[0], "all cent checks passed", need_api_key=True)

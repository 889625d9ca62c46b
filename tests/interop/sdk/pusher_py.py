#!/usr/bin/env python3
"""Interop scenario: the official `pusher` server SDK from PyPI against the
Pusher front of `wshub serve`, with Python `websockets` as a raw protocol 7
client (neither is ours).

Usage: pusher_py.py --url http://ADDR --app-id ID --key KEY --secret SECRET

Checks: the SDK's channel authorization (`authenticate`) is accepted for a
private and a presence channel; `trigger` (one channel, several, with
`socket_id` exclusion) and `trigger_batch` reach the client;
`channels_info`, `channel_info` and `users_info` report what the client
holds; a wrong secret is refused with 401. Prints `ok ...` per check; on a
mismatch prints `FAIL: ...` and exits 1. Every wait is bounded.
"""

import argparse
import asyncio
import json
import sys

import pusher
import websockets

WAIT = 5.0


def ok(what):
    print(f"ok {what}", flush=True)


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    ok(what)


class Client:
    """A raw protocol 7 client: JSON messages in, parsed messages out."""

    def __init__(self, ws):
        self.ws = ws
        self.socket_id = None

    @classmethod
    async def connect(cls, url, key):
        ws = await websockets.connect(f"{url}/app/{key}?protocol=7&client=py&version=1")
        c = cls(ws)
        m = await c.recv()
        assert m["event"] == "pusher:connection_established", m
        c.socket_id = json.loads(m["data"])["socket_id"]
        return c

    async def send(self, event, data, channel=None):
        m = {"event": event, "data": data}
        if channel is not None:
            m["channel"] = channel
        await self.ws.send(json.dumps(m))

    async def recv(self):
        return json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))

    async def expect(self, event, channel=None):
        """The next message named `event` (others are skipped)."""
        async def loop():
            while True:
                m = await self.recv()
                if m.get("event") == event and (channel is None or m.get("channel") == channel):
                    return m
        return await asyncio.wait_for(loop(), WAIT)

    async def expect_all(self, wanted):
        """Every (event, channel) of `wanted`, in any order: events of
        different channels have no order between them."""
        left = set(wanted)

        async def loop():
            while left:
                m = await self.recv()
                left.discard((m.get("event"), m.get("channel")))
        await asyncio.wait_for(loop(), WAIT)

    async def nothing(self, seconds):
        """True when no event other than pings arrives within `seconds`."""
        try:
            while True:
                m = json.loads(await asyncio.wait_for(self.ws.recv(), seconds))
                if not m.get("event", "").startswith("pusher:ping"):
                    return False
        except asyncio.TimeoutError:
            return True


async def main(a):
    host, port = a.url.removeprefix("http://").rsplit(":", 1)
    sdk = pusher.Pusher(app_id=a.app_id, key=a.key, secret=a.secret, ssl=False, host=host, port=int(port))
    ws_url = "ws://" + a.url.removeprefix("http://")

    one = await Client.connect(ws_url, a.key)
    two = await Client.connect(ws_url, a.key)
    check(one.socket_id != two.socket_id, f"two socket ids ({one.socket_id}, {two.socket_id})")

    # Private channel, authorized by the SDK.
    auth = sdk.authenticate(channel="private-py", socket_id=one.socket_id)
    await one.send("pusher:subscribe", {"channel": "private-py", "auth": auth["auth"]})
    await one.expect("pusher_internal:subscription_succeeded", "private-py")
    ok("private channel authorized by the Python SDK")

    # Presence channel, with channel_data signed by the SDK.
    user = {"user_id": "py-user", "user_info": {"name": "Py"}}
    auth = sdk.authenticate(channel="presence-py", socket_id=one.socket_id, custom_data=user)
    await one.send("pusher:subscribe", {
        "channel": "presence-py", "auth": auth["auth"], "channel_data": auth["channel_data"]})
    m = await one.expect("pusher_internal:subscription_succeeded", "presence-py")
    presence = json.loads(m["data"])["presence"]
    check(presence["count"] == 1 and presence["hash"]["py-user"]["name"] == "Py",
          f"presence channel authorized by the Python SDK ({presence})")

    for c in (one, two):
        await c.send("pusher:subscribe", {"channel": "py-public"})
        await c.expect("pusher_internal:subscription_succeeded", "py-public")

    sdk.trigger("py-public", "greet", {"text": "héllo"})
    m = await one.expect("greet", "py-public")
    check(json.loads(m["data"]) == {"text": "héllo"}, "trigger reaches the client, data intact")
    await two.expect("greet", "py-public")

    sdk.trigger(["py-public", "private-py"], "multi", "x")
    await one.expect_all([("multi", "py-public"), ("multi", "private-py")])
    ok("trigger to two channels reaches both")

    sdk.trigger("py-public", "excl", {}, socket_id=one.socket_id)
    await two.expect("excl", "py-public")
    check(await one.nothing(0.7), "trigger with socket_id skips that socket")

    sdk.trigger_batch([
        {"channel": "py-public", "name": "b1", "data": "1"},
        {"channel": "private-py", "name": "b2", "data": "2"},
    ])
    await one.expect_all([("b1", "py-public"), ("b2", "private-py")])
    ok("trigger_batch")

    info = sdk.channels_info(prefix_filter="presence-", attributes=["user_count"])
    check(info["channels"].get("presence-py", {}).get("user_count") == 1, f"channels_info ({info})")
    info = sdk.channel_info("py-public", attributes=["subscription_count"])
    check(info.get("occupied") is True and info.get("subscription_count") == 2, f"channel_info ({info})")
    users = sdk.users_info("presence-py")
    check(users == {"users": [{"id": "py-user"}]}, f"users_info ({users})")

    wrong = pusher.Pusher(app_id=a.app_id, key=a.key, secret="wrong", ssl=False, host=host, port=int(port))
    try:
        wrong.trigger("py-public", "x", {})
        check(False, "a wrong secret is refused")
    except pusher.errors.PusherBadAuth as e:
        ok(f"a wrong secret is refused with 401 ({str(e).strip()[:80]})")

    await one.ws.close()
    await two.ws.close()
    print("done", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    for name in ("--url", "--app-id", "--key", "--secret"):
        p.add_argument(name, required=True)
    asyncio.run(main(p.parse_args()))

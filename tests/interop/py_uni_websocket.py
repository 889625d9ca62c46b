#!/usr/bin/env python3
"""A plain Python `websockets` client on wshub's `uni_websocket` endpoint.

Usage: py_uni_websocket.py URL [CONNECT_JSON]

Opens URL (which may carry `cf_connect`); when CONNECT_JSON is given, sends
it as the first message (a bare Centrifugo ConnectRequest). Then prints
every text frame it receives, one per line (a frame that holds several
`\\n`-separated pushes prints as several lines), and `closed CODE REASON`
when the server closes. Exits after the close or after 20 s.
"""

import asyncio
import sys

try:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(f"FAIL: cannot import websockets ({e})", file=sys.stderr)
    sys.exit(3)


async def main(url, first):
    async with connect(url, open_timeout=10, max_size=2**20) as ws:
        if first is not None:
            await ws.send(first)
        try:
            while True:
                frame = await ws.recv()
                for line in frame.split("\n"):
                    print(line, flush=True)
        except ConnectionClosed as c:
            code = c.rcvd.code if c.rcvd else 1006
            reason = c.rcvd.reason if c.rcvd else ""
            print(f"closed {code} {reason}", flush=True)


if __name__ == "__main__":
    url = sys.argv[1]
    first = sys.argv[2] if len(sys.argv) > 2 else None
    try:
        asyncio.run(asyncio.wait_for(main(url, first), 20))
    except asyncio.TimeoutError:
        print("timeout", flush=True)

#!/usr/bin/env python3
"""Python `websockets` echo server used as a peer we did not write.

Usage: py_echo_server.py (--deflate | --no-deflate) [--port 0] [--close-code N]

Prints exactly `listening on ws://127.0.0.1:PORT` on stdout when ready.
Echoes every message with its type (text stays text, binary stays binary).
Negotiates the subprotocol `chat.v1` when the client offers it (a client that
offers none is accepted without one). A connection to the path `/info` first
receives one text message, a JSON object with what the server negotiated:
{"subprotocol": ..., "extensions": <Sec-WebSocket-Extensions sent or null>},
then is echoed like any other.

With --close-code N the server closes every connection with code N (reason
"bye from server") when the first message arrives, instead of echoing.

For each connection it prints `open path=P subprotocol=S extensions=E` and,
when it ends, `closed code=C reason=R` (C is the code the client sent, or
1006 if the TCP connection ended without a close frame).

Exits when its stdin reaches end of file (so it never outlives the test that
spawned it) or when killed.
"""

import argparse
import asyncio
import json
import sys

try:
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(
        f"FAIL: cannot import websockets ({e}); install it with "
        "`python3 -m venv .venv && .venv/bin/pip install -r tests/interop/requirements.txt`",
        file=sys.stderr,
    )
    sys.exit(3)

from interop_payloads import MAX_MESSAGE

SUBPROTOCOL = "chat.v1"


def select_subprotocol(connection, offered):
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def make_handler(close_code):
    async def handler(ws):
        path = ws.request.path
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        print(
            f"open path={path} subprotocol={ws.subprotocol or 'none'} extensions={ext or 'none'}",
            flush=True,
        )
        try:
            if path == "/info":
                await ws.send(json.dumps({"subprotocol": ws.subprotocol, "extensions": ext}))
            async for msg in ws:
                if close_code is not None:
                    await ws.close(close_code, "bye from server")
                    break
                await ws.send(msg)
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        rcvd = ws.protocol.close_rcvd
        if rcvd is None:
            print("closed code=1006 reason=", flush=True)
        else:
            print(f"closed code={rcvd.code} reason={rcvd.reason}", flush=True)

    return handler


async def wait_stdin_eof():
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)


async def main():
    ap = argparse.ArgumentParser()
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--deflate", dest="deflate", action="store_true")
    g.add_argument("--no-deflate", dest="deflate", action="store_false")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--close-code", type=int, default=None)
    args = ap.parse_args()

    async with serve(
        make_handler(args.close_code),
        "127.0.0.1",
        args.port,
        compression="deflate" if args.deflate else None,
        select_subprotocol=select_subprotocol,
        max_size=MAX_MESSAGE,
        ping_interval=None,
        close_timeout=5,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}", flush=True)
        await wait_stdin_eof()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass

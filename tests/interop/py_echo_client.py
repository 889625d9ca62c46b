#!/usr/bin/env python3
"""Python `websockets` client that checks an echo server byte for byte.

Usage: py_echo_client.py URL (--deflate | --no-deflate) [--max-size BYTES]

For every size in interop_payloads.SIZES it sends a text message (non-ASCII
rich) and a binary message and checks that the echo is the same type and the
same bytes. Then it sends a ping and waits for the matching pong, then closes
with 1000 and checks that the server answered the close with 1000 and closed
the TCP connection.

Prints `extensions: <negotiated Sec-WebSocket-Extensions or none>` first, one
`ok ...` line per check, and `all ok` at the end. Exits 0 only if every check
passed; on any failure prints `FAIL: ...` to stderr and exits 1.
"""

import argparse
import asyncio
import sys
import time

from interop_payloads import MAX_MESSAGE, SIZES, binary_payload, text_payload

try:
    import websockets
    from websockets.asyncio.client import connect
    from websockets.extensions.permessage_deflate import PerMessageDeflate
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(
        f"FAIL: cannot import websockets ({e}); install it with "
        "`python3 -m venv .venv && .venv/bin/pip install -r tests/interop/requirements.txt`",
        file=sys.stderr,
    )
    sys.exit(3)

TIMEOUT = 60.0


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def describe(data):
    kind = "text" if isinstance(data, str) else "binary"
    return f"{kind} of {len(data)} chars/bytes"


async def run(url, deflate, max_size):
    async with connect(
        url,
        compression="deflate" if deflate else None,
        max_size=max_size,
        proxy=None,
        ping_interval=None,
        open_timeout=10,
        close_timeout=5,
    ) as ws:
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        print(f"extensions: {header or 'none'}", flush=True)
        pmd = [e for e in ws.protocol.extensions if isinstance(e, PerMessageDeflate)]
        if deflate:
            check(len(pmd) == 1, f"permessage-deflate not negotiated (header: {header!r})")
        else:
            check(not ws.protocol.extensions, f"unexpected extensions negotiated: {header!r}")

        for size in SIZES:
            for kind in ("text", "binary"):
                sent = text_payload(size) if kind == "text" else binary_payload(size)
                await asyncio.wait_for(ws.send(sent), TIMEOUT)
                got = await asyncio.wait_for(ws.recv(), TIMEOUT)
                check(
                    type(got) is type(sent),
                    f"{kind} {size}: sent {describe(sent)}, echo is {describe(got)}",
                )
                if got != sent:
                    if isinstance(sent, str):
                        a, b = sent.encode("utf-8"), got.encode("utf-8")
                    else:
                        a, b = sent, got
                    first = next(
                        (i for i in range(min(len(a), len(b))) if a[i] != b[i]),
                        min(len(a), len(b)),
                    )
                    raise CheckFailed(
                        f"{kind} {size}: echo differs: sent {len(a)} bytes, got "
                        f"{len(b)} bytes, first difference at byte {first}"
                    )
                print(f"ok {kind} {size}", flush=True)

        payload = b"ping \xce\xba\x00\xff"
        waiter = await ws.ping(payload)
        try:
            await asyncio.wait_for(waiter, 10)
        except asyncio.TimeoutError:
            raise CheckFailed(f"no pong with payload {payload!r} within 10 s")
        print("ok ping", flush=True)

        start = time.monotonic()
        await ws.close(1000, "bye")
        elapsed = time.monotonic() - start
        rcvd = ws.protocol.close_rcvd
        check(rcvd is not None, "server closed TCP without sending a close frame")
        check(
            rcvd.code == 1000,
            f"server answered close 1000 with code {rcvd.code} reason {rcvd.reason!r}",
        )
        check(not ws.protocol.close_rcvd_then_sent, "server sent its close frame first")
        check(
            elapsed < 4,
            f"server did not close the TCP connection after the close handshake ({elapsed:.1f} s)",
        )
        print(f"ok close {rcvd.code}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--deflate", dest="deflate", action="store_true")
    g.add_argument("--no-deflate", dest="deflate", action="store_false")
    ap.add_argument("--max-size", type=int, default=MAX_MESSAGE)
    args = ap.parse_args()
    try:
        asyncio.run(run(args.url, args.deflate, args.max_size))
    except CheckFailed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print("all ok", flush=True)


if __name__ == "__main__":
    main()

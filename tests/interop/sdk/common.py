"""Shared pieces of the Python interop scenarios (`cent_api.py`,
`centrifuge_py.py`): check helpers, HS256 connection tokens built with the
standard library, and the command-line entry point."""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time

WAIT = 10.0
CHANNEL = "chat:room"


class Fail(Exception):
    pass


def ok(msg):
    print("ok " + msg, flush=True)


def eq(actual, expected, what):
    if actual != expected:
        raise Fail(f"{what}: expected {expected!r}, got {actual!r}")


def check(cond, what):
    if not cond:
        raise Fail(what)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(user: str, secret: str) -> str:
    now = int(time.time())
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": user, "iat": now, "exp": now + 3600}).encode())
    sig = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(sig)}"


def main(scenario, description, done, need_api_key):
    """Parses --url/--api-key/--secret (or $WSHUB_URL, $WSHUB_API_KEY,
    $WSHUB_HMAC_SECRET), runs `scenario(base, key, secret)` within 90 s, and
    exits 1 with `FAIL: ...` on a mismatch."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--url", default=os.environ.get("WSHUB_URL", ""))
    ap.add_argument("--api-key", default=os.environ.get("WSHUB_API_KEY", ""))
    ap.add_argument("--secret", default=os.environ.get("WSHUB_HMAC_SECRET", ""))
    args = ap.parse_args()
    if not args.url.startswith("http://") or not args.secret or (need_api_key and not args.api_key):
        ap.error("need --url http://ADDR, --secret" + (" and --api-key" if need_api_key else "")
                 + " (or the WSHUB_* variables)")
    try:
        asyncio.run(asyncio.wait_for(scenario(args.url.rstrip("/"), args.api_key, args.secret), 90))
    except Fail as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except asyncio.TimeoutError:
        print("FAIL: the scenario did not finish within 90 s", file=sys.stderr, flush=True)
        sys.exit(1)
    ok(done)

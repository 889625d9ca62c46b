#!/usr/bin/env python3
"""Raw-socket client: sends a text frame that is not valid UTF-8.

Usage: py_raw_invalid_utf8.py ws://HOST:PORT/PATH

Does the opening handshake by hand (plain socket, standard library only),
then sends one masked, final text frame whose payload is
`ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80` ("κόσμε" followed by an encoded
UTF-16 surrogate, U+D800, which UTF-8 forbids).

RFC 6455 §8.1 requires the server to fail the connection with 1007. The
script checks that the next frame from the server is a close frame with code
1007 (no echo of the bad message before it), answers it with a close frame,
and checks that the server then closes the TCP connection.

Prints `close code 1007` and `all ok` on success; `FAIL: ...` on stderr and
exit status 1 otherwise.
"""

import base64
import hashlib
import os
import socket
import struct
import sys
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BAD = bytes.fromhex("ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80")
TIMEOUT = 10.0


class CheckFailed(Exception):
    pass


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise CheckFailed(f"connection closed after {len(buf)} of {n} expected bytes")
        buf += chunk
    return buf


def masked_frame(opcode, payload):
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + body


def read_frame(sock):
    b0, b1 = recv_exact(sock, 2)
    if b1 & 0x80:
        raise CheckFailed("server sent a masked frame")
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", recv_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", recv_exact(sock, 8))
    return b0, recv_exact(sock, n)


def handshake(sock, host, path):
    key = base64.b64encode(os.urandom(16))
    req = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode()
    sock.sendall(req)
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = sock.recv(4096)
        if not chunk:
            raise CheckFailed(f"connection closed during handshake; got {resp!r}")
        resp += chunk
        if len(resp) > 65536:
            raise CheckFailed("handshake response too large")
    head, _, rest = resp.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 101"):
        raise CheckFailed(f"handshake refused: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    expected = base64.b64encode(hashlib.sha1(key + GUID).digest())
    if headers.get(b"sec-websocket-accept") != expected:
        raise CheckFailed(f"bad Sec-WebSocket-Accept: {headers.get(b'sec-websocket-accept')!r}")
    if rest:
        raise CheckFailed(f"server sent {len(rest)} unexpected bytes after the 101 response")


def run(url):
    u = urlsplit(url)
    if u.scheme != "ws":
        raise CheckFailed(f"only ws:// URLs are supported, got {url}")
    port = u.port or 80
    path = u.path or "/"
    with socket.create_connection((u.hostname, port), timeout=TIMEOUT) as sock:
        handshake(sock, f"{u.hostname}:{port}", path)
        sock.sendall(masked_frame(0x1, BAD))
        b0, payload = read_frame(sock)
        opcode = b0 & 0x0F
        if opcode != 0x8:
            raise CheckFailed(
                f"expected a close frame, got opcode {opcode:#x} with {len(payload)} bytes "
                f"({payload[:32].hex(' ')})"
            )
        if len(payload) < 2:
            raise CheckFailed(f"close frame without a status code ({payload.hex(' ')})")
        (code,) = struct.unpack("!H", payload[:2])
        print(f"close code {code}", flush=True)
        if code != 1007:
            raise CheckFailed(f"expected close code 1007, got {code} ({payload[2:]!r})")
        # Answer the close, then the server must close the TCP connection.
        try:
            sock.sendall(masked_frame(0x8, payload[:2]))
        except OSError:
            pass  # the server may already have closed; that is allowed
        try:
            rest = sock.recv(1024)
        except socket.timeout:
            raise CheckFailed("server did not close the TCP connection after the close frames")
        except ConnectionResetError:
            rest = b""
        if rest:
            raise CheckFailed(f"server sent more bytes after its close frame: {rest.hex(' ')}")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        run(sys.argv[1])
    except (CheckFailed, OSError) as e:
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print("all ok", flush=True)


if __name__ == "__main__":
    main()

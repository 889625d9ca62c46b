#!/usr/bin/env python3
"""Hostile HTTP/2 clients against a WebSocket-over-HTTP/2 server (RFC 8441).

Usage: py_h2_hostile.py COMMAND HOST:PORT [OPTIONS]

Every command opens its own TCP connection(s) to HOST:PORT, speaks
cleartext HTTP/2 with prior knowledge, and prints ONE JSON line that says
what the server did (statuses, RST_STREAM and GOAWAY codes, when the
connection closed, how many bytes got through). The script judges nothing
but its own ability to run (exit 0; 2 for bad usage; 3 when its overall
time bound, --limit, ran out), except `roundtrip`, which exits 1 when the
round trip failed. The caller asserts the outcome.

Frames are produced by the `h2` library (`h2.connection.H2Connection`,
client side) wherever it is willing to produce them, and written by hand
(RFC 9113 frame layout, HPACK literals that never touch the dynamic table)
where the abuse is something the library refuses to do. Everything the
server sends is parsed here frame by frame (that view is what is
reported), and fed to the library too as long as the library's view of
the connection is still the server's.

Commands:
  roundtrip              a well-behaved HTTP/2 WebSocket echo (text + 64 KiB
                         binary, close 1000) and an HTTP/1.1 one (Python
                         `websockets`); exit 1 unless both worked
  rapid-reset [--streams N]
                         N (1000) extended CONNECTs, each reset (CANCEL) at
                         once, in a burst
  continuation-flood [--megabytes M] [--frame-size B]
                         HEADERS without END_HEADERS, then CONTINUATION
                         frames of B (16384) bytes of a valid, endless
                         header block, until M (8) MiB are written
  settings-flood [--frames N] [--seconds S]
                         a WebSocket first (so the server's wait for a
                         first request is over), then N (200000) SETTINGS
                         frames written for at most S (8) s without reading
                         the ACKs; then the ACKs are read, a PING sent and
                         the WebSocket must still echo
  idle --send (nothing|magic|preface|partial-headers) [--wait S]
                         connects, sends that much (nothing, the 24-byte
                         magic, magic + SETTINGS, or that and a HEADERS
                         frame whose block never ends) and waits at most S
                         (15) s for the server to close
  too-many-streams [--streams N]
                         N (200) extended CONNECTs at once (the library is
                         told the server has no stream limit), then an echo
                         on each accepted one, then: one closed, one more
                         opened
  window-stall [--ws-streams K] [--message-kib S] [--megabytes M]
                         K (1) WebSockets, binary messages of S (1024) KiB
                         sent as fast as the server's windows allow, up to M
                         (64) MiB in all, the echoes never granted a
                         WINDOW_UPDATE: how much does the server take in?
  window-overflow --scope (stream|connection)
                         DATA past the server's advertised stream window on
                         one stream, or past its connection window over five
                         streams, while the server cannot write (our
                         INITIAL_WINDOW_SIZE is 0) and so stops reading
  bad-requests           wrong :protocol, plain CONNECT, :protocol on GET,
                         no or a wrong sec-websocket-version, GET, CONNECT
                         without :path; then a valid WebSocket on the same
                         connection
"""

import argparse
import collections
import json
import os
import select
import signal
import socket
import struct
import sys
import time

import hpack
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

FRAME_NAMES = [
    "DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE",
    "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION",
]

MAX_FRAME = 16384


def code_name(code):
    if code is None:
        return None
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"UNKNOWN_{code:#x}"


def raw_frame(typ, flags, sid, payload=b""):
    return struct.pack("!I", len(payload))[1:] + bytes([typ, flags]) + struct.pack("!I", sid & 0x7FFFFFFF) + payload


def literal_block(headers):
    """An HPACK block of never-indexed literals: it leaves the server's
    dynamic table as it was, so the library's encoder stays in step."""
    return hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(n, v) for n, v in headers])


# ----- RFC 6455 framing ------------------------------------------------------

WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def ws_frame(opcode, payload, fin=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    mask = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big") if n else b""
    return head + key + body


def ws_parse(buf):
    """Whole server frames at the start of `buf`: ([(fin, opcode, payload)], rest)."""
    out = []
    while len(buf) >= 2:
        b0, b1 = buf[0], buf[1]
        if b1 & 0x80:
            raise ValueError("server sent a masked frame")
        n, off = b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            (n,), off = struct.unpack("!H", buf[2:4]), 4
        elif n == 127:
            if len(buf) < 10:
                break
            (n,), off = struct.unpack("!Q", buf[2:10]), 10
        if len(buf) < off + n:
            break
        out.append((bool(b0 & 0x80), b0 & 0x0F, bytes(buf[off:off + n])))
        buf = buf[off + n:]
    return out, buf


def ws_messages(data):
    """Whole messages (opcode, payload) in a server byte stream."""
    frames, _ = ws_parse(bytes(data))
    msgs, parts, first = [], [], None
    for fin, op, payload in frames:
        if op >= 0x8:
            msgs.append((op, payload))
            continue
        if op != 0:
            first = op
        parts.append(payload)
        if fin:
            msgs.append((first, b"".join(parts)))
            parts = []
    return msgs


# ----- the connection --------------------------------------------------------


def lib_connection(validate=True, local=None):
    cfg = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=validate,
        normalize_outbound_headers=validate,
    )
    conn = h2.connection.H2Connection(config=cfg)
    if local:
        values = {
            SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            SettingCodes.MAX_HEADER_LIST_SIZE: conn.DEFAULT_MAX_HEADER_LIST_SIZE,
        }
        values.update(local)
        conn.local_settings = h2.settings.Settings(client=True, initial_values=values)
    conn.initiate_connection()
    return conn


class Wire:
    """One TCP connection: writes bytes (the library's or raw frames),
    parses every frame the server sends, and keeps the facts."""

    def __init__(self, addr, lib=None):
        self.addr = addr
        self.t0 = time.monotonic()
        self.sock = socket.create_connection(addr, timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.lib = lib
        self.lib_fed = lib is not None
        self.lib_error = None
        self.grant_windows = True  # acknowledge DATA to the library (WINDOW_UPDATE)
        self.auto_ack = True  # answer SETTINGS/PING when the library is not fed
        self.inbuf = bytearray()
        self.outq = bytearray()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.hblock = None
        self.closed = None
        self.closed_at = None
        self.goaway = None
        self.goaway_at = None
        self.rst = {}
        self.rst_at = {}
        self.status = {}
        self.headers = {}
        self.data = collections.defaultdict(bytearray)
        self.ended = set()
        self.server_settings = None
        self.settings_frames = 0
        self.settings_acks = 0
        self.ping_acks = 0
        self.window_updates = collections.defaultdict(int)
        self.frames_in = collections.Counter()
        self.bytes_in = 0
        self.bytes_out = 0
        self.send_error = None
        self.events = []

    def now(self):
        return round(time.monotonic() - self.t0, 3)

    # -- output --

    def queue(self, data):
        self.outq += data

    def flush_lib(self):
        if self.lib is not None and self.lib_fed:
            self.outq += self.lib.data_to_send()

    def flush(self, deadline=None, read=True):
        """Writes the queue; returns True when all of it went out, False when
        the connection broke or `deadline` (monotonic) passed first."""
        self.flush_lib()
        deadline = deadline if deadline is not None else time.monotonic() + 10
        while self.outq:
            if self.closed and self.send_error:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, w, _ = select.select([self.sock] if read else [], [self.sock], [], min(left, 0.5))
            if r:
                self._read_once()
            if w:
                try:
                    n = self.sock.send(self.outq[:1 << 16])
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    self.send_error = f"{type(e).__name__}: {e}"
                    self._mark_closed("send " + type(e).__name__)
                    return False
                self.bytes_out += n
                del self.outq[:n]
            self.flush_lib()
        return True

    def send(self, data, deadline=None, read=True):
        self.queue(data)
        return self.flush(deadline, read)

    # -- input --

    def _mark_closed(self, how):
        if self.closed is None:
            self.closed = how
            self.closed_at = self.now()

    def _read_once(self):
        if self.closed and not self.send_error:
            return
        try:
            chunk = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._mark_closed(type(e).__name__)
            return
        if not chunk:
            self._mark_closed("eof")
            return
        self.bytes_in += len(chunk)
        self.inbuf += chunk
        self._parse()
        if self.lib is not None and self.lib_fed:
            try:
                events = self.lib.receive_data(chunk)
            except h2.exceptions.H2Error as e:
                self.lib_error = f"{type(e).__name__}: {e}"
                self.lib_fed = False
                return
            self.events.extend(events)
            for ev in events:
                if isinstance(ev, h2.events.DataReceived) and self.grant_windows and ev.flow_controlled_length:
                    try:
                        self.lib.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    except h2.exceptions.H2Error:
                        pass
            self.outq += self.lib.data_to_send()

    def _parse(self):
        buf = self.inbuf
        while len(buf) >= 9:
            length = int.from_bytes(buf[0:3], "big")
            if len(buf) < 9 + length:
                break
            typ, flags = buf[3], buf[4]
            sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(buf[9:9 + length])
            del buf[:9 + length]
            self._frame(typ, flags, sid, payload)

    def _frame(self, typ, flags, sid, payload):
        self.frames_in[FRAME_NAMES[typ] if typ < len(FRAME_NAMES) else f"type{typ}"] += 1
        raw_acks = self.auto_ack and not (self.lib is not None and self.lib_fed)
        if typ in (DATA, HEADERS) and flags & PADDED and payload:
            pad = payload[0]
            payload = payload[1:len(payload) - pad]
        if typ == DATA:
            self.data[sid] += payload
            if flags & END_STREAM:
                self.ended.add(sid)
        elif typ == HEADERS:
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self.hblock = [sid, bytearray(payload), flags]
            if flags & END_HEADERS:
                self._headers_done()
        elif typ == CONTINUATION and self.hblock:
            self.hblock[1] += payload
            if flags & END_HEADERS:
                self._headers_done()
        elif typ == RST_STREAM and len(payload) >= 4:
            self.rst.setdefault(sid, struct.unpack("!I", payload[:4])[0])
            self.rst_at.setdefault(sid, self.now())
        elif typ == SETTINGS:
            if flags & ACK:
                self.settings_acks += 1
            else:
                self.settings_frames += 1
                if self.server_settings is None:
                    self.server_settings = {}
                    for i in range(0, len(payload) - 5, 6):
                        k, v = struct.unpack("!HI", payload[i:i + 6])
                        try:
                            name = SettingCodes(k).name
                        except ValueError:
                            name = str(k)
                        self.server_settings[name] = v
                if raw_acks:
                    self.queue(raw_frame(SETTINGS, ACK, 0))
        elif typ == PING:
            if flags & ACK:
                self.ping_acks += 1
            elif raw_acks:
                self.queue(raw_frame(PING, ACK, 0, payload))
        elif typ == GOAWAY and len(payload) >= 8:
            last, code = struct.unpack("!II", payload[:8])
            if self.goaway is None:
                self.goaway_at = self.now()
            self.goaway = {
                "code": code,
                "name": code_name(code),
                "last_stream_id": last & 0x7FFFFFFF,
                "debug": payload[8:200].decode("utf-8", "replace"),
            }
        elif typ == WINDOW_UPDATE and len(payload) >= 4:
            self.window_updates[sid] += struct.unpack("!I", payload[:4])[0] & 0x7FFFFFFF

    def _headers_done(self):
        sid, block, flags = self.hblock
        self.hblock = None
        try:
            hs = self.decoder.decode(bytes(block), raw=True)
        except Exception as e:  # noqa: BLE001 - reported, not judged
            self.headers[sid] = {"hpack_error": str(e)}
            return
        d = {n.decode("latin-1"): v.decode("latin-1") for n, v in hs}
        self.headers.setdefault(sid, d)
        if ":status" in d and sid not in self.status:
            self.status[sid] = int(d[":status"])
        if flags & END_STREAM:
            self.ended.add(sid)

    def pump(self, timeout, until=None):
        """Reads (and writes what is queued) until `until()` holds, the
        connection closes, or `timeout` seconds pass. Returns until()."""
        deadline = time.monotonic() + timeout
        while True:
            if until is not None and until():
                return True
            if self.closed:
                return bool(until and until())
            left = deadline - time.monotonic()
            if left <= 0:
                return bool(until and until())
            self.flush_lib()
            wl = [self.sock] if self.outq else []
            r, w, _ = select.select([self.sock], wl, [], min(left, 0.2))
            if r:
                self._read_once()
            if w:
                self.flush(time.monotonic() + 1)

    def handshake(self, timeout=5):
        """Client preface (the library's) and the server's SETTINGS, ACKed."""
        if self.lib is not None:
            self.flush_lib()
        else:
            self.queue(PREFACE + raw_frame(SETTINGS, 0, 0))
        self.flush()
        ok = self.pump(timeout, lambda: self.server_settings is not None and self.settings_acks >= 1)
        if not ok:
            raise SystemExit(fail_json("handshake", self, "no SETTINGS/ACK from the server"))
        self.pump(0.05)

    def ping(self, timeout=5):
        before = self.ping_acks
        if self.lib is not None and self.lib_fed:
            self.lib.ping(b"hostile!")
        else:
            self.queue(raw_frame(PING, 0, 0, b"hostile!"))
        self.flush()
        return self.pump(timeout, lambda: self.ping_acks > before)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def summary(self):
        return {
            "closed": self.closed,
            "closed_after_s": self.closed_at,
            "goaway": self.goaway,
            "goaway_after_s": self.goaway_at,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "frames_in": dict(self.frames_in),
            "lib_error": self.lib_error,
        }


def fail_json(attack, wire, why):
    print(json.dumps({"attack": attack, "error": why, **wire.summary()}), flush=True)
    return 0


def authority(addr):
    return f"{addr[0]}:{addr[1]}".encode()


# --gateway: the target is `wshub serve`, whose WebSocket endpoint is
# /connection/websocket and speaks the Centrifugo client protocol: every
# WebSocket opens there, and "echoes" becomes "answers a connect command".
GATEWAY_PATH = None
CONNECT_CMD = b'{"id":1,"connect":{}}'


def probe_message(text):
    """What to send on a WebSocket to see that it works."""
    return CONNECT_CMD if GATEWAY_PATH else text


def probe_ok(msgs, text):
    """Whether the first message answers probe_message(text)."""
    if not msgs:
        return False
    op, payload = msgs[0]
    if GATEWAY_PATH:
        try:
            reply = json.loads(payload)
        except ValueError:
            return False
        return op == WS_TEXT and reply.get("id") == 1 and "connect" in reply
    return (op, payload) == (WS_TEXT, text)


def ws_headers(addr, path=b"/hostile", method=b"CONNECT", protocol=b"websocket",
               version=b"13", scheme=True, path_present=True):
    if GATEWAY_PATH:
        path = GATEWAY_PATH
    h = [(b":method", method)]
    if protocol is not None:
        h.append((b":protocol", protocol))
    if scheme:
        h.append((b":scheme", b"http"))
    h.append((b":authority", authority(addr)))
    if path_present:
        h.append((b":path", path))
    if version is not None:
        h.append((b"sec-websocket-version", version))
    return h


def open_ws(wire, addr, path=b"/hostile", timeout=5):
    """A well-formed extended CONNECT through the library; returns
    (stream id, status or None)."""
    sid = wire.lib.get_next_available_stream_id()
    wire.lib.send_headers(sid, ws_headers(addr, path))
    wire.flush()
    wire.pump(timeout, lambda: sid in wire.status or sid in wire.rst)
    return sid, wire.status.get(sid)


def lib_send(wire, sid, data, end_stream=False, timeout=10):
    """Sends `data` on a stream through the library, in frames it allows,
    waiting for the server's WINDOW_UPDATEs as needed. Returns the bytes
    sent."""
    lib = wire.lib
    deadline = time.monotonic() + timeout
    off = 0
    while off < len(data) and wire.lib_fed and not wire.closed:
        room = min(lib.local_flow_control_window(sid), lib.max_outbound_frame_size, len(data) - off)
        if room <= 0:
            if time.monotonic() >= deadline:
                break
            wire.pump(0.1)
            continue
        last = off + room == len(data)
        lib.send_data(sid, data[off:off + room], end_stream=end_stream and last)
        off += room
        wire.flush()
    if end_stream and not data:
        lib.end_stream(sid)
        wire.flush()
    return off


def rst_summary(wire, sids):
    codes = collections.Counter(code_name(wire.rst[s]) for s in sids if s in wire.rst)
    return dict(codes)


# ----- commands --------------------------------------------------------------


def cmd_roundtrip(addr, args):
    started = time.monotonic()
    out = {"attack": "roundtrip"}
    ok = True
    lib = lib_connection()
    w = Wire(addr, lib)
    w.handshake()
    sid, status = open_ws(w, addr, b"/roundtrip")
    h2r = {"status": status}
    if status == 200 and GATEWAY_PATH:
        lib_send(w, sid, ws_frame(WS_TEXT, CONNECT_CMD))
        w.pump(10, lambda: bool(ws_messages(w.data[sid])))
        h2r["connect_ok"] = probe_ok(ws_messages(w.data[sid]), None)
        lib_send(w, sid, ws_frame(WS_CLOSE, struct.pack("!H", 1000) + b"done"), end_stream=True)
        w.pump(10, lambda: sid in w.ended or sid in w.rst)
        msgs = ws_messages(w.data[sid])
        close = [p for op, p in msgs if op == WS_CLOSE]
        h2r["close_code"] = struct.unpack("!H", close[0][:2])[0] if close and len(close[0]) >= 2 else None
        h2r["ended"] = sid in w.ended
        ok = ok and h2r["connect_ok"] and h2r["close_code"] == 1000 and h2r["ended"]
    elif status == 200:
        text = "round trip é€😀".encode()
        binary = bytes(range(256)) * 256
        lib_send(w, sid, ws_frame(WS_TEXT, text))
        lib_send(w, sid, ws_frame(WS_BINARY, binary))
        lib_send(w, sid, ws_frame(WS_CLOSE, struct.pack("!H", 1000) + b"done"), end_stream=True)
        w.pump(10, lambda: sid in w.ended or sid in w.rst)
        msgs = ws_messages(w.data[sid])
        h2r["messages"] = [[op, len(p)] for op, p in msgs]
        want = [(WS_TEXT, text), (WS_BINARY, binary)]
        h2r["echo_ok"] = msgs[:2] == want
        close = msgs[2][1] if len(msgs) > 2 and msgs[2][0] == WS_CLOSE else b""
        h2r["close_code"] = struct.unpack("!H", close[:2])[0] if len(close) >= 2 else None
        h2r["ended"] = sid in w.ended
        h2r["rst"] = code_name(w.rst.get(sid))
        ok = ok and h2r["echo_ok"] and h2r["close_code"] == 1000 and h2r["ended"]
    else:
        h2r["rst"] = code_name(w.rst.get(sid))
        ok = False
    w.close()
    out["h2"] = h2r

    from websockets.sync.client import connect

    h1 = {}
    try:
        if GATEWAY_PATH:
            with connect(f"ws://{addr[0]}:{addr[1]}{GATEWAY_PATH.decode()}", open_timeout=10, close_timeout=5) as ws:
                ws.send(CONNECT_CMD.decode())
                reply = json.loads(ws.recv(timeout=10))
                h1["text_ok"] = h1["binary_ok"] = reply.get("id") == 1 and "connect" in reply
        else:
            with connect(f"ws://{addr[0]}:{addr[1]}/roundtrip", open_timeout=10, close_timeout=5) as ws:
                ws.send("over HTTP/1.1")
                h1["text_ok"] = ws.recv(timeout=10) == "over HTTP/1.1"
                ws.send(b"\x00\xff" * 1000)
                h1["binary_ok"] = ws.recv(timeout=10) == b"\x00\xff" * 1000
    except Exception as e:  # noqa: BLE001 - reported
        h1["error"] = f"{type(e).__name__}: {e}"
    h1["ok"] = h1.get("text_ok") is True and h1.get("binary_ok") is True
    ok = ok and h1["ok"]
    out["http1"] = h1
    out["ok"] = ok
    out["ms"] = round((time.monotonic() - started) * 1000)
    print(json.dumps(out), flush=True)
    return 0 if ok else 1


def cmd_rapid_reset(addr, args):
    lib = lib_connection()
    w = Wire(addr, lib)
    w.handshake()
    w.lib_fed = False  # the library's streams are all reset; we only watch now
    t0 = time.monotonic()
    sent = 0
    sids = []
    deadline = time.monotonic() + 10
    batch = 50
    for i in range(args.streams):
        sid = lib.get_next_available_stream_id()
        lib.send_headers(sid, ws_headers(addr, b"/reset"))
        lib.reset_stream(sid, ErrorCodes.CANCEL)
        sids.append(sid)
        if (i + 1) % batch == 0 or i + 1 == args.streams:
            w.queue(lib.data_to_send())
            if not w.flush(deadline):
                sent = i + 1
                break
            sent = i + 1
        if w.closed or w.goaway:
            break
    sent_s = round(time.monotonic() - t0, 3)
    w.pump(10, lambda: w.goaway is not None and w.closed is not None)
    res = {
        "attack": "rapid-reset",
        "streams_planned": args.streams,
        "streams_sent": sent,
        "send_seconds": sent_s,
        "responses": len(w.status),
        "statuses": dict(collections.Counter(str(s) for s in w.status.values())),
        "server_rst": rst_summary(w, sids),
        "send_error": w.send_error,
        **w.summary(),
    }
    w.close()
    print(json.dumps(res), flush=True)
    return 0


def cmd_continuation_flood(addr, args):
    lib = lib_connection()
    w = Wire(addr, lib)
    w.handshake()
    w.lib_fed = False
    total = args.megabytes << 20
    first = literal_block(ws_headers(addr, b"/flood"))
    one = literal_block([(b"x-flood", b"a" * 1000)])
    # A valid block that goes on and on: frames are cut from endless copies
    # of one literal header, each continuing where the last one stopped.
    filler = one * (MAX_FRAME // len(one) + 2)
    size = args.frame_size
    w.send(raw_frame(HEADERS, 0, 1, first))
    t0 = time.monotonic()
    sent = 9 + len(first)
    frames = 1
    stalled = False
    pos = 0
    deadline = time.monotonic() + 15
    batch = max(1, MAX_FRAME // (9 + size))
    while sent < total and not w.closed and w.goaway is None:
        out = bytearray()
        for _ in range(batch):
            chunk = filler[pos:pos + size]
            pos = (pos + size) % len(one)
            out += raw_frame(CONTINUATION, 0, 1, chunk)
            sent += 9 + len(chunk)
            frames += 1
        if not w.send(out, deadline):
            stalled = w.closed is None
            break
    send_s = round(time.monotonic() - t0, 3)
    w.pump(10, lambda: w.closed is not None)
    res = {
        "attack": "continuation-flood",
        "planned_bytes": total,
        "frame_size": size,
        "bytes_sent": sent,
        "bytes_written_before_close": w.bytes_out,
        "frames_sent": frames,
        "send_seconds": send_s,
        "stalled": stalled,
        "finished_sending": sent >= total,
        "status": w.status.get(1),
        "rst": code_name(w.rst.get(1)),
        "send_error": w.send_error,
        **w.summary(),
    }
    w.close()
    print(json.dumps(res), flush=True)
    return 0


def cmd_settings_flood(addr, args):
    lib = lib_connection()
    w = Wire(addr, lib)
    w.handshake()
    # A WebSocket first, so that what follows is not cut short by the
    # server's wait for a first request.
    sid, status = open_ws(w, addr, b"/settings-flood")
    if status != 200:
        return fail_json("settings-flood", w, f"extended CONNECT answered {status}")
    w.lib_fed = False
    acks_before = w.settings_acks
    body = struct.pack("!HI", SettingCodes.HEADER_TABLE_SIZE, 4096) + struct.pack(
        "!HI", SettingCodes.INITIAL_WINDOW_SIZE, 65535
    )
    one = raw_frame(SETTINGS, 0, 0, body)
    t0 = time.monotonic()
    sent = 0
    stalled = False
    per = 1000
    deadline = time.monotonic() + args.seconds
    while sent < args.frames and not w.closed:
        n = min(per, args.frames - sent)
        # Written without reading: the ACKs pile up on the server's side.
        if not w.send(one * n, deadline, read=False):
            if w.closed:
                sent += n - (len(w.outq) + len(one) - 1) // len(one)
                w.outq.clear()
                break
            # Out of time: finish the frame already begun, drop the rest.
            stalled = True
            whole, part = divmod(len(w.outq), len(one))
            del w.outq[part:]
            w.flush(time.monotonic() + 5)
            sent += n - whole
            break
        sent += n
    send_s = round(time.monotonic() - t0, 3)
    # Now read what the server has for us.
    w.pump(10, lambda: w.closed is not None or w.settings_acks - acks_before >= sent)
    read_s = round(time.monotonic() - t0, 3)
    acks = w.settings_acks - acks_before
    ping_ok = w.ping(5) if not w.closed else None
    echo_ok = None
    if not w.closed:
        # The WebSocket opened before the flood still echoes (raw frames:
        # the library's view ended with the flood).
        w.send(raw_frame(DATA, 0, sid, ws_frame(WS_TEXT, probe_message(b"after the flood"))))
        w.pump(5, lambda: bool(ws_messages(w.data[sid])))
        echo_ok = probe_ok(ws_messages(w.data[sid]), b"after the flood")
    res = {
        "attack": "settings-flood",
        "frames_planned": args.frames,
        "frames_sent": sent,
        "send_seconds": send_s,
        "stalled": stalled,
        "acks_received": acks,
        "all_read_after_s": read_s,
        "ping_ok_after": ping_ok,
        "echo_ok_after": echo_ok,
        "send_error": w.send_error,
        **w.summary(),
    }
    w.close()
    print(json.dumps(res), flush=True)
    return 0


def cmd_idle(addr, args):
    what = args.send
    lib = lib_connection() if what in ("preface", "partial-headers") else None
    w = Wire(addr, lib)
    # "nothing" and "magic" send exactly that: not even a SETTINGS ACK.
    w.auto_ack = lib is not None
    if what == "magic":
        w.send(PREFACE)
    elif what in ("preface", "partial-headers"):
        w.handshake()
    if what == "partial-headers":
        w.lib_fed = False
        w.send(raw_frame(HEADERS, 0, 1, literal_block(ws_headers(addr, b"/slow"))))
    started = w.now()
    w.pump(args.wait, lambda: w.closed is not None)
    res = {
        "attack": "idle",
        "sent": what,
        "waited_from_s": started,
        "wait_limit_s": args.wait,
        "status": w.status.get(1),
        **w.summary(),
    }
    w.close()
    print(json.dumps(res), flush=True)
    return 0


def cmd_too_many_streams(addr, args):
    lib = lib_connection()
    w = Wire(addr, lib)
    w.handshake()
    limit = w.server_settings.get("MAX_CONCURRENT_STREAMS")
    # The library keeps to the server's limit; make it believe there is none.
    lib.remote_settings.max_concurrent_streams = 1 << 20
    lib.remote_settings.acknowledge()
    sids = []
    for _ in range(args.streams):
        sid = lib.get_next_available_stream_id()
        lib.send_headers(sid, ws_headers(addr, b"/many"))
        sids.append(sid)
    t0 = time.monotonic()
    w.flush()
    w.pump(10, lambda: all(s in w.status or s in w.rst for s in sids))
    answered_s = round(time.monotonic() - t0, 3)
    accepted = [s for s in sids if w.status.get(s) == 200 and s not in w.rst]
    refused = [s for s in sids if w.rst.get(s) == ErrorCodes.REFUSED_STREAM]
    # An echo on every accepted stream (each distinct).
    for s in accepted:
        if w.lib_fed:
            lib_send(w, s, ws_frame(WS_TEXT, f"stream {s}".encode()))
    w.flush()

    def echoed(s):
        m = ws_messages(w.data[s])
        return bool(m) and m[0] == (WS_TEXT, f"stream {s}".encode())

    w.pump(10, lambda: all(echoed(s) for s in accepted))
    echo_ok = sum(1 for s in accepted if echoed(s))
    # One accepted stream closes; then one more WebSocket fits again.
    after_close = None
    if accepted and w.lib_fed and not w.closed:
        s = accepted[0]
        lib_send(w, s, ws_frame(WS_CLOSE, struct.pack("!H", 1000)), end_stream=True)
        w.flush()
        w.pump(5, lambda: s in w.ended or s in w.rst)
        w.pump(0.2)
        new, status = open_ws(w, addr, b"/many-again")
        after_close = {"closed_stream_ended": s in w.ended, "new_status": status,
                       "new_rst": code_name(w.rst.get(new))}
    res = {
        "attack": "too-many-streams",
        "server_max_concurrent_streams": limit,
        "streams_opened": len(sids),
        "answered_s": answered_s,
        "accepted": len(accepted),
        "refused": len(refused),
        "first_refused_index": sids.index(refused[0]) if refused else None,
        "last_accepted_index": sids.index(accepted[-1]) if accepted else None,
        "unanswered": sum(1 for s in sids if s not in w.status and s not in w.rst),
        "rst_codes": rst_summary(w, sids),
        "statuses": dict(collections.Counter(str(v) for v in w.status.values())),
        "echo_ok": echo_ok,
        "after_one_closed": after_close,
        **w.summary(),
    }
    w.close()
    print(json.dumps(res), flush=True)
    return 0


def cmd_window_stall(addr, args):
    lib = lib_connection()
    w = Wire(addr, lib)
    w.grant_windows = False  # never a WINDOW_UPDATE for what the server sends
    w.handshake()
    sids = []
    for i in range(args.ws_streams):
        sid, status = open_ws(w, addr, f"/stall-{i}".encode())
        if status != 200:
            return fail_json("window-stall", w, f"extended CONNECT {i} answered {status}")
        sids.append(sid)
    msg = bytes(range(256)) * (args.message_kib * 4)
    frame = ws_frame(WS_BINARY, msg)
    total = args.megabytes << 20
    pending = {s: bytearray() for s in sids}
    sent = collections.Counter()
    messages = collections.Counter()
    t0 = time.monotonic()
    last_progress = time.monotonic()
    deadline = time.monotonic() + 15
    stalled = False
    while sum(sent.values()) < total and time.monotonic() < deadline and not w.closed and w.lib_fed:
        progress = False
        for sid in sids:
            if not pending[sid]:
                pending[sid] += frame
                messages[sid] += 1
            try:
                room = min(lib.local_flow_control_window(sid), lib.max_outbound_frame_size)
            except h2.exceptions.H2Error:
                continue
            if room > 0:
                n = min(room, len(pending[sid]))
                lib.send_data(sid, bytes(pending[sid][:n]))
                del pending[sid][:n]
                sent[sid] += n
                progress = True
        if progress:
            w.flush(time.monotonic() + 2)
            last_progress = time.monotonic()
        else:
            w.pump(0.1)
            if time.monotonic() - last_progress > 2:
                stalled = True
                break
    send_s = round(time.monotonic() - t0, 3)
    ping_ok = w.ping(5) if not w.closed else None
    # A new WebSocket on the same connection: its 200 is not flow controlled.
    second = None
    if not w.closed and w.lib_fed:
        s2, st2 = open_ws(w, addr, b"/stall-more")
        second = {"status": st2, "rst": code_name(w.rst.get(s2))}
    res = {
        "attack": "window-stall",
        "planned_bytes": total,
        "message_bytes": len(msg),
        "ws_streams": len(sids),
        "bytes_sent": sum(sent.values()),
        "bytes_sent_per_stream": [sent[s] for s in sids],
        "messages_started_per_stream": [messages[s] for s in sids],
        "send_seconds": send_s,
        "stalled": stalled,
        "bytes_echoed": sum(len(w.data[s]) for s in sids),
        "client_initial_window": 65535,
        "stream_rst": [code_name(w.rst.get(s)) for s in sids],
        "ping_ok_after": ping_ok,
        "another_stream": second,
        "lib_error": w.lib_error,
        **w.summary(),
    }
    w.close()
    print(json.dumps(res), flush=True)
    return 0


def cmd_window_overflow(addr, args):
    lib = lib_connection(local={SettingCodes.INITIAL_WINDOW_SIZE: 0})
    w = Wire(addr, lib)
    w.handshake()
    stream_window = w.server_settings.get("INITIAL_WINDOW_SIZE", 65535)
    nstreams = 1 if args.scope == "stream" else 5
    sids = []
    for i in range(nstreams):
        sid, status = open_ws(w, addr, f"/overflow-{i}".encode())
        if status != 200:
            return fail_json("window-overflow", w, f"extended CONNECT {i} answered {status}")
        sids.append(sid)
    sent = collections.Counter()
    # Small messages, one at a time: their echoes cannot be written (our
    # INITIAL_WINDOW_SIZE is 0), so once the server's few write buffers are
    # taken its WebSocket stops reading and stops granting window.
    blocker = ws_frame(WS_TEXT, b"block")
    for _ in range(8):
        for sid in sids:
            sent[sid] += lib_send(w, sid, blocker)
        w.pump(0.03)
    w.pump(0.3)
    w.lib_fed = False  # from here on raw DATA the library would not send
    margin = 4 * MAX_FRAME
    body = b"\x5a" * MAX_FRAME

    def stream_room(sid):
        return stream_window + w.window_updates.get(sid, 0) - sent[sid]

    def conn_room():
        return 65535 + w.window_updates.get(0, 0) - sum(sent.values())

    t0 = time.monotonic()
    deadline = t0 + 10
    while not w.closed and w.goaway is None and time.monotonic() < deadline:
        w.pump(0)
        if args.scope == "stream":
            sid = sids[0]
            if sid in w.rst or stream_room(sid) <= -margin:
                break
        else:
            if conn_room() <= -margin:
                break
            live = [s for s in sids if s not in w.rst and stream_room(s) >= MAX_FRAME]
            if not live:
                break
            sid = max(live, key=stream_room)
        if sum(sent.values()) > 8 << 20:
            break  # the server keeps granting window: reported as such
        if not w.send(raw_frame(DATA, 0, sid, body), deadline):
            break
        sent[sid] += len(body)
    exceeded_by = -stream_room(sids[0]) if args.scope == "stream" else -conn_room()
    w.pump(5, lambda: w.goaway is not None or w.closed is not None or all(s in w.rst for s in sids))
    send_s = round(time.monotonic() - t0, 3)
    ping_ok = w.ping(3) if not w.closed and w.goaway is None else None
    if w.goaway is not None:
        w.pump(5, lambda: w.closed is not None)
    res = {
        "attack": "window-overflow",
        "scope": args.scope,
        "server_stream_window": stream_window,
        "server_connection_window": 65535 + w.window_updates.get(0, 0),
        "streams": nstreams,
        "data_sent_per_stream": [sent[s] for s in sids],
        "data_sent_total": sum(sent.values()),
        "window_updates_per_stream": [w.window_updates.get(s, 0) for s in sids],
        "exceeded_window_by": exceeded_by,
        "send_seconds": send_s,
        "stream_rst": [code_name(w.rst.get(s)) for s in sids],
        "ping_ok_after": ping_ok,
        "send_error": w.send_error,
        **w.summary(),
    }
    w.close()
    print(json.dumps(res), flush=True)
    return 0


def cmd_bad_requests(addr, args):
    lib = lib_connection(validate=False)
    w = Wire(addr, lib)
    w.handshake()
    cases = [
        ("wrong_protocol", ws_headers(addr, protocol=b"chat")),
        ("plain_connect", [(b":method", b"CONNECT"), (b":authority", authority(addr))]),
        ("protocol_on_get", ws_headers(addr, method=b"GET")),
        ("no_version", ws_headers(addr, version=None)),
        ("wrong_version", ws_headers(addr, version=b"8")),
        ("get", [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", authority(addr)), (b":path", b"/")]),
        ("connect_without_path", ws_headers(addr, path_present=False)),
    ]
    results = {}
    for name, headers in cases:
        sid = lib.get_next_available_stream_id()
        end = name == "get"
        try:
            lib.send_headers(sid, headers, end_stream=end)
        except h2.exceptions.H2Error as e:
            results[name] = {"not_sent": str(e)}
            continue
        w.flush()
        w.pump(5, lambda: w.closed is not None or sid in w.rst or (sid in w.status and sid in w.ended)
               or (sid in w.status and w.status[sid] == 200))
        results[name] = {
            "stream": sid,
            "status": w.status.get(sid),
            "rst": code_name(w.rst.get(sid)),
            "headers": {k: v for k, v in w.headers.get(sid, {}).items() if not k.startswith(":")},
        }
        if w.status.get(sid) == 200 and w.lib_fed and sid not in w.ended:
            lib.reset_stream(sid, ErrorCodes.CANCEL)
            w.flush()
        if w.closed or w.goaway:
            break
    # The connection is still good for a WebSocket.
    after = None
    if not w.closed and w.goaway is None and w.lib_fed:
        sid, status = open_ws(w, addr, b"/after-bad")
        after = {"status": status}
        if status == 200:
            lib_send(w, sid, ws_frame(WS_TEXT, probe_message(b"still fine")))
            w.flush()
            w.pump(5, lambda: bool(ws_messages(w.data[sid])))
            after["echo_ok"] = probe_ok(ws_messages(w.data[sid]), b"still fine")
    res = {"attack": "bad-requests", "cases": results, "valid_after": after, **w.summary()}
    w.close()
    print(json.dumps(res), flush=True)
    return 0


COMMANDS = {
    "roundtrip": cmd_roundtrip,
    "rapid-reset": cmd_rapid_reset,
    "continuation-flood": cmd_continuation_flood,
    "settings-flood": cmd_settings_flood,
    "idle": cmd_idle,
    "too-many-streams": cmd_too_many_streams,
    "window-stall": cmd_window_stall,
    "window-overflow": cmd_window_overflow,
    "bad-requests": cmd_bad_requests,
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=sorted(COMMANDS))
    p.add_argument("addr", help="HOST:PORT")
    p.add_argument("--streams", type=int)
    p.add_argument("--megabytes", type=int)
    p.add_argument("--frames", type=int, default=200000)
    p.add_argument("--ws-streams", type=int, default=1, help="window-stall: WebSockets on the connection")
    p.add_argument("--message-kib", type=int, default=1024, help="window-stall: size of each message")
    p.add_argument("--seconds", type=float, default=8.0, help="settings-flood: longest time spent writing")
    p.add_argument("--frame-size", type=int, default=MAX_FRAME, help="CONTINUATION payload size")
    p.add_argument("--send", choices=["nothing", "magic", "preface", "partial-headers"], default="preface")
    p.add_argument("--wait", type=float, default=15.0)
    p.add_argument("--scope", choices=["stream", "connection"], default="stream")
    p.add_argument("--limit", type=float, default=35.0, help="overall time bound, seconds")
    p.add_argument("--gateway", action="store_true",
                   help="the target is wshub serve: WebSockets at /connection/websocket, "
                        "probed with a connect command (roundtrip, settings-flood, bad-requests; "
                        "the other attacks do not look at WebSocket payloads)")
    args = p.parse_args()
    global GATEWAY_PATH
    if args.gateway:
        if args.command in ("too-many-streams", "window-stall", "window-overflow"):
            p.error(f"{args.command} needs an echo server (wshub echo), not --gateway")
        GATEWAY_PATH = b"/connection/websocket"
    if args.streams is None:
        args.streams = 1000 if args.command == "rapid-reset" else 200
    if args.megabytes is None:
        args.megabytes = 8 if args.command == "continuation-flood" else 64
    host, _, port = args.addr.rpartition(":")
    if not host or not port.isdigit():
        p.error("HOST:PORT expected")
    addr = (host, int(port))

    def out_of_time(*_):
        print(json.dumps({"attack": args.command, "error": f"out of time ({args.limit} s)"}), flush=True)
        os._exit(3)

    signal.signal(signal.SIGALRM, out_of_time)
    signal.setitimer(signal.ITIMER_REAL, args.limit)
    sys.exit(COMMANDS[args.command](addr, args))


if __name__ == "__main__":
    main()

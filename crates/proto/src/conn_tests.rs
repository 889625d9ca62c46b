//! Byte-script tests of the connection core: bytes in, assert on events and
//! on the exact bytes queued out.

use super::*;
use crate::frame::{write_frame, OpCode};
use proptest::prelude::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn server() -> Connection {
    Connection::new(Role::Server, Config::default(), None)
}

fn server_deflate(params: DeflateParams) -> Connection {
    Connection::new(Role::Server, Config::default(), Some(params))
}

/// A masked client frame.
fn cf(fin: bool, rsv1: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    write_frame(&mut b, fin, rsv1, op, Some(KEY), payload);
    b.to_vec()
}

fn out(c: &mut Connection) -> Vec<u8> {
    let mut v = Vec::new();
    c.drain_transmit(&mut v);
    v
}

fn events(c: &mut Connection) -> Result<Vec<Event>, Error> {
    let mut v = Vec::new();
    while let Some(e) = c.poll_event()? {
        v.push(e);
    }
    Ok(v)
}

fn text(s: &str) -> Event {
    Event::Message(Message::Text(Utf8Bytes::from(s.to_owned())))
}

fn close_code_sent(wire: &[u8]) -> Option<u16> {
    let h = FrameHeader::parse(wire)?;
    if h.opcode != 0x8 || h.len < 2 {
        return None;
    }
    Some(u16::from_be_bytes([
        wire[h.header_len],
        wire[h.header_len + 1],
    ]))
}

fn fails_with(bytes: &[u8], code: u16) {
    let mut c = server();
    c.receive_data(bytes);
    let err = events(&mut c).expect_err("connection should fail");
    assert_eq!(err.close_code().0, code, "{err}");
    assert_eq!(close_code_sent(&out(&mut c)), Some(code));
    assert_eq!(c.state(), State::Closed);
    // Nothing more is parsed or sent after failing.
    c.receive_data(&cf(true, false, OpCode::Text, b"late"));
    assert_eq!(c.poll_event(), Ok(None));
    assert!(!c.wants_write());
}

#[test]
fn ping_gets_a_pong_with_the_same_payload() {
    let mut c = server();
    c.receive_data(&cf(true, false, OpCode::Ping, b"abc"));
    assert_eq!(
        events(&mut c).unwrap(),
        vec![Event::Ping(Bytes::from_static(b"abc"))]
    );
    assert_eq!(out(&mut c), b"\x8a\x03abc");
    // Empty ping from the example: 0x89 0x00 (unmasked from a client is
    // a protocol error, so mask it).
    c.receive_data(&cf(true, false, OpCode::Ping, b""));
    events(&mut c).unwrap();
    assert_eq!(out(&mut c), b"\x8a\x00");
}

#[test]
fn unsolicited_pong_is_reported_and_ignored() {
    let mut c = server();
    c.receive_data(&cf(true, false, OpCode::Pong, b"x"));
    assert_eq!(
        events(&mut c).unwrap(),
        vec![Event::Pong(Bytes::from_static(b"x"))]
    );
    assert!(!c.wants_write());
}

#[test]
fn text_and_binary_messages() {
    let mut c = server();
    let mut bytes = cf(true, false, OpCode::Text, "héllo".as_bytes());
    bytes.extend(cf(true, false, OpCode::Binary, &[0, 1, 2, 255]));
    bytes.extend(cf(true, false, OpCode::Text, b""));
    c.receive_data(&bytes);
    assert_eq!(
        events(&mut c).unwrap(),
        vec![
            text("héllo"),
            Event::Message(Message::Binary(Bytes::from_static(&[0, 1, 2, 255]))),
            text(""),
        ]
    );
}

#[test]
fn byte_at_a_time_delivery() {
    let mut c = server();
    let mut bytes = cf(false, false, OpCode::Text, "κό".as_bytes());
    bytes.extend(cf(true, false, OpCode::Ping, b"p"));
    bytes.extend(cf(true, false, OpCode::Continuation, "σμε".as_bytes()));
    let mut evs = Vec::new();
    for b in bytes {
        c.receive_data(&[b]);
        evs.extend(events(&mut c).unwrap());
    }
    assert_eq!(
        evs,
        vec![Event::Ping(Bytes::from_static(b"p")), text("κόσμε")]
    );
}

#[test]
fn fragmented_message_with_interleaved_control_frames() {
    let mut c = server();
    let mut bytes = cf(false, false, OpCode::Binary, b"ab");
    bytes.extend(cf(true, false, OpCode::Ping, b""));
    bytes.extend(cf(false, false, OpCode::Continuation, b""));
    bytes.extend(cf(true, false, OpCode::Pong, b""));
    bytes.extend(cf(true, false, OpCode::Continuation, b"cd"));
    c.receive_data(&bytes);
    let evs = events(&mut c).unwrap();
    assert_eq!(evs.len(), 3);
    assert_eq!(
        evs[2],
        Event::Message(Message::Binary(Bytes::from_static(b"abcd")))
    );
}

#[test]
fn framing_violations_close_1002() {
    // RSV bits without an extension.
    fails_with(&cf(true, true, OpCode::Text, b"x"), 1002);
    let mut f = cf(true, false, OpCode::Text, b"x");
    f[0] |= 0x20;
    fails_with(&f, 1002);
    f[0] = (f[0] & !0x20) | 0x10;
    fails_with(&f, 1002);
    // Reserved opcodes.
    for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        let mut f = cf(true, false, OpCode::Text, b"");
        f[0] = 0x80 | op;
        fails_with(&f, 1002);
    }
    // Unmasked frame to a server.
    fails_with(b"\x81\x01x", 1002);
    // Fragmented and oversized control frames.
    fails_with(&cf(false, false, OpCode::Ping, b""), 1002);
    fails_with(&cf(true, false, OpCode::Ping, &[0; 126]), 1002);
    // Continuation with nothing to continue; new message inside a fragmented one.
    fails_with(&cf(true, false, OpCode::Continuation, b"x"), 1002);
    let mut f = cf(false, false, OpCode::Text, b"a");
    f.extend(cf(true, false, OpCode::Text, b"b"));
    fails_with(&f, 1002);
    // 64-bit length with the most significant bit set.
    fails_with(
        b"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00",
        1002,
    );
}

#[test]
fn masked_frame_to_a_client_closes_1002() {
    let mut c = Connection::new(Role::Client, Config::default(), None);
    c.receive_data(&cf(true, false, OpCode::Text, b"x"));
    assert_eq!(
        events(&mut c).unwrap_err().close_code(),
        CloseCode::PROTOCOL
    );
    let wire = out(&mut c);
    // The client's close frame is masked.
    assert_eq!(wire[0], 0x88);
    assert!(wire[1] & 0x80 != 0);
}

#[test]
fn client_frames_are_masked_with_fresh_keys() {
    let mut c = Connection::new(Role::Client, Config::default(), None);
    c.send_text("hello").unwrap();
    c.send_text("hello").unwrap();
    let wire = out(&mut c);
    let a = FrameHeader::parse(&wire).unwrap();
    let b = FrameHeader::parse(&wire[a.header_len + 5..]).unwrap();
    assert!(a.mask.is_some() && b.mask.is_some());
    assert_ne!(a.mask, b.mask);
    let mut p = wire[a.header_len..a.header_len + 5].to_vec();
    apply_mask(&mut p, a.mask.unwrap(), 0);
    assert_eq!(p, b"hello");
}

#[test]
fn invalid_utf8_fails_fast_inside_a_frame() {
    // Autobahn 6.4.x: the frame header says 20 bytes but the invalid code
    // point arrives first; we must fail before the rest of the frame.
    let mut c = server();
    let payload =
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65";
    let frame = cf(true, false, OpCode::Text, payload);
    c.receive_data(&frame[..6 + 11]);
    assert_eq!(c.poll_event(), Ok(None));
    c.receive_data(&frame[17..18]);
    assert_eq!(
        c.poll_event(),
        Ok(None),
        "0xf4 can still start a code point"
    );
    c.receive_data(&frame[18..19]);
    assert_eq!(c.poll_event(), Err(Error::InvalidUtf8));
    assert_eq!(close_code_sent(&out(&mut c)), Some(1007));
}

#[test]
fn invalid_utf8_across_fragments_fails_on_the_bad_fragment() {
    let mut c = server();
    c.receive_data(&cf(false, false, OpCode::Text, b"ok \xe2\x82"));
    assert_eq!(c.poll_event(), Ok(None));
    c.receive_data(&cf(false, false, OpCode::Continuation, b"\x28"));
    assert_eq!(c.poll_event(), Err(Error::InvalidUtf8));
}

#[test]
fn truncated_code_point_at_message_end_is_invalid() {
    fails_with(&cf(true, false, OpCode::Text, b"\xe2\x82"), 1007);
}

#[test]
fn close_echoes_the_code_and_reports_it() {
    let mut c = server();
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"bye");
    c.receive_data(&cf(true, false, OpCode::Close, &body));
    assert_eq!(
        events(&mut c).unwrap(),
        vec![Event::Close {
            code: Some(CloseCode::NORMAL),
            reason: "bye".into()
        }]
    );
    assert_eq!(out(&mut c), b"\x88\x02\x03\xe8");
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.send_text("x"), Err(SendError::Closed));
}

#[test]
fn empty_close_is_echoed_empty() {
    let mut c = server();
    c.receive_data(&cf(true, false, OpCode::Close, b""));
    assert_eq!(
        events(&mut c).unwrap(),
        vec![Event::Close {
            code: None,
            reason: String::new()
        }]
    );
    assert_eq!(out(&mut c), b"\x88\x00");
}

#[test]
fn close_code_validation() {
    for code in 0u16..=5000 {
        let mut c = server();
        c.receive_data(&cf(true, false, OpCode::Close, &code.to_be_bytes()));
        let r = events(&mut c);
        if CloseCode(code).is_sendable() {
            assert!(r.is_ok(), "{code} should be accepted");
            assert_eq!(close_code_sent(&out(&mut c)), Some(code));
        } else {
            assert_eq!(
                r.unwrap_err(),
                Error::Protocol("invalid close code"),
                "{code}"
            );
            assert_eq!(close_code_sent(&out(&mut c)), Some(1002));
        }
    }
    fails_with(&cf(true, false, OpCode::Close, b"\x03"), 1002);
    fails_with(&cf(true, false, OpCode::Close, b"\x03\xe8\xff"), 1007);
}

#[test]
fn we_close_then_peer_answers() {
    let mut c = server();
    c.close(CloseCode::GOING_AWAY, "restart").unwrap();
    assert_eq!(c.state(), State::Closing);
    assert_eq!(out(&mut c), b"\x88\x09\x03\xe9restart");
    // Data sent after our close is still read but we send nothing more.
    c.receive_data(&cf(true, false, OpCode::Ping, b""));
    assert!(matches!(c.poll_event(), Ok(Some(Event::Ping(_)))));
    assert!(!c.wants_write());
    c.receive_data(&cf(true, false, OpCode::Close, &1001u16.to_be_bytes()));
    assert!(matches!(c.poll_event(), Ok(Some(Event::Close { .. }))));
    assert_eq!(c.state(), State::Closed);
    assert!(!c.wants_write());
    assert_eq!(c.close(CloseCode::NORMAL, ""), Err(SendError::Closed));
}

#[test]
fn close_command_validation() {
    let mut c = server();
    assert_eq!(
        c.close(CloseCode(1005), ""),
        Err(SendError::InvalidCloseCode)
    );
    assert_eq!(
        c.close(CloseCode::NORMAL, &"x".repeat(124)),
        Err(SendError::ControlTooLong)
    );
    assert_eq!(c.ping(&[0; 126]), Err(SendError::ControlTooLong));
    assert_eq!(c.state(), State::Open);
}

#[test]
fn close_timeout_when_the_peer_never_answers() {
    let mut c = server();
    let t0 = Instant::now();
    c.close(CloseCode::NORMAL, "").unwrap();
    c.handle_timeout(t0);
    let deadline = c.poll_timeout().expect("close timer armed");
    assert_eq!(deadline, t0 + c.config().limits.close_timeout);
    c.handle_timeout(deadline);
    assert_eq!(c.poll_event(), Err(Error::CloseTimeout));
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn eof_without_close_is_abnormal() {
    let mut c = server();
    c.receive_eof();
    assert_eq!(c.poll_event(), Err(Error::AbnormalClosure));
    assert_eq!(c.poll_event(), Ok(None));
    assert!(!c.wants_write());
}

#[test]
fn keepalive_pings_and_fails_a_silent_peer() {
    let ka = KeepAlive {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
    };
    let mut c = Connection::new(Role::Server, Config::default().keepalive(Some(ka)), None);
    let t0 = Instant::now();
    c.handle_timeout(t0);
    assert_eq!(c.poll_timeout(), Some(t0 + ka.interval));
    c.handle_timeout(t0 + ka.interval);
    assert_eq!(out(&mut c), b"\x89\x00");
    // A pong arrives: alive.
    c.receive_data(&cf(true, false, OpCode::Pong, b""));
    events(&mut c).unwrap();
    c.handle_timeout(t0 + ka.interval + ka.timeout);
    assert_eq!(c.state(), State::Open);
    // Next ping goes unanswered.
    c.handle_timeout(t0 + ka.interval * 2);
    assert_eq!(out(&mut c), b"\x89\x00");
    c.handle_timeout(t0 + ka.interval * 2 + ka.timeout);
    assert_eq!(c.poll_event(), Err(Error::KeepaliveTimeout));
    assert_eq!(close_code_sent(&out(&mut c)), Some(1011));
}

#[test]
fn limits_close_1009() {
    let limits = Limits::default().max_frame_size(10).max_message_size(15);
    let mut c = Connection::new(Role::Server, Config::default().limits(limits.clone()), None);
    c.receive_data(&cf(true, false, OpCode::Binary, &[0; 11])[..6]);
    assert_eq!(c.poll_event(), Err(Error::FrameTooBig));
    let mut c = Connection::new(Role::Server, Config::default().limits(limits), None);
    let mut f = cf(false, false, OpCode::Binary, &[0; 10]);
    f.extend(cf(true, false, OpCode::Continuation, &[0; 6]));
    c.receive_data(&f);
    assert_eq!(c.poll_event(), Err(Error::MessageTooBig));
    let limits = Limits::default().max_fragments(3);
    let mut c = Connection::new(Role::Server, Config::default().limits(limits), None);
    let mut f = Vec::new();
    for _ in 0..4 {
        f.extend(cf(
            false,
            false,
            if f.is_empty() {
                OpCode::Binary
            } else {
                OpCode::Continuation
            },
            b"a",
        ));
    }
    c.receive_data(&f);
    assert_eq!(c.poll_event(), Err(Error::TooManyFragments));
}

#[test]
fn fragment_outgoing_messages() {
    let mut c = Connection::new(Role::Server, Config::default().fragment_size(Some(2)), None);
    c.send_text("abcde").unwrap();
    assert_eq!(out(&mut c), b"\x01\x02ab\x00\x02cd\x80\x01e");
}

#[test]
fn fragment_size_zero_set_on_the_field_sends_one_byte_frames() {
    // The setter turns 0 into 1; the public field bypasses it, and used to
    // make send loop forever.
    let config = Config {
        fragment_size: Some(0),
        ..Config::default()
    };
    let mut c = Connection::new(Role::Server, config, None);
    c.send_text("abc").unwrap();
    assert_eq!(out(&mut c), b"\x01\x01a\x00\x01b\x80\x01c");
}

#[test]
fn shared_encoded_frames_and_large_payloads_are_not_copied() {
    let mut c = server();
    let frame = crate::encode_frame(OpCode::Text, b"broadcast");
    c.send_encoded(frame.clone()).unwrap();
    let big = Bytes::from(vec![7u8; 100_000]);
    c.send(Message::Binary(big.clone())).unwrap();
    let mut slices = [IoSlice::new(&[]); 8];
    let n = c.transmit_vectored(&mut slices);
    assert_eq!(n, 3);
    assert_eq!(slices[0].as_ptr(), frame.as_ptr());
    assert_eq!(slices[2].as_ptr(), big.as_ptr());
    let wire = out(&mut c);
    assert_eq!(&wire[..11], &frame[..]);
    assert_eq!(&wire[11..21], b"\x82\x7f\x00\x00\x00\x00\x00\x01\x86\xa0");
}

fn deflate_pair(params: DeflateParams) -> (Connection, Connection) {
    let cfg = Config::default().deflate(DeflateConfig::default().min_size(0));
    (
        Connection::new(Role::Client, cfg.clone(), Some(params)),
        Connection::new(Role::Server, cfg, Some(params)),
    )
}

fn pipe(from: &mut Connection, to: &mut Connection) -> Vec<Event> {
    let wire = out(from);
    to.receive_data(&wire);
    events(to).unwrap()
}

#[test]
fn deflate_every_parameter_combination() {
    for sbits in 8..=15u8 {
        for cbits in 8..=15u8 {
            for (snct, cnct) in [(false, false), (true, false), (false, true), (true, true)] {
                let params = DeflateParams {
                    server_no_context_takeover: snct,
                    client_no_context_takeover: cnct,
                    server_max_window_bits: sbits,
                    client_max_window_bits: cbits,
                };
                let (mut cl, mut sv) = deflate_pair(params);
                for i in 0..5 {
                    let msg = format!("message {i}: {}", "websocket ".repeat(i * 40));
                    cl.send_text(&msg).unwrap();
                    let wire = out(&mut cl);
                    assert_eq!(wire[0] & 0x40, 0x40, "RSV1 on compressed message");
                    sv.receive_data(&wire);
                    assert_eq!(events(&mut sv).unwrap(), vec![text(&msg)]);
                    sv.send_binary(msg.as_bytes()).unwrap();
                    assert_eq!(
                        pipe(&mut sv, &mut cl),
                        vec![Event::Message(Message::Binary(Bytes::from(
                            msg.into_bytes()
                        )))]
                    );
                }
            }
        }
    }
}

#[test]
fn deflate_rsv1_only_on_first_frame_and_never_on_control() {
    let params = DeflateParams::default();
    let cfg = Config::default()
        .deflate(DeflateConfig::default().min_size(0))
        .fragment_size(Some(3));
    let mut sv = Connection::new(Role::Server, cfg, Some(params));
    sv.send_text("hello hello hello hello").unwrap();
    sv.ping(b"p").unwrap();
    let wire = out(&mut sv);
    let mut pos = 0;
    let mut first = true;
    while pos < wire.len() {
        let h = FrameHeader::parse(&wire[pos..]).unwrap();
        if h.opcode == 0x9 {
            assert!(!h.rsv1);
        } else {
            assert_eq!(h.rsv1, first, "RSV1 only on the first frame");
            first = false;
        }
        pos += h.header_len + h.len as usize;
    }
    let (mut cl, _) = deflate_pair(params);
    cl.receive_data(&wire);
    let evs = events(&mut cl).unwrap();
    assert_eq!(evs[0], text("hello hello hello hello"));
    // RSV1 on a continuation or control frame from the peer is an error.
    let mut sv = server_deflate(params);
    let mut f = cf(false, true, OpCode::Text, b"\x00");
    f.extend(cf(true, true, OpCode::Continuation, b"\x00"));
    sv.receive_data(&f);
    assert_eq!(
        sv.poll_event(),
        Err(Error::Protocol("RSV1 on a continuation frame"))
    );
    let mut sv = server_deflate(params);
    sv.receive_data(&cf(true, true, OpCode::Ping, b""));
    assert_eq!(
        sv.poll_event(),
        Err(Error::Protocol("RSV1 on a control frame"))
    );
}

#[test]
fn deflate_uncompressed_messages_still_accepted() {
    let mut sv = server_deflate(DeflateParams::default());
    sv.receive_data(&cf(true, false, OpCode::Text, b"plain"));
    assert_eq!(events(&mut sv).unwrap(), vec![text("plain")]);
    // Small messages go out uncompressed under the default threshold.
    sv.send_text("tiny").unwrap();
    assert_eq!(out(&mut sv), b"\x81\x04tiny");
}

#[test]
fn decompression_bomb_is_refused_before_memory_grows() {
    let params = DeflateParams::default();
    let limits = Limits::default().max_message_size(1 << 20);
    let cfg = Config::default()
        .limits(limits)
        .deflate(DeflateConfig::default().min_size(0).level(9));
    let mut cl = Connection::new(
        Role::Client,
        Config::default().deflate(DeflateConfig::default().level(9)),
        Some(params),
    );
    cl.send_binary(&vec![0u8; 16 << 20]).unwrap();
    let wire = out(&mut cl);
    assert!(
        wire.len() < 200_000,
        "bomb is small on the wire: {}",
        wire.len()
    );
    let mut sv = Connection::new(Role::Server, cfg, Some(params));
    sv.receive_data(&wire);
    assert_eq!(sv.poll_event(), Err(Error::MessageTooBig));
    assert_eq!(close_code_sent(&out(&mut sv)), Some(1009));
}

#[test]
fn deflate_invalid_stream_closes_1007() {
    let mut sv = server_deflate(DeflateParams::default());
    sv.receive_data(&cf(true, true, OpCode::Binary, b"\xff\xff\xff\xff"));
    assert_eq!(sv.poll_event(), Err(Error::InvalidCompressedData));
}

#[test]
fn deflate_compressed_text_with_invalid_utf8_closes_1007() {
    let params = DeflateParams::default();
    let (mut cl, mut sv) = deflate_pair(params);
    // Compress invalid UTF-8 as a "binary" payload, then relabel it text.
    cl.send_binary(b"abc\xff\xfe").unwrap();
    let mut wire = out(&mut cl);
    wire[0] = (wire[0] & 0xf0) | 0x1;
    sv.receive_data(&wire);
    assert_eq!(sv.poll_event(), Err(Error::InvalidUtf8));
}

proptest! {
    #[test]
    fn random_fragmentation_and_split_delivery(
        payload in proptest::collection::vec(any::<u8>(), 0..2000),
        frag in 1usize..300,
        cut in 1usize..64,
        binary in any::<bool>(),
        deflate in any::<bool>(),
    ) {
        let params = deflate.then(DeflateParams::default);
        let cfg = Config::default().fragment_size(Some(frag)).deflate(DeflateConfig::default().min_size(0));
        let mut cl = Connection::new(Role::Client, cfg.clone(), params);
        let mut sv = Connection::new(Role::Server, cfg, params);
        let expect = if binary {
            cl.send_binary(&payload).unwrap();
            Message::Binary(Bytes::from(payload.clone()))
        } else {
            let s = String::from_utf8_lossy(&payload).into_owned();
            cl.send_text(&s).unwrap();
            Message::Text(Utf8Bytes::from(s))
        };
        let wire = out(&mut cl);
        let mut got = Vec::new();
        for chunk in wire.chunks(cut) {
            sv.receive_data(chunk);
            got.extend(events(&mut sv).unwrap());
        }
        prop_assert_eq!(got, vec![Event::Message(expect)]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), cut in 1usize..32) {
        for role in [Role::Server, Role::Client] {
            let mut c = Connection::new(role, Config::default(), Some(DeflateParams::default()));
            for chunk in data.chunks(cut) {
                c.receive_data(chunk);
                while let Ok(Some(_)) = c.poll_event() {}
            }
            let mut v = Vec::new();
            c.drain_transmit(&mut v);
        }
    }
}

#[test]
fn read_hint_and_idle_shrink() {
    let mut c = server();
    let f = cf(true, false, OpCode::Binary, &[9; 1000]);
    c.receive_data(&f[..100]);
    assert_eq!(c.poll_event(), Ok(None));
    assert_eq!(c.bytes_needed(), 1000 - (100 - 8), "header is 8 bytes");
    c.receive_data(&f[100..]);
    assert!(matches!(c.poll_event(), Ok(Some(Event::Message(_)))));
    assert_eq!(c.bytes_needed(), 0);
    c.send_binary(&[1; 5000]).unwrap();
    out(&mut c);
    c.shrink_idle();
    assert_eq!(c.recv_buffer().capacity(), 0);
    // A server connection stays small: no masking-key pool inline.
    assert!(
        std::mem::size_of::<Connection>() <= 640,
        "{}",
        std::mem::size_of::<Connection>()
    );
}

#[test]
fn every_ping_gets_its_own_pong_in_order() {
    // Autobahn 2.10/2.11 (strict): ten pings in one batch, ten pongs back.
    let mut c = server();
    let mut batch = Vec::new();
    let mut expect = Vec::new();
    for i in 0..10u8 {
        batch.extend(cf(true, false, OpCode::Ping, &[b'p', i]));
        expect.extend([0x8a, 2, b'p', i]);
    }
    c.receive_data(&batch);
    assert_eq!(events(&mut c).unwrap().len(), 10);
    assert_eq!(out(&mut c), expect);
}

#[test]
fn idle_buffers_are_handed_out_reusable() {
    let mut c = server();
    c.recv_buffer().reserve(8192);
    let cap = c.recv_buffer().capacity();
    c.recv_buffer()
        .extend_from_slice(&cf(true, false, OpCode::Text, b"hello"));
    let msg = c.poll_event().unwrap();
    assert_eq!(
        msg,
        Some(Event::Message(Message::Text(Utf8Bytes::from("hello"))))
    );
    c.send_text("hi").unwrap();
    assert_eq!(c.transmit_chunks(), 1);
    assert_eq!(out(&mut c), b"\x81\x02hi");
    let tx = c.take_idle_send_buffer().expect("send buffer");
    let mut rx = c.take_idle_recv_buffer().expect("receive buffer");
    assert_eq!(c.recv_buffer().capacity(), 0);
    assert!(c.needs_send_buffer());
    assert!(c.take_idle_send_buffer().is_none());
    assert!(c.take_idle_recv_buffer().is_none());
    // The small payload was copied out: while the message is alive, the
    // receive buffer can be reused whole without allocating.
    assert!(rx.is_empty());
    assert!(rx.try_reclaim(cap) && rx.capacity() >= cap);
    drop(msg);
    // A lent send buffer is used as is.
    let tx_cap = tx.capacity();
    c.set_send_buffer(tx);
    assert!(!c.needs_send_buffer());
    c.send_binary(b"ab").unwrap();
    // Not while bytes are queued.
    assert!(c.take_idle_send_buffer().is_none());
    assert_eq!(out(&mut c), b"\x82\x02ab");
    let tx = c.take_idle_send_buffer().expect("send buffer");
    assert_eq!(tx.capacity(), tx_cap);
    // A frame in progress keeps the receive buffer.
    let f = cf(true, false, OpCode::Binary, &[7; 300]);
    c.receive_data(&f[..50]);
    assert_eq!(c.poll_event(), Ok(None));
    assert!(c.take_idle_recv_buffer().is_none());
    c.receive_data(&f[50..]);
    assert!(matches!(
        c.poll_event(),
        Ok(Some(Event::Message(Message::Binary(b)))) if b[..] == [7; 300][..]
    ));
}

#[test]
fn large_payloads_and_control_frames_in_one_batch() {
    // A payload over the copy limit is shared with the receive buffer; the
    // frames around it still parse from the same buffer.
    let mut c = server();
    let mut batch = cf(true, false, OpCode::Ping, b"p");
    batch.extend(cf(true, false, OpCode::Binary, &[5; 3000]));
    batch.extend(cf(true, false, OpCode::Text, b"tail"));
    c.receive_data(&batch);
    let ev = events(&mut c).unwrap();
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[0], Event::Ping(Bytes::from_static(b"p")));
    assert_eq!(
        ev[1],
        Event::Message(Message::Binary(Bytes::from(vec![5; 3000])))
    );
    assert_eq!(
        ev[2],
        Event::Message(Message::Text(Utf8Bytes::from("tail")))
    );
    assert_eq!(c.buffered_in(), 0);
    assert_eq!(out(&mut c), b"\x8a\x01p");
}

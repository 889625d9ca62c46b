//! JSON shapes of every command and reply, as the SDKs write and read them.

use bytes::Bytes;
use wshub_protocol::{
    decode_commands, encode_push_reply, encode_reply, ClientInfo, ConnectResult, Disconnect,
    DisconnectCode, Encoding, ErrorCode, HistoryResult, Method, PresenceResult,
    PresenceStatsResult, Publication, Push, Reply, Request, UnsubscribeCode,
};

use crate::{assert_same_json, command_round_trip, reply_round_trip};

fn text(data: &Bytes) -> &str {
    std::str::from_utf8(data).unwrap()
}

// ---- commands ----

#[test]
fn connect_command() {
    let c = command_round_trip(r#"{"id":1,"connect":{"token":"x","name":"js"}}"#);
    assert_eq!(c.id, 1);
    assert_eq!(c.method(), Some(Method::Connect));
    let connect = c.connect.unwrap();
    assert_eq!((connect.token.as_str(), connect.name.as_str()), ("x", "js"));

    let c = command_round_trip(
        r#"{"id":1,"connect":{"token":"jwt","data":{"app":"demo"},"subs":{"news":{"recover":true,"epoch":"e","offset":3}},"name":"python","version":"0.4.0","headers":{"Authorization":"Bearer t"},"flag":3,"profile":"feed","dict":"abc"}}"#,
    );
    let connect = c.connect.unwrap();
    assert_eq!(text(&connect.data), r#"{"app":"demo"}"#);
    let news = &connect.subs["news"];
    assert!(news.recover);
    assert_eq!((news.epoch.as_str(), news.offset), ("e", 3));
    assert_eq!(connect.headers["Authorization"], "Bearer t");
    assert_eq!(
        (
            connect.flag,
            connect.profile.as_str(),
            connect.dict.as_str()
        ),
        (3, "feed", "abc")
    );
}

#[test]
fn subscribe_command() {
    let c = command_round_trip(
        r#"{"id":2,"subscribe":{"channel":"news","recover":true,"offset":5,"epoch":"abc"}}"#,
    );
    let Some(Request::Subscribe(s)) = c.request() else {
        panic!("not a subscribe: {c:?}")
    };
    assert_eq!(s.channel, "news");
    assert!(s.recover);
    assert_eq!((s.offset, s.epoch.as_str()), (5, "abc"));

    let c = command_round_trip(
        r#"{"id":3,"subscribe":{"channel":"chat:1","token":"st","data":[1,2],"positioned":true,"recoverable":true,"join_leave":true,"delta":"fossil","tf":{"op":"and","nodes":[{"key":"kind","cmp":"eq","val":"a"},{"key":"n","cmp":"in","vals":["1","2"]}]},"flag":1,"type":1,"phase":2,"cursor":"c","limit":50,"asc":true}}"#,
    );
    let s = c.subscribe.unwrap();
    assert_eq!(text(&s.data), "[1,2]");
    assert!(s.positioned && s.recoverable && s.join_leave && s.asc);
    assert_eq!(s.delta, "fossil");
    let tf = s.tf.unwrap();
    assert_eq!(tf.op, "and");
    assert_eq!(tf.nodes[1].vals, ["1", "2"]);
    assert_eq!((s.flag, s.r#type, s.phase, s.limit), (1, 1, 2, 50));
    // Offsets are JSON numbers up to u64::MAX.
    let c = command_round_trip(
        r#"{"id":4,"subscribe":{"channel":"a","recover":true,"offset":18446744073709551615}}"#,
    );
    assert_eq!(c.subscribe.unwrap().offset, u64::MAX);
}

#[test]
fn unsubscribe_publish_presence_commands() {
    let c = command_round_trip(r#"{"id":3,"unsubscribe":{"channel":"news"}}"#);
    assert_eq!(c.unsubscribe.unwrap().channel, "news");

    let c = command_round_trip(r#"{"id":4,"publish":{"channel":"news","data":{"text":"hi"}}}"#);
    let p = c.publish.unwrap();
    assert_eq!(
        (p.channel.as_str(), text(&p.data)),
        ("news", r#"{"text":"hi"}"#)
    );
    let c = command_round_trip(
        r#"{"id":4,"publish":{"channel":"map","data":{"v":1},"type":1,"key":"k","removed":true}}"#,
    );
    let p = c.publish.unwrap();
    assert_eq!((p.r#type, p.key.as_str(), p.removed), (1, "k", true));

    let c = command_round_trip(r#"{"id":5,"presence":{"channel":"news"}}"#);
    assert_eq!(c.method(), Some(Method::Presence));
    let c = command_round_trip(r#"{"id":6,"presence_stats":{"channel":"news"}}"#);
    assert_eq!(c.method(), Some(Method::PresenceStats));
    assert_eq!(c.presence_stats.unwrap().channel, "news");
}

#[test]
fn history_command() {
    let c = command_round_trip(
        r#"{"id":7,"history":{"channel":"news","limit":10,"since":{"offset":5,"epoch":"abc"},"reverse":true}}"#,
    );
    let h = c.history.unwrap();
    assert_eq!(h.limit, 10);
    let since = h.since.unwrap();
    assert_eq!((since.offset, since.epoch.as_str()), (5, "abc"));
    assert!(h.reverse);
    // limit -1 is "no limit", 0 is "only the stream top".
    let c = command_round_trip(r#"{"id":7,"history":{"channel":"news","limit":-1}}"#);
    assert_eq!(c.history.unwrap().limit, -1);
    let c = command_round_trip(r#"{"id":7,"history":{"channel":"news"}}"#);
    assert_eq!(c.history.unwrap().limit, 0);
}

#[test]
fn ping_send_rpc_refresh_sub_refresh_commands() {
    let c = command_round_trip(r#"{"id":8,"ping":{}}"#);
    assert_eq!(c.method(), Some(Method::Ping));
    assert!(!c.is_pong());

    let c = command_round_trip(r#"{"send":{"data":"fire and forget"}}"#);
    assert_eq!(c.id, 0);
    assert_eq!(c.method(), Some(Method::Send));
    assert!(!c.is_pong(), "an async send has id 0 but is not a pong");
    assert_eq!(text(&c.send.unwrap().data), r#""fire and forget""#);

    let c = command_round_trip(r#"{"id":9,"rpc":{"data":{"id":42},"method":"getUser"}}"#);
    let rpc = c.rpc.unwrap();
    assert_eq!(
        (rpc.method.as_str(), text(&rpc.data)),
        ("getUser", r#"{"id":42}"#)
    );

    let c = command_round_trip(r#"{"id":10,"refresh":{"token":"new"}}"#);
    assert_eq!(c.refresh.unwrap().token, "new");

    let c = command_round_trip(r#"{"id":11,"sub_refresh":{"channel":"news","token":"t2"}}"#);
    assert_eq!(c.method(), Some(Method::SubRefresh));
    let c = command_round_trip(
        r#"{"id":12,"sub_refresh":{"channel":"m","type":1,"track":[{"signature":"sig","items":[{"key":"a","version":3}]}],"untrack":["b"]}}"#,
    );
    let sr = c.sub_refresh.unwrap();
    assert_eq!(sr.track[0].items[0].version, 3);
    assert_eq!(sr.untrack, ["b"]);
}

#[test]
fn empty_command_is_the_pong() {
    let c = command_round_trip("{}");
    assert!(c.is_pong());
    assert_eq!(c.request(), None);
    assert!(!command_round_trip(r#"{"id":1,"presence":{"channel":"a"}}"#).is_pong());
}

#[test]
fn request_picks_the_first_field_and_counts_the_rest() {
    let c = command_round_trip(
        r#"{"id":1,"subscribe":{"channel":"a"},"publish":{"channel":"b","data":1}}"#,
    );
    assert_eq!(c.method(), Some(Method::Subscribe));
    assert_eq!(c.request_count(), 2);
}

#[test]
fn null_fields_count_as_absent_like_centrifugo() {
    let c = decode_commands(
        Encoding::Json,
        br#"{"id":1,"connect":{"token":null,"name":"js","subs":null,"headers":null},"subscribe":null}"#,
    )
    .unwrap()
    .remove(0);
    let connect = c.connect.unwrap();
    assert_eq!((connect.token.as_str(), connect.name.as_str()), ("", "js"));
    assert!(connect.subs.is_empty());
    assert!(c.subscribe.is_none());
}

#[test]
fn unknown_fields_are_ignored() {
    let c = decode_commands(
        Encoding::Json,
        br#"{"id":1,"future":{"x":[1,{"y":null}]},"connect":{"token":"x","new_field":true,"name":"js"},"method":0,"params":"old"}"#,
    )
    .unwrap()
    .remove(0);
    let connect = c.connect.unwrap();
    assert_eq!(
        (c.id, connect.token.as_str(), connect.name.as_str()),
        (1, "x", "js")
    );
}

// ---- payloads ----

#[test]
fn payloads_of_every_kind_are_kept_byte_for_byte() {
    for data in [
        r#"{"text":"hi"}"#,
        r#"[1,"two",{"three":3},[]]"#,
        r#""just a string with \"quotes\" and \u00e9 and \n""#,
        "42",
        "-0.5e-7",
        "null",
        "true",
        "false",
        r#"{ "spaced" :  [ 1 , 2 ] }"#,
        r#"{"nested":{"deeper":{"deepest":[null,true,false,1.5]}}}"#,
        "\"ünïcödé ✓\"",
    ] {
        let line = format!(r#"{{"id":4,"publish":{{"channel":"news","data":{data}}}}}"#);
        let c = decode_commands(Encoding::Json, line.as_bytes())
            .unwrap()
            .remove(0);
        let publish = c.publish.as_ref().unwrap();
        assert_eq!(text(&publish.data), data);
        // Written back verbatim, and forwarded verbatim in a publication.
        assert_eq!(serde_json::to_string(&c).unwrap(), line);
        let push = Push::publication(
            "news",
            Publication {
                data: publish.data.clone(),
                ..Default::default()
            },
        );
        let frame = encode_push_reply(Encoding::Json, &push).unwrap();
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            format!(r#"{{"push":{{"channel":"news","pub":{{"data":{data}}}}}}}"#)
        );
    }
}

#[test]
fn absent_and_null_payloads_differ() {
    let c = command_round_trip(r#"{"id":4,"publish":{"channel":"news"}}"#);
    assert!(c.publish.unwrap().data.is_empty());
    let c = command_round_trip(r#"{"id":4,"publish":{"channel":"news","data":null}}"#);
    assert_eq!(&c.publish.unwrap().data[..], b"null");
}

#[test]
fn payload_newlines_are_removed_so_the_frame_stays_one_line_per_message() {
    let reply = Reply::from_push(Push::publication(
        "news",
        Publication {
            data: Bytes::from_static(b"{\n  \"text\": \"a\\nb\"\n}"),
            ..Default::default()
        },
    ));
    let frame = encode_reply(Encoding::Json, &reply).unwrap();
    assert!(!frame.contains(&b'\n'));
    assert_eq!(
        std::str::from_utf8(&frame).unwrap(),
        r#"{"push":{"channel":"news","pub":{"data":{  "text": "a\nb"}}}}"#
    );
}

// ---- replies ----

#[test]
fn connect_reply() {
    let r = reply_round_trip(
        r#"{"id":1,"connect":{"client":"c1","version":"0.1.0","ping":25,"pong":true}}"#,
    );
    let c = r.connect.unwrap();
    assert_eq!((c.client.as_str(), c.ping, c.pong), ("c1", 25, true));

    reply_round_trip(
        r#"{"id":1,"connect":{"client":"7a2b","version":"wshub 0.1.0","expires":true,"ttl":3600,"data":{"motd":"hello"},"subs":{"server:feed":{"recoverable":true,"epoch":"e1","offset":2,"positioned":true}},"ping":25,"pong":true,"session":"s1","node":"n1","time":1700000000000,"flag":1,"dict":{"id":"abc","data_b64":"eJw="}}}"#,
    );
    // Defaults are left out, in proto field order.
    let reply = Reply {
        id: 1,
        connect: Some(ConnectResult {
            client: "c1".into(),
            version: "0.1.0".into(),
            ping: 25,
            pong: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        &encode_reply(Encoding::Json, &reply).unwrap()[..],
        br#"{"id":1,"connect":{"client":"c1","version":"0.1.0","ping":25,"pong":true}}"#
    );
}

#[test]
fn subscribe_reply() {
    let r = reply_round_trip(
        r#"{"id":2,"subscribe":{"recoverable":true,"epoch":"abc","publications":[{"data":{"text":"missed"},"offset":6,"tags":{"k":"v"}}],"recovered":true,"offset":6,"positioned":true,"was_recovering":true}}"#,
    );
    let s = r.subscribe.unwrap();
    assert!(s.recovered && s.was_recovering);
    assert_eq!(text(&s.publications[0].data), r#"{"text":"missed"}"#);
    assert_eq!(s.publications[0].tags["k"], "v");

    reply_round_trip(
        r#"{"id":2,"subscribe":{"expires":true,"ttl":60,"data":{"welcome":1},"delta":true,"id":17,"type":1,"phase":2,"cursor":"next","state":[{"data":1,"key":"a","version":2}],"publish_debounce":100}}"#,
    );
    // An empty result is still an object, so the SDK sees the method answered.
    reply_round_trip(r#"{"id":2,"subscribe":{}}"#);
}

#[test]
fn empty_results() {
    for json in [
        r#"{"id":3,"unsubscribe":{}}"#,
        r#"{"id":4,"publish":{}}"#,
        r#"{"id":8,"ping":{}}"#,
    ] {
        let reply = reply_round_trip(json);
        assert_eq!(
            &encode_reply(Encoding::Json, &reply).unwrap()[..],
            json.as_bytes()
        );
    }
}

#[test]
fn presence_replies_always_write_their_fields() {
    let reply = Reply {
        id: 5,
        presence: Some(PresenceResult::default()),
        ..Default::default()
    };
    assert_eq!(
        &encode_reply(Encoding::Json, &reply).unwrap()[..],
        br#"{"id":5,"presence":{"presence":{}}}"#
    );
    let r = reply_round_trip(
        r#"{"id":5,"presence":{"presence":{"c1":{"user":"u1","client":"c1","conn_info":{"name":"Alice"},"chan_info":[1]},"c2":{"user":"","client":"c2"}}}}"#,
    );
    let presence = r.presence.unwrap().presence;
    assert_eq!(text(&presence["c1"].conn_info), r#"{"name":"Alice"}"#);
    assert_eq!(presence["c2"].user, "");

    let reply = Reply {
        id: 6,
        presence_stats: Some(PresenceStatsResult::default()),
        ..Default::default()
    };
    assert_eq!(
        &encode_reply(Encoding::Json, &reply).unwrap()[..],
        br#"{"id":6,"presence_stats":{"num_clients":0,"num_users":0}}"#
    );
    reply_round_trip(r#"{"id":6,"presence_stats":{"num_clients":3,"num_users":2}}"#);
}

#[test]
fn history_reply_always_writes_its_fields() {
    let reply = Reply {
        id: 7,
        history: Some(HistoryResult::default()),
        ..Default::default()
    };
    assert_eq!(
        &encode_reply(Encoding::Json, &reply).unwrap()[..],
        br#"{"id":7,"history":{"publications":[],"epoch":"","offset":0}}"#
    );
    let r = reply_round_trip(
        r#"{"id":7,"history":{"publications":[{"data":"a","offset":1},{"data":"b","info":{"user":"u","client":"c"},"offset":2}],"epoch":"abc","offset":2}}"#,
    );
    assert_eq!(
        r.history.unwrap().publications[1]
            .info
            .as_ref()
            .unwrap()
            .user,
        "u"
    );
}

#[test]
fn rpc_refresh_sub_refresh_replies() {
    let r = reply_round_trip(r#"{"id":9,"rpc":{"data":{"name":"Alice"}}}"#);
    assert_eq!(text(&r.rpc.unwrap().data), r#"{"name":"Alice"}"#);
    reply_round_trip(
        r#"{"id":10,"refresh":{"client":"c1","version":"v","expires":true,"ttl":600}}"#,
    );
    reply_round_trip(r#"{"id":11,"sub_refresh":{"expires":true,"ttl":600}}"#);
    reply_round_trip(
        r#"{"id":12,"sub_refresh":{"ttl":30,"items":[{"data":{"x":1},"key":"a","version":4}]}}"#,
    );
}

#[test]
fn error_replies() {
    let reply = Reply::error(12, ErrorCode::INTERNAL);
    let json =
        r#"{"id":12,"error":{"code":100,"message":"internal server error","temporary":true}}"#;
    assert_eq!(
        &encode_reply(Encoding::Json, &reply).unwrap()[..],
        json.as_bytes()
    );
    assert_eq!(reply_round_trip(json), reply);
    reply_round_trip(r#"{"id":13,"error":{"code":4001,"message":"custom"}}"#);
}

// ---- pushes ----

#[test]
fn publication_push() {
    let json = r#"{"push":{"channel":"news","pub":{"data":{"text":"hi"},"offset":6}}}"#;
    let r = reply_round_trip(json);
    assert_eq!(r.id, 0);
    let push = r.push.unwrap();
    let publication = push.publication.as_ref().unwrap();
    assert_eq!(text(&publication.data), r#"{"text":"hi"}"#);
    assert_eq!(publication.offset, 6);
    assert_eq!(
        &encode_push_reply(Encoding::Json, &push).unwrap()[..],
        json.as_bytes()
    );

    reply_round_trip(
        r#"{"push":{"channel":"news","pub":{"data":"delta","info":{"user":"u","client":"c","conn_info":{"a":1}},"offset":7,"tags":{"a":"1","b":"2"},"delta":true,"time":1700000000123,"channel":"news:1","key":"k","removed":true,"score":-5,"epoch":"e","version":9}}}"#,
    );
    reply_round_trip(r#"{"push":{"id":42,"pub":{"data":1}}}"#);
}

#[test]
fn join_leave_unsubscribe_message_pushes() {
    let info = ClientInfo {
        user: "u1".into(),
        client: "c1".into(),
        ..Default::default()
    };
    let join = Reply::from_push(Push::join("news", info.clone()));
    let json = r#"{"push":{"channel":"news","join":{"info":{"user":"u1","client":"c1"}}}}"#;
    assert_eq!(
        &encode_reply(Encoding::Json, &join).unwrap()[..],
        json.as_bytes()
    );
    assert_eq!(reply_round_trip(json), join);

    let leave = Reply::from_push(Push::leave("news", info));
    assert_eq!(
        reply_round_trip(
            r#"{"push":{"channel":"news","leave":{"info":{"user":"u1","client":"c1"}}}}"#
        ),
        leave
    );

    let unsub = Reply::from_push(Push::unsubscribe("news", UnsubscribeCode::SERVER.into()));
    assert_eq!(
        reply_round_trip(
            r#"{"push":{"channel":"news","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}"#
        ),
        unsub
    );

    let message = Reply::from_push(Push::message(Bytes::from_static(br#"{"x":1}"#)));
    assert_eq!(
        reply_round_trip(r#"{"push":{"message":{"data":{"x":1}}}}"#),
        message
    );
}

#[test]
fn subscribe_connect_disconnect_refresh_pushes() {
    reply_round_trip(
        r#"{"push":{"channel":"server:feed","subscribe":{"recoverable":true,"epoch":"e","offset":1,"positioned":true,"data":{"a":1}}}}"#,
    );
    reply_round_trip(
        r#"{"push":{"connect":{"client":"c1","version":"v","data":{"hello":1},"subs":{"s":{"offset":1}},"expires":true,"ttl":10,"ping":25,"pong":true,"session":"s","node":"n","time":5}}}"#,
    );
    let disconnect = Reply::from_push(Push::disconnect(Disconnect::from(DisconnectCode::SHUTDOWN)));
    assert_eq!(
        reply_round_trip(
            r#"{"push":{"disconnect":{"code":3001,"reason":"shutdown","reconnect":true}}}"#
        ),
        disconnect
    );
    reply_round_trip(r#"{"push":{"refresh":{"expires":true,"ttl":60}}}"#);
}

#[test]
fn empty_reply_is_the_ping() {
    let r = reply_round_trip("{}");
    assert!(r.is_ping());
    assert!(!Reply::error(1, ErrorCode::BAD_REQUEST).is_ping());
}

#[test]
fn emulation_request_shape() {
    let body: wshub_protocol::EmulationRequest =
        serde_json::from_str(r#"{"node":"n1","session":"s1","data":{"id":1,"publish":{}}}"#)
            .unwrap();
    assert_eq!(body.session, "s1");
    assert_same_json(text(&body.data), r#"{"id":1,"publish":{}}"#);
}

use super::*;
use crate::message::*;
use uuid::Uuid;

#[test]
fn calls_and_replies_decode_as_views_of_the_frame() {
    let id = Uuid::new_v4();
    let args = Bytes::from(vec![7u8; 4096]);
    let call = Message::Call(Call {
        id,
        method: "echo".into(),
        deadline_ms: 5000,
        args: args.clone(),
    });
    let reply = Message::Reply(Reply { id, result: args });
    for message in [call, reply] {
        let frame = encode(&message).expect("encodes");
        let shared = decode_shared(&frame, 1 << 20).expect("decodes");
        assert_eq!(shared, message);
        let payload = match &shared {
            Message::Call(c) => &c.args,
            Message::Reply(r) => &r.result,
            _ => unreachable!(),
        };
        let range = frame.as_ptr_range();
        assert!(range.contains(&payload.as_ptr()), "a copy, not a view");
    }
    // A small result is copied: it must not keep a read buffer alive.
    let small = encode(&Message::Reply(Reply {
        id,
        result: Bytes::from_static(b"\x01"),
    }))
    .expect("encodes");
    let Message::Reply(r) = decode_shared(&small, 1 << 20).expect("decodes") else {
        panic!("not a reply");
    };
    assert!(!small.as_ptr_range().contains(&r.result.as_ptr()));
}

/// The hand-written CALL and REPLY are serde's bytes exactly, at every
/// size where MessagePack changes its length encoding.
#[test]
fn calls_and_replies_encode_as_serde_does_and_decode_back() {
    let id = Uuid::new_v4();
    let sizes = [0usize, 1, 31, 32, 255, 256, 65535, 65536, 70000];
    let deadlines = [0u32, 127, 128, 255, 256, 65535, 65536, u32::MAX];
    for (i, &size) in sizes.iter().enumerate() {
        let payload = Bytes::from(vec![i as u8; size]);
        let method: String = "m".repeat(sizes[(i + 3) % sizes.len()].min(300));
        let call = Message::Call(Call {
            id,
            method,
            deadline_ms: deadlines[i % deadlines.len()],
            args: payload.clone(),
        });
        let reply = Message::Reply(Reply {
            id,
            result: payload,
        });
        for message in [call, reply] {
            let ours = encode(&message).expect("encodes");
            let serde = rmp_serde::to_vec_named(&message).expect("serde encodes");
            assert_eq!(ours.as_ref(), serde.as_slice(), "{size}");
            assert_eq!(decode_shared(&ours, 1 << 20).expect("decodes"), message);
        }
    }
}

/// What the fast readers do not take, serde still judges: fields in
/// another order or an extra field decode as before, a key twice or a
/// wrong type fails as before.
#[test]
fn unusual_calls_and_replies_are_judged_by_serde() {
    #[derive(serde::Serialize)]
    struct Shuffled<'a> {
        args: &'a serde_bytes::Bytes,
        deadline_ms: u64,
        method: &'a str,
        id: &'a serde_bytes::Bytes,
        extra: bool,
    }
    let id = Uuid::new_v4();
    let mut frame = b"\x81\xa4call".to_vec();
    frame.extend(
        rmp_serde::to_vec_named(&Shuffled {
            args: serde_bytes::Bytes::new(b"\x01"),
            deadline_ms: 9,
            method: "echo",
            id: serde_bytes::Bytes::new(id.as_bytes()),
            extra: true,
        })
        .expect("encodes"),
    );
    let frame = Bytes::from(frame);
    assert_eq!(
        decode_shared(&frame, 1 << 20).map_err(|e| e.to_string()),
        decode(&frame, 1 << 20).map_err(|e| e.to_string())
    );
    assert!(matches!(
        decode_shared(&frame, 1 << 20),
        Ok(Message::Call(Call { deadline_ms: 9, .. }))
    ));
    let twice = Bytes::from_static(b"\x81\xa5reply\x82\xa6result\xc4\x00\xa6result\xc4\x00");
    let negative = Bytes::from_static(
        b"\x81\xa4call\x84\xa2id\xc4\x02ab\xa6method\xa0\xabdeadline_ms\xff\xa4args\xc4\x00",
    );
    for bad in [twice, negative] {
        let ours = decode_shared(&bad, 1 << 20).map_err(|e| e.to_string());
        assert!(ours.is_err(), "{bad:?}");
        assert_eq!(ours, decode(&bad, 1 << 20).map_err(|e| e.to_string()));
    }
}

#[test]
fn decode_shared_answers_every_other_frame_as_decode_does() {
    let frames: Vec<Bytes> = vec![
        encode(&Message::Heartbeat(Heartbeat {})).expect("encodes"),
        encode(&Message::Cancel(Cancel { id: Uuid::new_v4() })).expect("encodes"),
        Bytes::from_static(b"\x81\xa4call\x81\xa2id\xc0"),
        Bytes::from_static(b"\x81\xa5reply"),
        Bytes::from_static(b"\x81\xa5reply\x82\xa2id\xc4\x10"),
        Bytes::from_static(b"\xc1"),
        Bytes::new(),
    ];
    for frame in frames {
        let ours = decode_shared(&frame, 1 << 20).map_err(|e| e.to_string());
        let theirs = decode(&frame, 1 << 20).map_err(|e| e.to_string());
        assert_eq!(ours, theirs, "{frame:?}");
    }
    let big = encode(&Message::Reply(Reply {
        id: Uuid::new_v4(),
        result: Bytes::from(vec![0u8; 2048]),
    }))
    .expect("encodes");
    assert!(matches!(
        decode_shared(&big, 1024),
        Err(BusError::TooLarge { .. })
    ));
}

#[test]
fn every_kind_round_trips() {
    let id = Uuid::new_v4();
    let all = vec![
        Message::Hello(Hello {
            cookie: "c".into(),
            versions: vec![1],
            plugin_id: "echo".into(),
            token: "t".into(),
            manifest: Manifest::default(),
            methods: vec!["echo".into()],
            subscriptions: vec!["home/#".into()],
            receive_own: false,
            interfaces: Vec::new(),
        }),
        Message::Event(EventHeader {
            seq: 7,
            retained: true,
        }),
        Message::Credit(Credit { events: 64 }),
        Message::Call(Call {
            id,
            method: "m".into(),
            deadline_ms: 5,
            args: Bytes::from_static(&[0xc0]),
        }),
        Message::Reply(Reply {
            id,
            result: Bytes::from_static(&[0x01]),
        }),
        Message::Error(ErrorReply {
            id: None,
            code: crate::ErrorCode::Timeout,
            message: "late".into(),
        }),
        Message::Cancel(Cancel { id }),
        Message::Heartbeat(Heartbeat {}),
        Message::Goodbye(Goodbye {
            reason: "bye".into(),
        }),
    ];
    for m in all {
        let frame = encode(&m).expect("encodes");
        assert_eq!(decode(&frame, 1 << 20).expect("decodes"), m);
    }
}

#[test]
fn heartbeat_bytes_are_fixed() {
    let frame = encode(&Message::Heartbeat(Heartbeat {})).expect("encodes");
    assert_eq!(&frame[..], b"\x81\xa9heartbeat\x80");
}

#[test]
fn hand_encoded_event_header_equals_serde() {
    for seq in [
        0,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        u64::from(u32::MAX) + 1,
        u64::MAX,
    ] {
        for retained in [false, true] {
            let serde = encode(&Message::Event(EventHeader { seq, retained })).expect("encodes");
            assert_eq!(encode_event_header(seq, retained), serde, "seq {seq}");
        }
    }
}

#[test]
fn oversized_frame_is_refused_before_decoding() {
    let err = decode(&[0u8; 100], 99).expect_err("too large");
    assert!(matches!(err, BusError::TooLarge { size: 100, max: 99 }));
}

#[test]
fn unknown_kind_and_garbage_are_errors_not_panics() {
    assert!(decode(b"\x81\xa3foo\x80", 1024).is_err());
    assert!(decode(&[0xff, 0x00, 0x13], 1024).is_err());
    assert!(decode(&[], 1024).is_err());
}

#[test]
fn unknown_error_code_decodes_as_unknown() {
    let frame = b"\x81\xa5error\x83\xa2id\xc0\xa4code\xa4nope\xa7message\xa1x";
    match decode(frame, 1024).expect("decodes") {
        Message::Error(e) => assert_eq!(e.code, crate::ErrorCode::Unknown),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
#[allow(clippy::unwrap_used)]
fn an_error_code_this_version_does_not_know_is_kept_in_words() {
    #[derive(serde::Serialize)]
    struct Wire<'a> {
        id: Option<crate::CallId>,
        code: &'a str,
        message: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        error: Wire<'a>,
    }
    let frame = rmp_serde::to_vec_named(&Envelope {
        error: Wire {
            id: None,
            code: "disk_on_fire",
            message: "the store is full",
        },
    })
    .unwrap();
    match crate::decode(&frame, 1 << 20).unwrap() {
        Message::Error(e) => {
            assert_eq!(e.code, crate::ErrorCode::Unknown);
            assert_eq!(e.message, "disk_on_fire: the store is full");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        crate::ErrorCode::parse("timeout"),
        crate::ErrorCode::Timeout
    );
    assert_eq!(
        crate::ErrorCode::parse("no_such_code"),
        crate::ErrorCode::Unknown
    );
}

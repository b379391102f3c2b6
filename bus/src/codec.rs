//! One frame <-> one [`Message`], with the size cap checked before decoding.

use bytes::Bytes;

use crate::error::BusError;
use serde::Deserialize;

use crate::message::{Call, CallId, EventBody, Message, Reply};

/// Default cap on one frame: 4 MiB. Large enough for a 1 MiB payload with
/// room to spare, small enough that a hostile or buggy peer cannot make the
/// host buffer much. Configurable on the host (`max_message_bytes`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Encodes a message as a MessagePack map with string keys.
pub fn encode(message: &Message) -> Result<Bytes, BusError> {
    // Sized up front: growing from empty cost a CALL five reallocations on
    // the call path.
    let mut buf = Vec::with_capacity(capacity_hint(message));
    rmp_serde::encode::write_named(&mut buf, message)?;
    Ok(Bytes::from(buf))
}

/// Room for the envelope (kind, field names, a 16-byte id, a deadline)
/// plus the variable parts, so the common messages encode without growing.
fn capacity_hint(message: &Message) -> usize {
    const ENVELOPE: usize = 64;
    ENVELOPE
        + match message {
            Message::Call(c) => c.method.len() + c.args.len(),
            Message::Reply(r) => r.result.len(),
            Message::Error(e) => e.message.len(),
            _ => 0,
        }
}

/// Decodes one frame, refusing frames over `max` bytes before looking inside.
pub fn decode(frame: &[u8], max: usize) -> Result<Message, BusError> {
    if frame.len() > max {
        return Err(BusError::TooLarge {
            size: frame.len(),
            max,
        });
    }
    Ok(rmp_serde::from_slice(frame)?)
}

/// Decodes one frame like [`decode`], except that large arguments of a CALL
/// and large results of a REPLY share the frame's buffer instead of being
/// copied out of it: the two messages on the path of every call, whose
/// payload is the bulk of the frame. Any other frame, or one these do not
/// read, goes through [`decode`], errors and all.
pub fn decode_shared(frame: &Bytes, max: usize) -> Result<Message, BusError> {
    if frame.len() <= max {
        // {"call": {...}} and {"reply": {...}}, as `encode` writes them.
        if let Some(body) = frame.strip_prefix(b"\x81\xa4call") {
            if let Ok(c) = rmp_serde::from_slice::<CallRef<'_>>(body) {
                return Ok(Message::Call(Call {
                    id: c.id,
                    method: c.method.to_owned(),
                    deadline_ms: c.deadline_ms,
                    args: share(frame, c.args),
                }));
            }
        } else if let Some(body) = frame.strip_prefix(b"\x81\xa5reply") {
            if let Ok(r) = rmp_serde::from_slice::<ReplyRef<'_>>(body) {
                return Ok(Message::Reply(Reply {
                    id: r.id,
                    result: share(frame, r.result),
                }));
            }
        }
    }
    decode(frame, max)
}

/// Payloads smaller than this are copied even by [`decode_shared`]: a view
/// keeps the whole read buffer it sits in alive (up to 64 KiB in `zeromq`)
/// for as long as the caller keeps the result; from 4 KiB up, that costs
/// at most 16 times the payload, and the copy it saves is worth it.
pub const SHARE_MIN: usize = 4096;

/// `part` as a view of `frame`'s buffer when it is large enough (see
/// [`SHARE_MIN`]); otherwise, or if it were not inside the frame (it always
/// is: the decoder only lends slices of its input), a copy.
fn share(frame: &Bytes, part: &[u8]) -> Bytes {
    if part.len() < SHARE_MIN {
        return Bytes::copy_from_slice(part);
    }
    let start = (part.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= frame.len() => frame.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

/// A CALL whose arguments are borrowed from the frame.
#[derive(Deserialize)]
struct CallRef<'a> {
    id: CallId,
    #[serde(borrow)]
    method: &'a str,
    deadline_ms: u32,
    #[serde(borrow, with = "serde_bytes")]
    args: &'a [u8],
}

/// A REPLY whose result is borrowed from the frame.
#[derive(Deserialize)]
struct ReplyRef<'a> {
    id: CallId,
    #[serde(borrow, with = "serde_bytes")]
    result: &'a [u8],
}

/// Encodes an EVENT header frame, exactly as `encode` would, without serde:
/// it is written once per event per subscriber, the hottest encode there is.
pub fn encode_event_header(seq: u64, retained: bool) -> Bytes {
    // {"event": {"seq": seq, "retained": retained}}
    let mut buf = Vec::with_capacity(32);
    buf.extend_from_slice(b"\x81\xa5event\x82\xa3seq");
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_uint(&mut buf, seq);
    buf.extend_from_slice(b"\xa8retained");
    buf.push(if retained { 0xc3 } else { 0xc2 });
    Bytes::from(buf)
}

/// Encodes the shared second frame of an EVENT (once per publication).
pub fn encode_event_body(body: &EventBody) -> Result<Bytes, BusError> {
    Ok(Bytes::from(rmp_serde::to_vec_named(body)?))
}

/// Decodes the second frame of an EVENT.
pub fn decode_event_body(frame: &[u8], max: usize) -> Result<EventBody, BusError> {
    if frame.len() > max {
        return Err(BusError::TooLarge {
            size: frame.len(),
            max,
        });
    }
    Ok(rmp_serde::from_slice(frame)?)
}

#[cfg(test)]
mod tests {
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
                let serde =
                    encode(&Message::Event(EventHeader { seq, retained })).expect("encodes");
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
}

#[cfg(test)]
mod protocol_doc {
    //! Keeps `docs/PROTOCOL.md` true: every hex example in it must decode,
    //! and re-encode to exactly the same bytes.

    fn bytes_of(block: &str) -> Vec<u8> {
        let hex = block.split("```").next().unwrap_or_default();
        hex.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).expect("hex byte"))
            .collect()
    }

    #[test]
    fn every_example_in_protocol_md_round_trips() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
        let doc = std::fs::read_to_string(path).expect("docs/PROTOCOL.md is readable");
        let mut messages = 0;
        for block in doc.split("```hex\n").skip(1) {
            let bytes = bytes_of(block);
            let message = super::decode(&bytes, usize::MAX).expect("example decodes");
            let again = super::encode(&message).expect("example encodes");
            assert_eq!(
                &again[..],
                &bytes[..],
                "example {message:?} re-encodes differently"
            );
            messages += 1;
        }
        assert_eq!(messages, 11, "one example per message kind");
        let mut bodies = 0;
        for block in doc.split("```hex-event-body\n").skip(1) {
            let bytes = bytes_of(block);
            let body = super::decode_event_body(&bytes, usize::MAX).expect("body decodes");
            let again = super::encode_event_body(&body).expect("body encodes");
            assert_eq!(&again[..], &bytes[..], "event body re-encodes differently");
            bodies += 1;
        }
        assert_eq!(bodies, 1, "one example of an event body");
    }
}

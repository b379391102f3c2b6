//! One frame <-> one [`Message`], with the size cap checked before decoding.

use bytes::Bytes;

use crate::error::BusError;

use crate::message::{Call, CallId, EventBody, Message, Reply};

/// Default cap on one frame: 4 MiB. Large enough for a 1 MiB payload with
/// room to spare, small enough that a hostile or buggy peer cannot make the
/// host buffer much. Configurable on the host (`max_message_bytes`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Encodes a message as a MessagePack map with string keys.
pub fn encode(message: &Message) -> Result<Bytes, BusError> {
    match message {
        Message::Call(c) => return Ok(encode_call(c)),
        Message::Reply(r) => return Ok(encode_reply(r)),
        _ => {}
    }
    // Sized up front, so the envelope and an ERROR's message fit at once.
    let mut buf = Vec::with_capacity(capacity_hint(message));
    rmp_serde::encode::write_named(&mut buf, message)?;
    Ok(Bytes::from(buf))
}

/// Room for the envelope (kind, field names, a 16-byte id, a deadline)
/// plus the variable part, so a message encodes without growing.
const ENVELOPE: usize = 64;

fn capacity_hint(message: &Message) -> usize {
    ENVELOPE
        + match message {
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
            if let Some(c) = call_fields(body) {
                return Ok(Message::Call(Call {
                    id: c.id,
                    method: c.method.to_owned(),
                    deadline_ms: c.deadline_ms,
                    args: share(frame, c.args),
                }));
            }
        } else if let Some(body) = frame.strip_prefix(b"\x81\xa5reply") {
            if let Some(r) = reply_fields(body) {
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
struct CallRef<'a> {
    id: CallId,
    method: &'a str,
    deadline_ms: u32,
    args: &'a [u8],
}

/// A REPLY whose result is borrowed from the frame.
struct ReplyRef<'a> {
    id: CallId,
    result: &'a [u8],
}

// CALL and REPLY are read and written by hand, with rmp's primitives: they
// are the two messages of every call, and serde's generic path (a visitor
// per key, UTF-8 checks of every key, the uuid's byte visitor) cost about
// 1,400 instructions per CALL in callgrind, several times the work. The
// readers accept only the exact shape `encode` writes, keys in any order;
// anything else (another key, a key twice, another type) returns `None` and
// the frame goes through serde, so what is accepted or refused, and why,
// does not change.

/// The fields of `{"id", "method", "deadline_ms", "args"}`.
fn call_fields(body: &[u8]) -> Option<CallRef<'_>> {
    let mut rd = body;
    if rmp::decode::read_map_len(&mut rd).ok()? != 4 {
        return None;
    }
    let (mut id, mut method, mut deadline_ms, mut args) = (None, None, None, None);
    for _ in 0..4 {
        match read_str(&mut rd)? {
            b"id" if id.is_none() => id = Some(read_id(&mut rd)?),
            b"method" if method.is_none() => {
                method = Some(std::str::from_utf8(read_str(&mut rd)?).ok()?)
            }
            b"deadline_ms" if deadline_ms.is_none() => {
                deadline_ms = Some(rmp::decode::read_int::<u32, _>(&mut rd).ok()?)
            }
            b"args" if args.is_none() => args = Some(read_bin(&mut rd)?),
            _ => return None,
        }
    }
    Some(CallRef {
        id: id?,
        method: method?,
        deadline_ms: deadline_ms?,
        args: args?,
    })
}

/// Which message an oversized frame was, as far as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peeked {
    /// A CALL: its caller should hear `too_large` for this id.
    Call(CallId),
    /// A REPLY or an ERROR: the call with this id gets `too_large`.
    Answer(CallId),
}

/// The correlation id of a CALL, REPLY or ERROR frame, read from its first
/// bytes only (the id comes first, as `encode` writes it), so a frame over
/// the size cap can be answered for the right call without being decoded.
pub fn peek_id(frame: &[u8]) -> Option<Peeked> {
    let (body, call) = if let Some(b) = frame.strip_prefix(b"\x81\xa4call") {
        (b, true)
    } else if let Some(b) = frame.strip_prefix(b"\x81\xa5reply") {
        (b, false)
    } else if let Some(b) = frame.strip_prefix(b"\x81\xa5error") {
        (b, false)
    } else {
        return None;
    };
    let mut rd = body;
    rmp::decode::read_map_len(&mut rd).ok()?;
    if read_str(&mut rd)? != b"id" {
        return None;
    }
    let id = read_id(&mut rd)?;
    Some(if call {
        Peeked::Call(id)
    } else {
        Peeked::Answer(id)
    })
}

/// The fields of `{"id", "result"}`.
fn reply_fields(body: &[u8]) -> Option<ReplyRef<'_>> {
    let mut rd = body;
    if rmp::decode::read_map_len(&mut rd).ok()? != 2 {
        return None;
    }
    let (mut id, mut result) = (None, None);
    for _ in 0..2 {
        match read_str(&mut rd)? {
            b"id" if id.is_none() => id = Some(read_id(&mut rd)?),
            b"result" if result.is_none() => result = Some(read_bin(&mut rd)?),
            _ => return None,
        }
    }
    Some(ReplyRef {
        id: id?,
        result: result?,
    })
}

fn take<'a>(rd: &mut &'a [u8], len: u32) -> Option<&'a [u8]> {
    let len = usize::try_from(len).ok()?;
    if rd.len() < len {
        return None;
    }
    let (head, rest) = rd.split_at(len);
    *rd = rest;
    Some(head)
}

fn read_str<'a>(rd: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = rmp::decode::read_str_len(rd).ok()?;
    take(rd, len)
}

fn read_bin<'a>(rd: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = rmp::decode::read_bin_len(rd).ok()?;
    take(rd, len)
}

/// A call id: `bin 8` of 16 bytes.
fn read_id(rd: &mut &[u8]) -> Option<CallId> {
    CallId::from_slice(read_bin(rd)?).ok()
}

/// `{"call": {"id", "method", "deadline_ms", "args"}}`, byte for byte as
/// serde writes it (the tests compare).
fn encode_call(c: &Call) -> Bytes {
    let mut buf = Vec::with_capacity(ENVELOPE + c.method.len() + c.args.len());
    buf.extend_from_slice(b"\x81\xa4call\x84\xa2id");
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_bin(&mut buf, c.id.as_bytes());
    buf.extend_from_slice(b"\xa6method");
    let _ = rmp::encode::write_str(&mut buf, &c.method);
    buf.extend_from_slice(b"\xabdeadline_ms");
    let _ = rmp::encode::write_uint(&mut buf, u64::from(c.deadline_ms));
    buf.extend_from_slice(b"\xa4args");
    let _ = rmp::encode::write_bin(&mut buf, &c.args);
    Bytes::from(buf)
}

/// `{"reply": {"id", "result"}}`, byte for byte as serde writes it.
fn encode_reply(r: &Reply) -> Bytes {
    let mut buf = Vec::with_capacity(ENVELOPE + r.result.len());
    buf.extend_from_slice(b"\x81\xa5reply\x82\xa2id");
    let _ = rmp::encode::write_bin(&mut buf, r.id.as_bytes());
    buf.extend_from_slice(b"\xa6result");
    let _ = rmp::encode::write_bin(&mut buf, &r.result);
    Bytes::from(buf)
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
mod tests;

#[cfg(test)]
mod protocol_doc;

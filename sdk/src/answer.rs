//! A call's answer as a frame: REPLY with the result, or ERROR with the
//! handler's error, and `too_large` instead of anything over the host's cap.

use bytes::Bytes;
use iglu_bus::{CallId, ErrorCode, ErrorReply, Message, Reply, WireError};

/// The frame answering a call, replaced by `too_large` if it would break the host's cap.
pub(crate) fn answer_frame(id: CallId, result: Result<Bytes, WireError>, max: usize) -> Bytes {
    let message = match result {
        Ok(result) => Message::Reply(Reply { id, result }),
        Err(e) => Message::Error(ErrorReply {
            id: Some(id),
            code: e.code,
            message: e.message,
        }),
    };
    match iglu_bus::encode(&message) {
        Ok(frame) if frame.len() <= max => frame,
        Ok(frame) => fallback(
            id,
            WireError::new(
                ErrorCode::TooLarge,
                format!(
                    "the result is {} bytes, over the host's cap of {max}",
                    frame.len()
                ),
            ),
        ),
        Err(e) => fallback(
            id,
            WireError::new(
                ErrorCode::HandlerError,
                format!("could not encode the answer: {e}"),
            ),
        ),
    }
}

fn fallback(id: CallId, err: WireError) -> Bytes {
    error_frame(id, err).unwrap_or_default()
}

pub(crate) fn error_frame(id: CallId, err: WireError) -> Result<Bytes, iglu_bus::BusError> {
    iglu_bus::encode(&Message::Error(ErrorReply {
        id: Some(id),
        code: err.code,
        message: err.message,
    }))
}

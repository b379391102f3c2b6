//! Typed methods, erased to bytes in and bytes out.
//!
//! A plugin author registers `async fn(Context, Args) -> Result<Out, HandlerError>`;
//! this module decodes the MessagePack arguments, runs the method, catches a
//! panic, and encodes the result, so that every failure becomes a wire error
//! with the right code and the plugin keeps running.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use iglu_bus::{ErrorCode, WireError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::Context;
use crate::error::HandlerError;

/// A boxed future, as handlers are stored.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A method with its types erased: MessagePack in, MessagePack out.
pub type ErasedHandler =
    Arc<dyn Fn(Context, Bytes) -> BoxFuture<Result<Bytes, WireError>> + Send + Sync>;

/// Least and most room reserved for an encoded result before encoding.
const RESULT_ROOM_MIN: usize = 128;
const RESULT_ROOM_MAX: usize = 64 * 1024;

/// Wraps a typed method into an [`ErasedHandler`].
pub fn erase<A, R, F, Fut>(method: F) -> ErasedHandler
where
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Context, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
{
    let method = Arc::new(method);
    Arc::new(move |ctx: Context, args: Bytes| {
        let method = method.clone();
        Box::pin(async move {
            // Results are often about as large as the arguments (echoes,
            // updates): room for that, so most encode without growing.
            let room = args.len().clamp(RESULT_ROOM_MIN, RESULT_ROOM_MAX);
            let args: A = decode_args(&args)?;
            let result = method(ctx, args)
                .await
                .map_err(|e| WireError::new(ErrorCode::HandlerError, e.message()))?;
            let mut out = Vec::with_capacity(room);
            rmp_serde::encode::write_named(&mut out, &result)
                .map(|()| Bytes::from(out))
                .map_err(|e| {
                    WireError::new(
                        ErrorCode::HandlerError,
                        format!("could not encode the result: {e}"),
                    )
                })
        })
    })
}

/// Decodes a call's arguments. No arguments (`nil`, what `iglu call`
/// sends when given none) also reads as an empty map, so a method whose
/// argument struct has defaults for every field can be called with
/// neither `{}` nor anything.
fn decode_args<A: DeserializeOwned>(args: &[u8]) -> Result<A, WireError> {
    match rmp_serde::from_slice(args) {
        Ok(a) => Ok(a),
        Err(e) => {
            if args == [0xc0] {
                if let Ok(a) = rmp_serde::from_slice(&[0x80]) {
                    return Ok(a);
                }
            }
            Err(WireError::new(
                ErrorCode::BadArguments,
                format!("arguments do not match the method: {e}"),
            ))
        }
    }
}

/// Runs a handler to completion, turning a panic into `handler_panicked`.
/// Borrows the handler only to start the call: the call path clones nothing.
pub(crate) fn run_guarded(
    handler: &ErasedHandler,
    ctx: Context,
    args: Bytes,
) -> impl Future<Output = Result<Bytes, WireError>> + Send + 'static {
    // AssertUnwindSafe: the handler's state is its own; after a panic we
    // only report it and drop the future, never touch its state again.
    // Starting the call may panic too (a hand-made `ErasedHandler`).
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| handler(ctx, args)));
    async move {
        let outcome = match started {
            Ok(call) => AssertUnwindSafe(call).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        report_panic(outcome)
    }
}

fn report_panic(
    outcome: Result<Result<Bytes, WireError>, Box<dyn std::any::Any + Send>>,
) -> Result<Bytes, WireError> {
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".to_owned());
            Err(WireError::new(
                ErrorCode::HandlerPanicked,
                format!("the handler panicked: {what}"),
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod args_tests {
    use super::decode_args;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Page {
        #[serde(default)]
        limit: u32,
    }

    #[test]
    fn no_arguments_read_as_an_empty_map_for_a_struct_of_defaults() {
        assert_eq!(decode_args::<Page>(&[0xc0]).unwrap(), Page { limit: 0 });
        assert_eq!(decode_args::<Page>(&[0x80]).unwrap(), Page { limit: 0 });
        assert_eq!(decode_args::<()>(&[0xc0]).unwrap(), ());
        let e = decode_args::<Page>(&[0x01]).unwrap_err();
        assert_eq!(e.code, iglu_bus::ErrorCode::BadArguments);
    }
}

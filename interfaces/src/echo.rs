//! `iglu.echo`: bytes back as they came. What `iglu bench` measures typed
//! calls with, next to raw ones.

use iglu_sdk::Context;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// An echo never fails; the type is there because every interface method
/// has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum EchoError {
    /// Never sent.
    #[error("unreachable")]
    Unreachable,
}

/// A byte echo.
#[iglu_sdk::interface(name = "iglu.echo", version = "1.0.0")]
pub trait Echo {
    /// `data`, unchanged.
    async fn echo(&self, ctx: Context, data: ByteBuf) -> Result<ByteBuf, EchoError>;
}

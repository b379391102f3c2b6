//! Interfaces in a plugin: declare one with [`macro@crate::interface`],
//! implement it with `Plugin::implement(<Trait>Interface::server(imp))`,
//! and call one with `<Trait>Client::new(ctx.host().clone(), "plugin")`:
//! through the host, which checks that the callee implements a compatible
//! version before it forwards anything. The shared run-time part is
//! `iglu_bus::interface`, re-exported here.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
pub use iglu_bus::interface::*;

use crate::error::CallError;
use crate::handler::ErasedHandler;
use crate::host::HostClient;

/// An implementation of an interface, ready for `Plugin::implement`:
/// what to announce and the handlers of its methods (by wire name).
pub struct Server {
    /// The announcement.
    pub info: InterfaceInfo,
    /// `<interface>.<method>` and its handler.
    pub handlers: Vec<(String, ErasedHandler)>,
}

impl Caller for HostClient {
    fn call_interface<'a>(
        &'a self,
        plugin: &'a str,
        interface: &'a InterfaceId,
        method: &'a str,
        args: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<Bytes, WireError>> {
        async move {
            self.api()
                .with_deadline(deadline)
                .plugins_call(
                    plugin.to_owned(),
                    method_name(interface.name, method),
                    serde_bytes::ByteBuf::from(args),
                    None,
                    Some(interface.to_ref()),
                )
                .await
                .map_err(|e| match e {
                    CallError::Remote(w) => w,
                    CallError::Timeout(d) => WireError::new(
                        ErrorCode::Timeout,
                        format!("no answer within {} ms", d.as_millis()),
                    ),
                    CallError::Disconnected => WireError::new(
                        ErrorCode::NotRunning,
                        "the connection to the host is closed",
                    ),
                    other => WireError::new(ErrorCode::BadArguments, other.to_string()),
                })
        }
        .boxed()
    }
}

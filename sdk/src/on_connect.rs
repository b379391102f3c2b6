//! Work a plugin does once it is connected: publish its devices' state,
//! subscribe to what depends on its settings. It runs after every WELCOME
//! (an external plugin reconnects; the host may have restarted and lost
//! what was not retained), beside the calls, on the handler runtime.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::context::Context;
use crate::error::HandlerError;

/// The plugin's `on_connect` handler, type-erased.
pub(crate) type ConnectHandler =
    Arc<dyn Fn(Context) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

pub(crate) fn erase<F, Fut>(handler: F) -> ConnectHandler
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(move |ctx| handler(ctx).boxed())
}

/// Runs it; a failure is logged (the plugin keeps serving).
pub(crate) async fn run(handler: ConnectHandler, ctx: Context) {
    if let Err(e) = handler(ctx).await {
        tracing::warn!(error = %e, "on_connect failed");
    }
}

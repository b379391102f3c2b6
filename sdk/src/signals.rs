//! SIGTERM and SIGINT as a future, so the I/O loop can drain and say GOODBYE.

/// Resolves at the first SIGTERM or SIGINT. If the handlers cannot be
/// installed, never resolves (the host's kill still ends the process).
pub(crate) async fn terminated() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("could not install SIGTERM/SIGINT handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
